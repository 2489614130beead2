"""CSV and Parquet rows to bulk-ingest records.

One observation per row, in these columns (names are case-sensitive):

============  ==========================================================================
``patient``   ``Patient/<patient id>`` or the bare patient id
``code``      a LOINC code of :mod:`twin.domain.loinc` (e.g. ``44261-6`` for a PHQ-9 total),
              ``rmssd`` for heart-rate variability as RMSSD in ``ms`` (LOINC has no code for
              it; the twin's stream is ln RMSSD), or a patient covariate (the twin's
              ``Covariates``; optional, one per row): ``episode_weeks`` (duration of the
              current episode; unit ``wk``, ``d``, ``mo`` or ``a``), ``prior_episodes``
              (a count), ``anxiety_comorbid`` (1 or 0), ``age_years`` (unit ``a``)
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

__all__ = ["COVARIATE_CODES", "REQUIRED_COLUMNS", "RMSSD_CODE", "record_from_row"]

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


#: Covariate codes, each with its units and the factor to the twin's unit (weeks, years).
COVARIATE_CODES: dict[str, dict[str | None, float]] = {
    "episode_weeks": {None: 1.0, "wk": 1.0, "d": 1.0 / 7.0, "mo": 365.25 / 12.0 / 7.0,
                      "a": 365.25 / 7.0},
    "prior_episodes": {None: 1.0, "1": 1.0},
    "anxiety_comorbid": {None: 1.0, "1": 1.0},
    "age_years": {None: 1.0, "a": 1.0},
}  # fmt: skip


def _covariate(code: str, value: float, unit: str | None) -> events.Covariates:
    """One covariate row as a ``Covariates`` payload (units converted, values checked there)."""
    units = COVARIATE_CODES[code]
    if unit not in units:
        raise errors.ObservationRangeError(
            f"{code}.unit", unit, ", ".join(u for u in units if u is not None)
        )
    scaled = value * units[unit]
    if code in ("prior_episodes", "anxiety_comorbid"):
        if not scaled.is_integer():
            raise errors.ObservationRangeError(code, value, "a whole number")
        if code == "anxiety_comorbid":
            if scaled not in (0.0, 1.0):
                raise errors.ObservationRangeError(code, value, "1 (yes) or 0 (no)")
            return events.Covariates(anxiety_comorbid=scaled == 1.0)
        return events.Covariates(prior_episodes=int(scaled))
    if code == "episode_weeks":
        return events.Covariates(episode_weeks=scaled)
    return events.Covariates(age_years=scaled)


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
        code = str(row["code"])
        if code == RMSSD_CODE:
            payload: events.Payload = _rmssd(value, unit)
        elif code in COVARIATE_CODES:
            payload = _covariate(code, value, unit)
        else:
            payload = from_loinc(str(row["code"]), value, unit)
    except errors.InvalidInputError as exc:
        return Record.refused(source, str(exc), patient)
    return Record(source, patient, when, payload)
