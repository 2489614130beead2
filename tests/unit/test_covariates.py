"""Patient covariates: course classes, relapse offsets, the twin's update and cohorts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from tests.builders import Log
from twin import errors
from twin.assimilation import kernel
from twin.assimilation.state import TwinState, new_twin
from twin.domain import events as E
from twin.domain.specs import Population
from twin.model import covariates
from twin.model.cohort import CohortSpec, simulate_cohort
from twin.model.dynamics import Row
from twin.model.parameters import PopulationParameters

# Classes that differ (the defaults are calibrated; these make every effect visible).
P = PopulationParameters(rec_acute=3.0, rec_chronic=0.1, p_anx_chronic=0.6, p_anx_acute=0.2)


def test_a_long_episode_and_comorbid_anxiety_are_evidence_of_a_chronic_course():
    llr = covariates.chronic_log_likelihood_ratio
    assert float(llr(P, episode_weeks=0.0)) == 0.0
    weeks = np.array([4.0, 26.0, 104.0])
    assert np.all(np.diff(llr(P, episode_weeks=weeks)) > 0)
    # ln LR = -(h_chronic - h_acute)·7D exactly.
    expected = -P.h10 * (P.rec_chronic - P.rec_acute) * 7.0 * 26.0
    assert float(llr(P, episode_weeks=26.0)) == pytest.approx(expected)
    assert float(llr(P, anxiety_comorbid=True)) == pytest.approx(math.log(0.6 / 0.2))
    assert float(llr(P, anxiety_comorbid=False)) == pytest.approx(math.log(0.4 / 0.8))
    # The prior share is the probability when nothing is known.
    assert float(covariates.chronic_probability(P, 0.0)) == pytest.approx(P.chronic_share)


def test_the_relapse_offset_rises_with_prior_episodes_and_averages_one_in_the_population():
    k = np.arange(15)
    offsets = covariates.relapse_offset(P, k)
    assert np.all(np.diff(offsets[:11]) > 0) and np.all(np.diff(offsets[10:]) == 0)
    assert offsets[3] - offsets[2] == pytest.approx(math.log(P.hr_recurrence))
    rng = np.random.default_rng(0)
    drawn = covariates.draw_prior_episodes(P.prior_episodes_mean, rng, (400_000,))
    assert drawn.min() == 0 and drawn.mean() == pytest.approx(P.prior_episodes_mean, rel=0.02)
    assert np.mean(np.exp(covariates.relapse_offset(P, drawn))) == pytest.approx(1.0, abs=0.01)


def _twin(name: str, particles: int):
    """A new twin on the test's parameters (its course-class prior depends on them)."""
    return new_twin(name, n_particles=particles, params=P)


def _posterior_chronic(state) -> float:
    return float(np.sum(state.weights * (state.particles[Row.CHRONIC] > 0.5)))


def test_a_twin_weighs_covariates_as_evidence_on_its_course_class():
    plain, informed = _twin("cov-a", 2000), _twin("cov-a", 2000)
    # A new twin assumes the typical clinical duration (26 weeks) until one is stated.
    plain_llr = covariates.chronic_log_likelihood_ratio(P, episode_weeks=26.0)
    assert plain.chronic_llr == pytest.approx(float(plain_llr))
    before = _posterior_chronic(plain)
    assert before > P.chronic_share + 0.2  # the assumed duration is evidence of chronicity
    log = Log().add(0.0, E.Covariates(episode_weeks=104.0, anxiety_comorbid=True))
    kernel.apply_events([informed], [log.events], params=P)
    assert _posterior_chronic(informed) > before + 0.05
    # A new episode (stated as half a week) replaces the assumption: back to the share of new
    # episodes.
    new = _twin("cov-b", 2000)
    kernel.apply_events([new], [Log().add(0.0, E.Covariates(episode_weeks=0.5)).events], params=P)
    assert _posterior_chronic(new) == pytest.approx(P.chronic_share, abs=0.05)
    # Prior episodes are known exactly: every particle takes their offset.
    known = _twin("cov-c", 500)
    kernel.apply_events([known], [Log().add(0.0, E.Covariates(prior_episodes=4)).events], params=P)
    assert np.all(known.particles[Row.LOG_RELAPSE] == np.float32(covariates.relapse_offset(P, 4)))
    # Age alone changes nothing about the course.
    aged = _twin("cov-d", 500)
    untouched = aged.particles.copy()
    kernel.apply_events([aged], [Log().add(0.0, E.Covariates(age_years=70.0)).events], params=P)
    assert np.array_equal(aged.particles, untouched)


def test_covariates_refuse_values_outside_their_domain():
    for bad in (
        {"episode_weeks": -1.0},
        {"episode_weeks": math.inf},
        {"episode_weeks": 10**400},
        {"prior_episodes": 2.5},
        {"prior_episodes": 51},
        {"anxiety_comorbid": "yes"},
        {"age_years": 15.0},
        {},
    ):
        with pytest.raises(errors.ObservationRangeError):
            E.Covariates(**bad)
    for bad in ({"episode_weeks": -2.0}, {"anxiety_share": 1.5}, {"prior_episodes_mean": math.nan}):
        with pytest.raises(ValidationError):
            CohortSpec(n_patients=1, days=0, population=bad)


def _recovered_by(spec: CohortSpec, p: PopulationParameters, day: int) -> float:
    r = simulate_cohort(spec, params=p)
    return float(np.mean(~r.episode[:, : day + 1].all(axis=1)))


def test_cohorts_of_long_episodes_and_comorbid_anxiety_recover_more_slowly():
    base = CohortSpec(n_patients=4000, days=182, seed=3, care="none")
    new = _recovered_by(
        base.model_copy(update={"population": Population(episode_weeks=1.0)}), P, 182
    )
    chronic = _recovered_by(
        base.model_copy(update={"population": Population(episode_weeks=104.0)}), P, 182
    )
    assert chronic < new - 0.2
    anxious = _recovered_by(
        base.model_copy(update={"population": Population(anxiety_share=1.0)}), P, 182
    )
    calm = _recovered_by(
        base.model_copy(update={"population": Population(anxiety_share=0.0)}), P, 182
    )
    assert anxious < calm - 0.1


def test_cohorts_with_more_prior_episodes_relapse_more():
    def relapsed(mean: float) -> float:
        spec = CohortSpec(
            n_patients=6000, days=365, seed=4, start="remitted", care="none",
            population={"prior_episodes_mean": mean},
        )  # fmt: skip
        return float(np.mean(simulate_cohort(spec, params=P).episode.any(axis=1)))

    assert relapsed(0.0) < relapsed(1.5) < relapsed(5.0)


def test_a_covariate_stated_again_is_not_counted_twice_and_a_correction_replaces_it():
    once, twice = _twin("cov-e", 2000), _twin("cov-e", 2000)
    stated = E.Covariates(episode_weeks=80.0, anxiety_comorbid=True)
    kernel.apply_events([once], [Log().add(0.0, stated).events], params=P)
    kernel.apply_events([twice], [Log().add(0.0, stated).add(0.1, stated).events], params=P)
    # (Resampling draws differ between the two logs, hence the tolerance: counting the ratio
    # twice would put the posterior above 0.999.)
    assert _posterior_chronic(twice) == pytest.approx(_posterior_chronic(once), abs=0.01)
    # A correction: no anxiety after all; the weights follow the latest values only.
    corrected = _twin("cov-e", 2000)
    log = Log().add(0.0, stated).add(0.1, E.Covariates(anxiety_comorbid=False))
    kernel.apply_events([corrected], [log.events], params=P)
    direct = _twin("cov-e", 2000)
    kernel.apply_events(
        [direct],
        [Log().add(0.0, E.Covariates(episode_weeks=80.0, anxiety_comorbid=False)).events],
        params=P,
    )
    # Its Monte-Carlo error is larger: the first statement left few distinct acute particles.
    assert _posterior_chronic(corrected) < _posterior_chronic(once) - 0.05
    assert _posterior_chronic(corrected) == pytest.approx(_posterior_chronic(direct), abs=0.08)


def test_an_episode_duration_stated_later_counts_only_the_time_before_the_record():
    late = _twin("cov-f", 500)
    log = Log().phq9(0.5, 16).add(70.0, E.Covariates(episode_weeks=30.0))
    kernel.apply_events([late], [log.events], params=P)
    assert late.covariates["episode_weeks"] == pytest.approx(30.0 - 69.5 / 7.0)
    assert TwinState.from_bytes(late.to_bytes()).equals(late)
