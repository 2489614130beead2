"""FHIR dates of a patient's twin days.

A twin day is an instant on the patient's axis, ``enrolment + day``
(:func:`twin.domain.time_axis.instant_of`, the one conversion every layer uses); FHIR writes it
as a ``dateTime`` (R4 §2.24) with its offset, here always UTC (``Z``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from twin import errors
from twin.domain.time_axis import instant_of

__all__ = ["fhir_date", "iso_instant"]


def iso_instant(when: datetime) -> str:
    """An aware instant as ISO 8601 in UTC with ``Z`` (FHIR ``instant`` and ``dateTime``).

    Whole seconds are written without a fraction; anything finer to the microsecond, so a day
    read back from the text is the day it was written from (to 1e-11 of a day).

    Raises:
        InvalidInputError: ``when`` has no UTC offset.
    """
    if when.tzinfo is None:
        raise errors.InvalidInputError("an instant with a UTC offset is required")
    utc = when.astimezone(UTC)
    text = utc.isoformat(timespec="seconds" if utc.microsecond == 0 else "microseconds")
    return text.replace("+00:00", "Z")


def fhir_date(day: float, enrolment: datetime) -> str:
    """The ``dateTime`` of twin day ``day`` on the axis that starts at ``enrolment`` (aware)."""
    return iso_instant(instant_of(day, enrolment))
