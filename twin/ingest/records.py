"""Bulk-ingest records: what a source row says, and the event it becomes (or why it cannot).

A source (a FHIR resource, a CSV or Parquet row) yields :class:`Record` s: one clinical fact
with its patient, time and payload, or the reason it was refused. :func:`to_event` places an
accepted record on the twin's time axis and gives it a deterministic idempotency key, so
running the same job again appends nothing twice.

Time axis: ``day = (effective - origin) / 86,400 s``, with ``origin`` the job's start of time
(UTC). The same origin must be used for every job feeding the same twins.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twin import errors, ports
from twin.domain import codec, events

__all__ = ["PATIENT_PREFIX", "ROW_COLUMNS", "Record", "patient_id_of", "prepare", "to_event"]

#: FHIR references name Novamind patients as ``Patient/<patient id>``.
PATIENT_PREFIX = "Patient/"
_SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Record:
    """One fact from a source, accepted (``payload`` set) or refused (``reason`` set).

    Attributes:
        source: Where it came from, e.g. ``Observation/abc`` or ``rows.csv:17`` (no values).
        patient: The patient reference as given (``Patient/<id>`` or a bare id), if known.
        effective: When it happened (aware datetime), if known.
        payload: The twin payload, validated by its constructor.
        reason: Why the record was refused (names fields and rules, never values).
        part: Distinguishes several records of one source (e.g. a start and a stop dose).
    """

    source: str
    patient: str | None
    effective: datetime | None
    payload: events.Payload | None = None
    reason: str | None = None
    part: str = ""

    @classmethod
    def refused(cls, source: str, reason: str, patient: str | None = None) -> Record:
        """A record that becomes no event."""
        return cls(source, patient, None, None, reason)


def patient_id_of(reference: object) -> str | None:
    """The Novamind patient id of a reference (``Patient/<id>`` or a bare id), or ``None``.

    Only the form the registry issues is an id (1-64 letters, digits, ``_`` or ``-``): anything
    else in a source (a number, an object, control characters, a long text) refers to no one.
    """
    if not isinstance(reference, str) or not reference:
        return None
    pid = reference[len(PATIENT_PREFIX) :] if reference.startswith(PATIENT_PREFIX) else reference
    return pid if ports.is_patient_id(pid) else None


def _payload_json(payload: events.Payload) -> str:
    """The codec's JSON of a payload: sorted keys, no spaces."""
    return json.dumps(codec.encode(payload), sort_keys=True, separators=(",", ":"))


def _key(source: str, part: str, effective: datetime, payload_json: str) -> str:
    """Deterministic idempotency key: the source identity, the part, and the fact itself.

    The digest of the compact JSON ``[source, part, effective, payload]`` (sorted keys). Built
    around :func:`_payload_json`'s text, which is the same as dumping the list whole: the payload
    is serialised once per record. The form must never change: keys of earlier jobs are in the
    log, and a re-run must find them.
    """
    head = json.dumps([source, part, effective.isoformat()], separators=(",", ":"))
    fact = f"{head[:-1]},{payload_json}]"
    return "ingest:" + hashlib.sha256(fact.encode()).hexdigest()[:48]


def _place(record: Record, origin: datetime) -> tuple[str, float, events.Payload, str, str]:
    """An accepted record's patient id, day, payload, payload JSON and idempotency key.

    Raises:
        InvalidInputError: Why the record cannot become an event.
    """
    if record.reason is not None or record.payload is None:
        raise errors.InvalidInputError(record.reason or "no payload")
    patient_id = patient_id_of(record.patient)
    if patient_id is None:
        raise errors.InvalidInputError("subject: a reference Patient/<patient id> is required")
    if record.effective is None:
        raise errors.InvalidInputError("effective time: missing")
    if record.effective.tzinfo is None:
        raise errors.InvalidInputError("effective time: a UTC offset is required")
    day = (record.effective.astimezone(UTC) - origin).total_seconds() / _SECONDS_PER_DAY
    if day < 0:
        raise errors.InvalidInputError("effective time: before the ingest origin")
    if day > ports.MAX_DAY:
        raise errors.InvalidInputError(
            f"effective time: more than {ports.MAX_DAY:g} days after the origin"
        )
    text = _payload_json(record.payload)
    return (
        patient_id,
        day,
        record.payload,
        text,
        _key(record.source, record.part, record.effective, text),
    )


def to_event(record: Record, origin: datetime) -> tuple[str, ports.NewEvent]:
    """The patient id and the event of an accepted record.

    Args:
        record: An accepted record.
        origin: The job's time origin (aware, UTC).

    Returns:
        ``(patient_id, NewEvent)`` with a deterministic idempotency key.

    Raises:
        InvalidInputError: The record was refused, has no usable patient reference or time, or
            happened before ``origin``.
    """
    patient_id, day, payload, _, key = _place(record, origin)
    return patient_id, ports.NewEvent(key, day, payload)


#: Columns of a prepared row (the pipeline's schema between parsing and writing).
ROW_COLUMNS = ("patient_id", "idempotency_key", "day", "payload", "source", "reason")


def prepare(records: list[Record], origin: datetime) -> dict[str, list[Any]]:
    """Columns for the pipeline (:data:`ROW_COLUMNS`): an event's fields, or the refusal reason.

    Accepted rows have ``reason = None`` and ``payload`` as the codec's JSON (compact, sorted
    keys); refused rows keep ``source``, the patient id where known, and ``reason``. Columns
    rather than row dicts: the pipeline makes an Arrow table of them without a per-row step.
    """
    columns: dict[str, list[Any]] = {name: [] for name in ROW_COLUMNS}
    patient_ids, keys, days = columns["patient_id"], columns["idempotency_key"], columns["day"]
    payloads, sources, reasons = columns["payload"], columns["source"], columns["reason"]
    for record in records:
        sources.append(record.source)
        try:
            patient_id, day, _, text, key = _place(record, origin)
        except errors.InvalidInputError as exc:
            patient_ids.append(patient_id_of(record.patient))
            keys.append(None)
            days.append(None)
            payloads.append(None)
            reasons.append(str(exc))
            continue
        patient_ids.append(patient_id)
        keys.append(key)
        days.append(day)
        payloads.append(text)
        reasons.append(None)
    return columns
