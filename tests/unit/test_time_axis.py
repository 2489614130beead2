"""A patient's time axis: instants to twin days and back, refused rather than moved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin import errors
from twin.domain.events import MAX_DAY
from twin.domain.time_axis import MAX_AHEAD, day_of, instant_of

ENROLLED = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_one_instant_in_any_offset_is_one_day():
    # 08:30 UTC written as the wall-clock time of each offset.
    spellings = [
        datetime(2024, 3, 5, 8, 30, tzinfo=timezone(timedelta(hours=h))) + timedelta(hours=h)
        for h in (-12, -5, 0, 1, 5.5, 14)
    ]
    days = {day_of(when, ENROLLED, now=NOW) for when in spellings}
    assert days == {4 + 30 / 1440}
    assert day_of(ENROLLED, ENROLLED, now=NOW) == 0.0
    # Enrolled at 08:00 UTC: 14:30 UTC three days later is day 3.27.
    assert day_of(datetime(2024, 3, 4, 14, 30, tzinfo=UTC), ENROLLED, now=NOW) == pytest.approx(
        3 + 6.5 / 24
    )


@pytest.mark.parametrize(
    ("when", "why"),
    [
        (datetime(2024, 3, 5, 8, 30), "a UTC offset is required"),
        (ENROLLED - timedelta(microseconds=1), "before the patient's enrolment"),
        (ENROLLED + timedelta(days=MAX_DAY + 1), "more than 36525 days after"),
        (NOW + MAX_AHEAD + timedelta(seconds=1), "more than a day after the present"),
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), "outside the years 1-9999"),
    ],
)
def test_instants_off_the_axis_are_refused_by_name(when, why):
    with pytest.raises(errors.InvalidInputError, match=why) as refused:
        day_of(when, ENROLLED, now=NOW, field="items.3.effective")
    assert str(refused.value).startswith("items.3.effective: ")


def test_bulk_ingests_reasons_keep_their_wording():
    with pytest.raises(errors.InvalidInputError) as refused:
        day_of(ENROLLED - timedelta(days=1), ENROLLED, now=NOW)
    assert str(refused.value) == "effective time: before the patient's enrolment"


def test_a_day_ahead_of_the_present_is_taken_and_no_more():
    assert day_of(NOW + MAX_AHEAD, ENROLLED, now=NOW) > 0


@given(st.floats(min_value=0.0, max_value=MAX_DAY, allow_nan=False))
def test_instant_of_is_the_inverse_of_day_of(day):
    at = instant_of(day, ENROLLED)
    assert at.tzinfo == UTC
    # Microsecond instants: the day comes back within a microsecond.
    later = datetime(9999, 1, 1, tzinfo=UTC)
    assert abs(day_of(at, ENROLLED, now=later) - day) * 86_400 <= 1e-6
