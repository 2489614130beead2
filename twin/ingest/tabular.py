"""CSV and Parquet rows to bulk-ingest records.

One observation per row, in these columns (names are case-sensitive):

============  ==========================================================================
``patient``   ``Patient/<patient id>`` or the bare patient id
``code``      a LOINC code of :mod:`twin.domain.loinc` (e.g. ``44261-6`` for a PHQ-9 total), or
              ``rmssd`` for heart-rate variability as RMSSD in ``ms`` (LOINC has no code for
              it; the twin's stream is ln RMSSD)
``value``     the number
``unit``      its UCUM unit (optional: the code's canonical unit)
``effective`` ISO 8601 date-time with a UTC offset (``2024-01-02T10:00:00Z``)
``id``        optional: a stable row id from the source system (else the row's position)
============  ==========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from twin import errors
from twin.domain import events
from twin.domain.loinc import from_loinc
from twin.ingest.records import Record

__all__ = ["REQUIRED_COLUMNS", "RMSSD_CODE", "record_from_row"]

REQUIRED_COLUMNS = ("patient", "code", "value", "effective")
#: The ``code`` of an RMSSD row (heart-rate variability, ms).
RMSSD_CODE = "rmssd"


def _rmssd(value: float, unit: str | None) -> events.LnRmssd:
    """RMSSD in ms (1-300) as the twin's ln RMSSD payload."""
    if unit not in (None, "ms"):
        raise errors.ObservationRangeError("rmssd.unit", unit, "ms")
    if not 1.0 <= value <= 300.0:
        raise errors.ObservationRangeError("rmssd", value, "1..300 ms")
    return events.LnRmssd(math.log(value))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def record_from_row(row: Mapping[str, Any], *, where: str) -> Record:
    """The record of one row.

    Args:
        row: Column name to value (CSV strings or typed Parquet values).
        where: The row's position, e.g. ``obs.csv:17`` (its source when it has no ``id``).
    """
    source = f"row/{row['id']}" if not _missing(row.get("id")) else where
    patient = None if _missing(row.get("patient")) else str(row["patient"])
    absent = [name for name in REQUIRED_COLUMNS if _missing(row.get(name))]
    if absent:
        return Record.refused(source, f"missing {', '.join(absent)}", patient)
    effective = row["effective"]
    try:
        when = (
            effective if isinstance(effective, datetime) else datetime.fromisoformat(str(effective))
        )
    except ValueError:
        return Record.refused(source, "effective: not an ISO 8601 date-time", patient)
    try:
        value = float(row["value"])
    except (TypeError, ValueError):
        return Record.refused(source, "value: not a number", patient)
    unit = None if _missing(row.get("unit")) else str(row["unit"])
    try:
        if str(row["code"]) == RMSSD_CODE:
            payload: events.Payload = _rmssd(value, unit)
        else:
            payload = from_loinc(str(row["code"]), value, unit)
    except errors.InvalidInputError as exc:
        return Record.refused(source, str(exc), patient)
    return Record(source, patient, when, payload)
