"""De-identification: keyed pseudonyms and days that do not name the calendar."""

from datetime import UTC, date, datetime, timedelta

import pytest

from twin import errors
from twin.domain.deidentify import MAX_DATE_SHIFT_DAYS, Deidentifier, record_day

KEY = b"k" * 32


def test_pseudonyms_are_stable_per_key_and_unlinkable_without_it():
    d, other = Deidentifier(KEY), Deidentifier(b"z" * 32)
    assert d.pseudonym("pt_1") == d.pseudonym("pt_1") != other.pseudonym("pt_1")
    pseudonyms = {d.pseudonym(f"pt_{i}") for i in range(1000)}
    assert len(pseudonyms) == 1000 and not any("pt_" in p for p in pseudonyms)


def test_research_days_count_from_the_patients_own_first_event():
    # Two patients fed from one origin on different calendar dates: both start at 0.
    assert record_day(1400, 1400.75) == 0 and record_day(30, 0.0) == 30
    assert record_day(1442, 1400.2) == 42  # intervals within a patient are kept
    assert record_day(12, None) is None  # unknown start: nothing rather than the date


def test_short_keys_are_refused():
    with pytest.raises(errors.ConfigurationError):
        Deidentifier(b"short")


def test_date_shifts_are_keyed_uniform_and_never_zero():
    deid, other = Deidentifier(KEY), Deidentifier(b"z" * 32)
    shifts = [deid.date_shift(f"pt_{i}") for i in range(20_000)]
    assert (
        0 not in shifts
        and min(shifts) == -MAX_DATE_SHIFT_DAYS
        and max(shifts) == MAX_DATE_SHIFT_DAYS
    )
    assert abs(sum(s > 0 for s in shifts) / len(shifts) - 0.5) < 0.02
    assert sum(deid.date_shift(f"pt_{i}") == other.date_shift(f"pt_{i}") for i in range(1000)) < 20
    when = datetime(2024, 3, 5, 23, 30, tzinfo=UTC)
    assert deid.shifted_date("pt_1", when) == date(2024, 3, 5) + timedelta(deid.date_shift("pt_1"))


def test_a_relative_deidentifier_shows_no_dates_and_a_misspelt_policy_is_refused():
    assert Deidentifier(KEY, dates="shifted").shows_dates and not Deidentifier(KEY).shows_dates
    with pytest.raises(errors.ConfigurationError):
        Deidentifier(KEY, dates="real")  # type: ignore[arg-type]
