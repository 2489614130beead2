"""Care intensity: settings as contact schedules, the twin's inference, scenarios and cohorts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from pydantic import ValidationError

from tests.builders import Log, depressed_twin, twin
from twin import errors
from twin.assimilation import kernel
from twin.assimilation.state import TwinState
from twin.domain import codec
from twin.domain import events as E
from twin.domain.specs import Scenario
from twin.forecast.summary import forecast
from twin.model import care
from twin.model.cohort import CohortSpec, simulate_cohort


def test_settings_are_contact_rates_relative_to_weekly_visits():
    days = np.array([0, 83, 84, 400])
    assert care.intensity("trial", days).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert care.intensity("none", days).tolist() == [0.0, 0.0, 0.0, 0.0]
    usual = care.intensity("usual", days)
    early, later = care.PROFILES["usual"].early_per_week, care.PROFILES["usual"].later_per_week
    assert usual.tolist() == [early, early, later, later] and later < early < 0.25
    collaborative = care.intensity("collaborative", days)
    assert collaborative.tolist() == [0.5, 0.5, 0.25, 0.25]
    # More contact never means less care, at any time since the setting began.
    order = [care.intensity(s, np.arange(200)) for s in ("none", "usual", "collaborative", "trial")]
    assert all(np.all(a <= b) for a, b in itertools.pairwise(order))


@pytest.mark.parametrize("every", [7, 14, 28])
def test_the_contact_rate_settles_at_seven_over_the_gap_between_visits(every):
    rate = 0.0
    history = []
    for day in range(400):
        rate = care.contact_rate_step(rate, 1 if day % every == 0 else 0)
        history.append(rate)
    # The average over the last cycles is the visit rate per week.
    assert np.mean(history[-4 * every :]) == pytest.approx(7.0 / every, rel=0.03)
    assert care.contact_rate_step(1.0, 3) == care.contact_rate_step(1.0, 1)  # one visit a day


def test_switch_values_of_earlier_clients_keep_their_meaning():
    assert CohortSpec(n_patients=1, days=0, care=True).care == "trial"
    assert CohortSpec(n_patients=1, days=0, care=False).care == "none"
    assert Scenario(care=True).care == "trial" and Scenario().care is None
    for bad in ("often", 1, 0.5, None):
        with pytest.raises(ValidationError):
            CohortSpec(n_patients=1, days=0, care=bad)
    with pytest.raises(ValidationError):
        Scenario(care="weekly")


@pytest.mark.parametrize(
    ("active", "setting"), [(True, "often"), (False, "usual"), (True, "none"), (1, None)]
)
def test_care_status_refuses_settings_that_contradict_it(active, setting):
    with pytest.raises(errors.ObservationRangeError):
        E.CareStatus(active, setting)


def test_care_status_round_trips_through_the_codec_and_old_records_still_decode():
    status = E.CareStatus(True, "collaborative")
    assert codec.decode(codec.encode(status)) == status
    assert codec.decode({"type": "care_status", "active": True}) == E.CareStatus(True, None)
    with pytest.raises(errors.ObservationRangeError):
        codec.decode({"type": "care_status", "active": True, "setting": "weekly"})


def _seen_every(days: int, every: int) -> TwinState:
    state = twin(f"seen-{every}", particles=200)
    log = Log()
    for day in range(0, days, every):
        log.phq9(day + 0.5, 16)
    kernel.apply_events([state], [log.events])
    return state


def test_a_twin_infers_its_care_intensity_from_how_often_it_sees_the_patient():
    weekly, monthly = _seen_every(120, 7), _seen_every(120, 28)
    assert weekly.care_setting is None and monthly.care_setting is None
    assert 0.8 <= weekly.care_intensity() <= 1.0
    assert 0.1 <= monthly.care_intensity() <= 0.4
    # Days ahead keep the observed rate (the patient is seen as now).
    assert weekly.care_intensity(30) == weekly.care_intensity()
    # Before any contact a patient is taken to be in usual care.
    unseen = twin("unseen", particles=200)
    assert unseen.care_intensity() == care.PROFILES["usual"].early_per_week


def test_a_stated_setting_follows_its_schedule_from_the_day_it_began():
    state = twin("usual", particles=200)
    log = Log().phq9(0.5, 17).add(10.2, E.CareStatus(True, "usual")).phq9(20.5, 16)
    kernel.apply_events([state], [log.events])
    assert state.care_setting == "usual" and state.care_since == 10
    early, later = care.PROFILES["usual"].early_per_week, care.PROFILES["usual"].later_per_week
    assert state.care_intensity() == early  # day 20: in the acute phase
    assert state.care_intensity(84 - 10) == later  # 84 days after it began
    assert state.care_intensity(84 - 11) == early
    # The same setting stated again does not restart its schedule; an end of care does.
    kernel.apply_events([state], [[E.Event(4, 30.0, E.CareStatus(True, "usual"))]])
    assert state.care_since == 10
    kernel.apply_events([state], [[E.Event(5, 31.0, E.CareStatus(False))]])
    assert state.care_setting == "none" and state.care_intensity() == 0.0
    # Bytes round trip keeps all of it.
    assert TwinState.from_bytes(state.to_bytes()).equals(state)


def test_forecasts_improve_with_the_intensity_of_the_care_scenario():
    state = depressed_twin("depressed-care")
    medians = {
        setting: forecast(state, Scenario(name=setting, care=setting), weeks=12).phq9_quantiles[-1][
            3
        ]
        for setting in ("none", "usual", "trial")
    }
    assert medians["trial"] < medians["usual"] <= medians["none"]


def test_cohorts_improve_with_the_intensity_of_their_setting():
    def mean_change(setting: str) -> float:
        spec = CohortSpec(n_patients=4000, days=56, seed=5, screen_phq9_min=10, care=setting)
        r = simulate_cohort(spec)
        return float(np.mean(r.phq9[:, -1] - r.phq9[:, 0]))

    changes = [mean_change(s) for s in ("none", "usual", "collaborative", "trial")]
    assert changes == sorted(changes, reverse=True)
    assert all(math.isfinite(c) for c in changes)
