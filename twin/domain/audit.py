"""The audit trail: hash-chained, append-only records of every access to patient data.

Each entry stores the hash of the one before it; its own hash is
SHA-256(previous hash ‖ canonical JSON of (seq, record)). :func:`verify_chain` recomputes the
chain and reports the first entry that was edited, deleted, inserted or moved. Records name the
opaque patient id, never identifiers (no PHI in the audit trail itself). Truncation of the
newest entries is only visible against a head hash kept elsewhere: :func:`verify_chain` returns
the head so operators can anchor it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

from twin import errors

__all__ = [
    "GENESIS",
    "MALFORMED",
    "AuditEntry",
    "AuditRecord",
    "ChainReport",
    "chain",
    "check_writable",
    "entry_hash",
    "now",
    "record_from_json",
    "verify_chain",
]

#: What a stored field no valid record could hold is read and shown as.
MALFORMED = "<malformed>"


def now() -> str:
    """The time of an audit record: UTC, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


#: The "previous hash" of the first entry.
GENESIS = "0" * 64
#: Longest value of each text field a new record may carry (characters).
FIELD_LIMITS = {
    "actor": 256, "role": 32, "action": 64, "patient_id": 64, "outcome": 16, "purpose": 600,
    "at": 40, "request_id": 64,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Who did what to which patient's data, when, why, and whether it was allowed.

    Attributes:
        actor: Subject of the caller's token.
        role: The caller's role.
        action: What was attempted, e.g. ``"twin.read"``.
        patient_id: Opaque patient id, or ``None`` for actions on no single patient.
        outcome: ``allowed`` or ``denied``.
        purpose: Stated purpose of use (e.g. ``treatment``, or the break-glass reason).
        at: UTC time, ISO 8601.
        request_id: The request's id, to join with logs.
    """

    actor: str
    role: str
    action: str
    patient_id: str | None
    outcome: Literal["allowed", "denied"]
    purpose: str
    at: str
    request_id: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A stored record with its place in the chain."""

    seq: int
    record: AuditRecord
    prev_hash: str
    hash: str


def check_writable(record: AuditRecord) -> AuditRecord:
    """``record`` if every field may be stored, else an error naming the field (never its value).

    Every text field must be printable (no control characters such as NUL, no unpaired
    surrogates: PostgreSQL's JSONB refuses ``\u0000`` and lone surrogates, and one refused row
    would fail the whole transaction it shares with other requests' records) and within
    :data:`FIELD_LIMITS`. Records already stored are read as they are (:func:`record_from_json`):
    the check applies to new records only, so an old entry never stops verifying.

    Raises:
        InvalidInputError: A field is not text, too long, or holds a character that is refused.
    """
    for name, limit in FIELD_LIMITS.items():
        value = getattr(record, name)
        if value is None and name == "patient_id":
            continue
        if not isinstance(value, str) or not value or len(value) > limit:
            raise errors.InvalidInputError(f"audit {name}: 1-{limit} characters of text")
        if not value.isprintable():
            raise errors.InvalidInputError(f"audit {name}: control or unpaired characters")
    return record


def chain(prev_hash: str, last_seq: int, records: Sequence[AuditRecord]) -> list[AuditEntry]:
    """Entries for ``records`` appended after the entry ``(last_seq, prev_hash)``.

    Raises:
        InvalidInputError: A record that may not be stored (:func:`check_writable`).
    """
    out: list[AuditEntry] = []
    for record in records:
        check_writable(record)
        last_seq += 1
        digest = entry_hash(prev_hash, last_seq, record)
        out.append(AuditEntry(last_seq, record, prev_hash, digest))
        prev_hash = digest
    return out


def record_from_json(text: str | bytes) -> AuditRecord:
    """A stored record; one that does not parse becomes a ``<malformed>`` record.

    A row written behind the application's back may hold anything; it must reach the verifier
    (whose hash check then fails at that entry) instead of crashing the reader.
    """
    try:
        data = json.loads(text)
        return AuditRecord(**data)
    except (TypeError, ValueError):
        bad = MALFORMED
        return AuditRecord(bad, bad, bad, None, "denied", bad, bad, bad)


def entry_hash(prev_hash: str, seq: int, record: AuditRecord) -> str:
    """SHA-256(prev_hash ‖ canonical JSON of {"seq": seq, **record}) as hex."""
    body = json.dumps({"seq": seq, **asdict(record)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(prev_hash.encode() + body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of a verification."""

    ok: bool
    entries: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None


def verify_chain(entries: list[AuditEntry], *, expected_head: str | None = None) -> ChainReport:
    """Recompute the chain over ``entries`` (in storage order).

    Args:
        entries: All entries, as stored.
        expected_head: A head hash anchored earlier; a shorter or different chain fails.

    Returns:
        ``ok`` and the head hash, or the first bad sequence number and why.
    """
    prev = GENESIS
    for position, entry in enumerate(entries, start=1):
        if entry.seq != position:
            return ChainReport(False, len(entries), prev, entry.seq, "sequence gap or reorder")
        if entry.prev_hash != prev:
            return ChainReport(
                False,
                len(entries),
                prev,
                entry.seq,
                "broken link: an entry before it changed or went missing",
            )
        if entry_hash(prev, entry.seq, entry.record) != entry.hash:
            return ChainReport(False, len(entries), prev, entry.seq, "entry content was altered")
        prev = entry.hash
    if expected_head is not None and expected_head != prev:
        return ChainReport(False, len(entries), prev, None, "head differs from the anchored head")
    return ChainReport(True, len(entries), prev)
