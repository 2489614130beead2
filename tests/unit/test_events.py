import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin import errors
from twin.domain import events as E


@given(st.integers(0, 27))
def test_valid_phq9_totals_are_accepted(total):
    assert E.Phq9(total).total == total


@given(st.integers().filter(lambda v: not 0 <= v <= 27))
def test_out_of_range_phq9_is_rejected_naming_field_and_range(total):
    with pytest.raises(errors.ObservationRangeError) as info:
        E.Phq9(total)
    assert info.value.field == "phq9.total"
    assert "0..27" in str(info.value)


@given(st.floats(allow_nan=True) | st.booleans() | st.text(max_size=3))
def test_non_integer_scores_are_never_coerced(value):
    with pytest.raises(errors.ObservationRangeError):
        E.Phq9(value)  # type: ignore[arg-type]
    with pytest.raises(errors.ObservationRangeError):
        E.Gad7(value)  # type: ignore[arg-type]


@given(st.lists(st.integers(0, 3), min_size=9, max_size=9))
def test_items_must_sum_to_the_total(items):
    total = sum(items)
    assert E.Phq9(total, tuple(items)).item9 == items[8]
    with pytest.raises(errors.ObservationRangeError) as info:
        E.Phq9((total + 1) % 28, tuple(items))
    assert info.value.field == "phq9.total"


@pytest.mark.parametrize("items", [(1,) * 8, (1,) * 10, (0, 0, 0, 0, 0, 0, 0, 0, 4)])
def test_malformed_items_are_rejected(items):
    with pytest.raises(errors.ObservationRangeError):
        E.Phq9(sum(items), items)


@given(st.integers(-5, 30))
def test_gad7_range(total):
    if 0 <= total <= 21:
        assert E.Gad7(total).total == total
    else:
        with pytest.raises(errors.ObservationRangeError, match=r"gad7\.total"):
            E.Gad7(total)


@given(st.integers(-3, 10))
def test_ema_range(rating):
    if 1 <= rating <= 7:
        E.EmaAffect(rating)
    else:
        with pytest.raises(errors.ObservationRangeError, match=r"ema\.rating"):
            E.EmaAffect(rating)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: E.SleepDuration(17.0), "sleep.hours"),
        (lambda: E.SleepDuration(math.nan), "sleep.hours"),
        (lambda: E.Steps(-1), "steps.count"),
        (lambda: E.Steps(100_001), "steps.count"),
        (lambda: E.RestingHeartRate(300.0), "resting_hr.bpm"),
        (lambda: E.LnRmssd(6.0), "hrv.ln_rmssd"),
        (lambda: E.LnRmssd(math.inf), "hrv.ln_rmssd"),
        (lambda: E.Prescription("Sertraline", 50.0), "prescription.drug"),
        (lambda: E.Prescription("sertraline", -5.0), "prescription.mg_per_day"),
        (lambda: E.TherapySession("yoga"), "therapy.kind"),  # type: ignore[arg-type]
        (lambda: E.Event(0, 1.0, E.Gad7(3)), "event.seq"),
        (lambda: E.Event(1, -1.0, E.Gad7(3)), "event.day"),
    ],
)
def test_invalid_values_name_their_field(make, field):
    with pytest.raises(errors.ObservationRangeError) as info:
        make()
    assert info.value.field == field


def test_low_wear_is_valid_but_not_usable():
    assert not E.SleepDuration(6.0, wear_hours=3.0).usable
    assert E.SleepDuration(6.0, wear_hours=6.0).usable
    assert not E.Steps(3000, wear_hours=8.0).usable
