import math

import numpy as np
import pytest

from twin.domain.drugs import DRUGS, drug
from twin.model import pharmacology as ph
from twin.model.inputs import InputTracker
from twin.model.parameters import PopulationParameters

P = PopulationParameters()


@pytest.mark.parametrize("half_lives", [1, 2, 4, 5])
def test_pk_reaches_the_steady_state_fraction_after_k_half_lives(half_lives):
    fluoxetine = drug("fluoxetine")  # t½ = 7 days: whole days per half-life
    c = 0.0
    for _ in range(7 * half_lives):
        c = ph.pk_step(c, 1.0, fluoxetine.k_e)
    assert c == pytest.approx(ph.steady_state_fraction(half_lives), rel=1e-12)
    assert ph.steady_state_fraction(4) == pytest.approx(0.9375)


def test_occupancy_at_the_minimum_dose_and_plateau():
    assert ph.occupancy(1.0, P) == pytest.approx(0.80, abs=0.005)
    assert ph.occupancy(2.0, P) == pytest.approx(0.84, abs=0.005)
    assert ph.occupancy(4.0, P) == pytest.approx(0.86, abs=0.005)
    assert ph.drive(1.0, P) == pytest.approx(1.0)
    assert ph.drive(100.0, P) == pytest.approx(P.u_cap, abs=0.01)
    assert ph.drive(1e9, P) <= P.u_cap


def test_process_s_settles_on_a_16_8_schedule():
    h = 0.0
    for _ in range(20):
        bed, h = ph.process_s_day(h, sleep_h=8.0, p=P)
    assert bed == pytest.approx(0.62, abs=0.01)
    assert h == pytest.approx(0.09, abs=0.01)


def test_five_hour_sleep_settles_within_two_nights():
    _, h = ph.process_s_day(0.0, sleep_h=8.0, p=P)
    for _ in range(20):
        _, h = ph.process_s_day(h, sleep_h=8.0, p=P)
    for _ in range(2):
        bed, h = ph.process_s_day(h, sleep_h=5.0, p=P)
    assert bed == pytest.approx(0.73, abs=0.015)
    assert h == pytest.approx(0.22, abs=0.015)


@pytest.mark.parametrize(("sessions", "fraction"), [(1, 0.12), (8, 0.50), (26, 0.75)])
def test_howard_curve(sessions, fraction):
    assert ph.howard_fraction(sessions, P) == pytest.approx(fraction, abs=0.01)
    assert ph.howard_fraction(0, P) == 0.0


def test_sleep_debt_accumulates_only_under_restriction():
    normal, short = InputTracker(), InputTracker()
    for _ in range(10):
        normal.end_day(P, sleep_h=8.0)
        short.end_day(P, sleep_h=5.0)
    assert normal.sleep_debt == pytest.approx(0.0, abs=1e-6)
    assert InputTracker().h_wake == pytest.approx(P.h_wake_norm, abs=1e-5)
    assert short.sleep_debt > 0.5


def test_drug_table_has_the_seven_drugs_with_daily_rates():
    assert set(DRUGS) == {
        "sertraline",
        "escitalopram",
        "citalopram",
        "paroxetine",
        "fluoxetine",
        "venlafaxine",
        "duloxetine",
    }
    assert drug("sertraline").k_e == pytest.approx(math.log(2) * 24 / 26)
    assert drug("sertraline").fluoxetine_equivalent_mg(98.5) == pytest.approx(40.0)
    assert np.isfinite([d.k_e for d in DRUGS.values()]).all()


def test_howard_fraction_of_one_value_equals_the_vectorised_curve():
    n = np.array([0.0, 0.3, 1.0, 8.0, 26.0, 200.0])
    curve = ph.howard_fraction(n, P)
    assert [ph.howard_fraction(float(v), P) for v in n] == pytest.approx(list(curve), rel=1e-12)
    assert ph.howard_fraction(8.0, P) == pytest.approx(0.5) and ph.howard_fraction(0.0, P) == 0.0
