"""Bulk-ingest records: what a source row says, and the event it becomes (or why it cannot).

A source (a FHIR resource, a CSV or Parquet row) yields :class:`Record` s: one clinical fact
with its subject, time and payload, a patient to match or register (:class:`PatientFacts`), or
the reason it was refused. :func:`prepare` gives each accepted record a deterministic
idempotency key, so running the same job again appends nothing twice; :func:`day_of` places it
on its patient's time axis once the job knows who the subject is.

Time axis: ``day = (effective - origin) / 86,400 s``, with ``origin`` the patient's enrolment
instant (docs/ingest.md). :func:`day_of` is :func:`twin.domain.time_axis.day_of`, the function
the HTTP API places an event's ``effective`` with: an instant lands on the same day either way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twin import errors, ports
from twin.domain import codec, events
from twin.domain.patients import is_patient_id
from twin.domain.time_axis import day_of

__all__ = [
    "PATIENT_PREFIX",
    "ROW_COLUMNS",
    "PatientFacts",
    "Record",
    "day_of",
    "patient_id_of",
    "prepare",
    "to_event",
]

#: FHIR references name Novamind patients as ``Patient/<patient id>``.
PATIENT_PREFIX = "Patient/"


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """A patient as a source describes them (a FHIR Patient): how to match or register them.

    Attributes:
        keys: The subject keys naming this patient in the job (``Patient/<id>``, its Bundle
            ``fullUrl``); see :mod:`twin.ingest.subjects`.
        identifiers: ``(system, value)`` pairs, matched against the registry's.
        name: Full name, if given.
        birth_date: ISO date, if given.
        mrn: The medical record number (the identifier typed MR, else the first).
        enrolled_at: The enrolment instant the Patient states (ISO 8601 with an offset; a
            Novamind export's enrolment extension), if any.
    """

    keys: tuple[str, ...]
    identifiers: tuple[tuple[str, str], ...]
    name: str | None
    birth_date: str | None
    mrn: str
    enrolled_at: str | None = None

    def to_json(self) -> str:
        """Compact JSON (the pipeline carries facts as text)."""
        return json.dumps(
            [list(self.keys), [list(i) for i in self.identifiers], self.name, self.birth_date,
             self.mrn, self.enrolled_at],
            separators=(",", ":"),
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> PatientFacts:
        """The inverse of :meth:`to_json`."""
        keys, identifiers, name, birth_date, mrn, *rest = json.loads(text)
        enrolled_at = rest[0] if rest else None
        return cls(
            tuple(keys), tuple((s, v) for s, v in identifiers), name, birth_date, mrn, enrolled_at
        )

    def enrolment(self) -> datetime | None:
        """The stated enrolment as an aware instant in UTC, or ``None``."""
        if self.enrolled_at is None:
            return None
        return datetime.fromisoformat(self.enrolled_at).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Record:
    """One fact from a source, accepted (``payload`` set) or refused (``reason`` set).

    Attributes:
        source: Where it came from, e.g. ``Observation/abc`` or ``rows.csv:17`` (no values).
        patient: The subject: a key of :mod:`twin.ingest.subjects` (``Patient/<id>``, a
            ``urn:uuid:``, an identifier), if known.
        effective: When it happened (aware datetime), if known.
        payload: The twin payload, validated by its constructor.
        reason: Why the record was refused (names fields and rules, never values).
        part: Distinguishes several records of one source (e.g. a start and a stop dose).
        enrolee: The patient a Patient resource describes (no payload, no reason).
    """

    source: str
    patient: str | None
    effective: datetime | None
    payload: events.Payload | None = None
    reason: str | None = None
    part: str = ""
    enrolee: PatientFacts | None = None

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
    return pid if is_patient_id(pid) else None


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


def _accepted(record: Record) -> tuple[datetime, events.Payload, str, str]:
    """An accepted record's time (in UTC), payload, payload JSON and idempotency key.

    Raises:
        InvalidInputError: Why the record cannot become an event.
    """
    if record.reason is not None or record.payload is None:
        raise errors.InvalidInputError(record.reason or "no payload")
    if record.effective is None:
        raise errors.InvalidInputError("effective time: missing")
    if record.effective.tzinfo is None:
        raise errors.InvalidInputError("effective time: a UTC offset is required")
    try:
        utc = record.effective.astimezone(UTC)
    except OverflowError:  # no UTC instant (year 1 at +14:00, year 9999 at -14:00)
        raise errors.InvalidInputError("effective time: outside the years 1-9999 in UTC") from None
    text = _payload_json(record.payload)
    # The key spells the time as the source gave it (keys of earlier jobs are in the log).
    return (
        utc,
        record.payload,
        text,
        _key(record.source, record.part, record.effective, text),
    )


def to_event(record: Record, origin: datetime, *, now: datetime) -> tuple[str, ports.NewEvent]:
    """The patient id and the event of an accepted record about a registered patient.

    Args:
        record: An accepted record whose subject is ``Patient/<patient id>`` (or the bare id).
        origin: The patient's time origin (aware).
        now: When the job runs (a record more than a day after it is refused).

    Returns:
        ``(patient_id, NewEvent)`` with a deterministic idempotency key.

    Raises:
        InvalidInputError: The record was refused, has no patient id or time, or its time is
            off the patient's axis (:func:`twin.domain.time_axis.day_of`).
    """
    effective, payload, _, key = _accepted(record)
    patient_id = patient_id_of(record.patient)
    if patient_id is None:
        raise errors.InvalidInputError("subject: a reference Patient/<patient id> is required")
    return patient_id, ports.NewEvent(key, day_of(effective, origin, now=now), payload)


#: Columns of a prepared row (the pipeline's schema between parsing and resolving subjects).
ROW_COLUMNS = ("subject", "effective", "idempotency_key", "payload", "source", "reason", "patient")


def _subject(record: Record) -> str | None:
    """The record's subject key; a bare patient id (tabular sources) as ``Patient/<id>``."""
    patient_id = patient_id_of(record.patient)
    if patient_id is not None and not str(record.patient).startswith(PATIENT_PREFIX):
        return PATIENT_PREFIX + patient_id
    return record.patient


def prepare(records: list[Record]) -> dict[str, list[Any]]:
    """Columns for the pipeline (:data:`ROW_COLUMNS`).

    An accepted record has its subject, ``effective`` (aware), idempotency key and payload as
    the codec's JSON (compact, sorted keys), and ``reason = None``; a refused one its source,
    subject and reason; a Patient its facts as JSON in ``patient``. Columns rather than row
    dicts: the pipeline makes an Arrow table of them without a per-row step.
    """
    columns: dict[str, list[Any]] = {name: [] for name in ROW_COLUMNS}
    subjects, times, keys = columns["subject"], columns["effective"], columns["idempotency_key"]
    payloads, sources, reasons = columns["payload"], columns["source"], columns["reason"]
    patients = columns["patient"]
    for record in records:
        sources.append(record.source)
        subjects.append(_subject(record))
        patients.append(None if record.enrolee is None else record.enrolee.to_json())
        if record.enrolee is not None:
            times.append(None)
            keys.append(None)
            payloads.append(None)
            reasons.append(None)
            continue
        try:
            effective, _, text, key = _accepted(record)
        except errors.InvalidInputError as exc:
            times.append(None)
            keys.append(None)
            payloads.append(None)
            reasons.append(str(exc))
            continue
        times.append(effective)
        keys.append(key)
        payloads.append(text)
        reasons.append(None)
    return columns
