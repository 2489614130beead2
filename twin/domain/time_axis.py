"""A patient's time axis: instants (ISO 8601 with a UTC offset) to twin days and back.

Each patient has an enrolment instant, day 0 of their twin's axis; a twin day is
``(instant - enrolment) / 86,400 s``. The HTTP API (an event's ``effective``) and bulk ingest
(a FHIR ``effectiveDateTime``) place events with the one function here, :func:`day_of`, so the
same instant lands on the same day whichever way it arrives. Responses give instants back with
:func:`instant_of`.

An instant is refused, never moved: without a UTC offset (a wall-clock time names no instant),
before the enrolment (the axis has no days before 0), more than :data:`events.MAX_DAY` days
after it, or more than :data:`MAX_AHEAD` after the present (a twin advances through every day
up to its latest event, so one event dated in the future would hold back every real one after
it; a day covers clocks that disagree and any time zone).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from twin import errors
from twin.domain import events

__all__ = ["MAX_AHEAD", "SECONDS_PER_DAY", "day_of", "instant_of"]

#: Seconds in a twin day.
SECONDS_PER_DAY = 86_400.0
#: How far after the present an instant may lie (clock skew, time zones).
MAX_AHEAD = timedelta(days=1)


def day_of(
    effective: datetime, enrolment: datetime, *, now: datetime, field: str = "effective time"
) -> float:
    """The twin day of ``effective`` on the axis that starts at ``enrolment``.

    Args:
        effective: When the event happened (aware; any UTC offset).
        enrolment: The patient's enrolment instant, day 0 (aware).
        now: The present (aware): ``effective`` may lie at most :data:`MAX_AHEAD` after it.
        field: How refusals name the time (``"items.0.effective"``); bulk ingest's reasons say
            ``effective time``.

    Returns:
        Days since the enrolment, ``0 <= day <= MAX_DAY`` (float: 14:30 on day 3 is 3.6042).

    Raises:
        InvalidInputError: No UTC offset, no UTC instant (years 1-9999), before the enrolment,
            more than ``MAX_DAY`` days after it, or more than a day after ``now``.
    """
    if effective.tzinfo is None or effective.utcoffset() is None:
        raise errors.InvalidInputError(f"{field}: a UTC offset is required")
    try:
        day = (effective.astimezone(UTC) - enrolment).total_seconds() / SECONDS_PER_DAY
    except OverflowError:  # no UTC instant (year 1 at +14:00, year 9999 at -14:00)
        raise errors.InvalidInputError(f"{field}: outside the years 1-9999 in UTC") from None
    if day < 0:
        raise errors.InvalidInputError(f"{field}: before the patient's enrolment")
    if day > events.MAX_DAY:
        raise errors.InvalidInputError(
            f"{field}: more than {events.MAX_DAY:g} days after the patient's enrolment"
        )
    if effective - now > MAX_AHEAD:
        raise errors.InvalidInputError(f"{field}: more than a day after the present")
    return day


def instant_of(day: float, enrolment: datetime) -> datetime:
    """The instant (UTC) of twin day ``day`` on the axis that starts at ``enrolment``.

    The inverse of :func:`day_of` to the microsecond.

    Args:
        day: Days since the enrolment (``0 <= day <= 1e6``, the event log's range).
        enrolment: The patient's enrolment instant (aware).
    """
    return (enrolment + timedelta(days=day)).astimezone(UTC)
