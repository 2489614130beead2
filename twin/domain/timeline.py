"""A patient's time axis: the twin's days and the instants they stand for.

Each patient's twin counts time in days from their **enrolment instant** (day 0, stored sealed
with their identifiers): ``day = (instant - enrolment) / 86,400 s`` (bulk ingest places records
this way, :func:`twin.ingest.records.day_of`), and back, ``instant = enrolment + day × 86,400 s``
(:func:`instant_at`, what every date the platform gives out is computed by: FHIR
``effectiveDateTime``, a risk assessment's horizon). Instants are aware and in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from twin import errors

__all__ = ["SECONDS_PER_DAY", "instant_at", "iso_instant"]

#: Seconds in one day of the time axis (a day is 86,400 SI seconds: no leap seconds, no DST).
SECONDS_PER_DAY = 86_400.0


def instant_at(enrolment: datetime, day: float) -> datetime:
    """The instant of ``day`` on the axis that starts at ``enrolment``.

    Args:
        enrolment: Day 0 of the patient's axis, aware.
        day: Days since the enrolment (a fraction is a time of day: 3.5 is noon of day 3).

    Returns:
        ``enrolment + day`` days, in UTC (to the microsecond).

    Raises:
        InvalidInputError: ``enrolment`` has no UTC offset, or the instant falls outside the
            years 1-9999.
    """
    if enrolment.tzinfo is None:
        raise errors.InvalidInputError("enrolment: an instant with a UTC offset is required")
    try:
        return enrolment.astimezone(UTC) + timedelta(days=day)
    except OverflowError:
        raise errors.InvalidInputError("day: outside the years 1-9999 from the enrolment") from None


def iso_instant(when: datetime) -> str:
    """An aware instant as ISO 8601 in UTC with ``Z`` (FHIR ``instant`` and ``dateTime``).

    Whole seconds are written without a fraction; anything finer to the microsecond, so a day
    read back from the text is the day it was written from (to 1e-11 of a day).
    """
    if when.tzinfo is None:
        raise errors.InvalidInputError("an instant with a UTC offset is required")
    utc = when.astimezone(UTC)
    text = utc.isoformat(timespec="seconds" if utc.microsecond == 0 else "microseconds")
    return text.replace("+00:00", "Z")
