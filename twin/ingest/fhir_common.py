"""What every FHIR mapper reads the same way: code systems, codings, status codes and FHIR times.

FHIR times (R4 §2.24 ``date``/``dateTime``/``instant``): an instant is itself; a full date is
that day in UTC (a day without a time zone of its own: the patient's zone is not in the
record); a year or a year and month is that year or month in UTC. A record is placed at an
instant or at a full date's UTC midnight; a year or month is too coarse to place a record on a
day, except where a mapper places it at its middle (:func:`placed`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from twin import errors
from twin.domain.codesystems import LOINC_SYSTEM, RXNORM_SYSTEM, SNOMED_SYSTEM

__all__ = [
    "KNOWN_CODES",
    "LOINC_SYSTEM",
    "RXNORM_SYSTEM",
    "SNOMED_SYSTEM",
    "codes",
    "effective",
    "end_of",
    "instant",
    "middle",
    "number",
    "period",
    "placed",
    "shown",
    "shown_loinc",
]

#: Status and intent codes of the value sets the mappers read: shown in a refusal as they are.
#: Anything else (FHIR parsers do not enforce value sets) is shown as ``?``: it may be free text.
KNOWN_CODES = frozenset({
    "registered", "preliminary", "final", "amended", "corrected", "cancelled",
    "entered-in-error", "unknown", "active", "completed", "stopped", "on-hold", "draft",
    "in-progress", "not-done", "intended", "not-taken", "preparation", "declined", "proposal",
    "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order",
    "option", "directive", "inactive", "recurrence", "relapse", "remission", "resolved",
    "confirmed", "unconfirmed", "provisional", "differential", "refuted", "ended", "revoked",
    "paused", "rejected", "suspended", "failed", "abandoned",
})  # fmt: skip
_LOINC = re.compile(r"[0-9]{1,8}-[0-9]")


def number(value: Decimal | float | int | None) -> float | None:
    """A FHIR decimal or integer as a float (``None`` stays ``None``)."""
    return None if value is None else float(value)


def codes(concept: Any, system: str) -> list[str]:
    """The codes of ``system`` in a CodeableConcept, in order."""
    return [c.code for c in (concept.coding or []) if c.system == system and c.code]


def shown(value: object) -> str:
    """A status code as a refusal reason shows it (an unexpected text is not repeated)."""
    if value is None:
        return "None"  # absent
    return value if isinstance(value, str) and value in KNOWN_CODES else "?"


def shown_loinc(code: str) -> str:
    """A LOINC code as a refusal reason shows it (anything not of LOINC's form is hidden)."""
    return code if _LOINC.fullmatch(code) else "?"


def period(value: Any, *, field: str) -> tuple[datetime, datetime]:
    """The interval a FHIR date or dateTime denotes, as aware instants [start, end).

    An instant is the point itself; a full date is that day in UTC; a year (``2023``) or a year
    and month (``2023-06``) is that year or month in UTC.

    Raises:
        InvalidInputError: A value that is none of these (or outside years 1-9999 in UTC).
    """
    try:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise errors.InvalidInputError(f"{field}: a time needs a UTC offset")
            # Kept with its own offset: the idempotency key spells the time as the source
            # gave it (keys of earlier jobs are in the log). Year 1 at +14:00 has no UTC
            # instant: refused below.
            value.astimezone(UTC)
            return value, value
        if isinstance(value, date):
            day = datetime(value.year, value.month, value.day, tzinfo=UTC)
            return day, day + timedelta(days=1)
        parts = str(value).split("-")
        if 1 <= len(parts) <= 2 and all(p.isdigit() for p in parts):
            year = int(parts[0])
            if len(parts) == 1:
                return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
            month = int(parts[1])
            start = datetime(year, month, 1, tzinfo=UTC)
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            return start, end
    except (ValueError, OverflowError):
        pass  # month 13, year 0 or 10000: refused below
    raise errors.InvalidInputError(f"{field}: not a FHIR date or dateTime")


def instant(value: Any, *, field: str) -> datetime:
    """Where a record with this FHIR time is placed: an instant, or a full date's UTC midnight.

    Raises:
        InvalidInputError: A year or year-month (too coarse to place a record on a day).
    """
    start, end = period(value, field=field)
    if end - start > timedelta(days=1):
        raise errors.InvalidInputError(f"{field}: a day or an instant required")
    return start


def middle(start: datetime, end: datetime) -> datetime:
    """The midpoint of ``[start, end)``."""
    return start + (end - start) / 2


def placed(value: Any, *, field: str) -> datetime:
    """Where a FHIR time places a record.

    An instant or a day as :func:`instant`; a year or month at its middle (the unbiased point
    for a time known to that precision).
    """
    start, end = period(value, field=field)
    return start if end - start <= timedelta(days=1) else middle(start, end)


def end_of(value: Any, *, field: str) -> datetime:
    """The instant a FHIR period's ``end`` denotes: an instant itself, a date its day's end.

    A period's end date is inclusive (R4 §2.24 Period): ``end: 2024-03-10`` lasts through that
    day, so it ends at the next midnight; a year or a month at its last day's end.
    """
    return period(value, field=field)[1]


def effective(resource: Any) -> datetime | None:
    """``effectiveDateTime``, ``effectiveInstant``, else the start of ``effectivePeriod``.

    Raises:
        InvalidInputError: A year or year-month only: too coarse to place a record on a day.
    """
    when_period = resource.effectivePeriod
    when = (
        resource.effectiveDateTime
        or getattr(resource, "effectiveInstant", None)
        or (when_period.start if when_period else None)
    )
    return None if when is None else instant(when, field="effective time")
