"""The audit trail: hash-chained, append-only records of every access to patient data.

Each entry stores the hash of the one before it; its own hash is
SHA-256(previous hash ‖ canonical JSON of (seq, record)). :func:`verify_chain` recomputes the
chain and reports the first entry that was edited, deleted, inserted or moved. Records name the
opaque patient id, never identifiers (no PHI in the audit trail itself).

The chain alone is only tamper-evident against a head kept elsewhere: whoever can write the
database can rewrite every entry and recompute every hash, or drop the newest entries. An
:class:`AuditAnchor` is such a head (the chain's length and its hash at that length, with the
time it was taken), written where the database's writers cannot change it (S3 Object Lock, or
an append-only file); :func:`verify_chain` checks the chain against every anchor given.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

from twin import errors

__all__ = [
    "GENESIS",
    "MALFORMED",
    "AuditAnchor",
    "AuditEntry",
    "AuditRecord",
    "ChainReport",
    "anchor_key",
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
#: Longest anchor time accepted (characters of ISO 8601).
_AT_MAX = 40
_HEX64 = re.compile(r"[0-9a-f]{64}")
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
class AuditAnchor:
    """The chain's head at one length, kept where the database's writers cannot change it.

    Attributes:
        entries: Chain length when anchored: the ``seq`` of the anchored head (0: empty chain).
        head_hash: The hash of entry ``entries`` (64 lowercase hex; :data:`GENESIS` for 0).
        at: When it was anchored: UTC, ISO 8601.

    Raises:
        InvalidInputError: A field out of its range (a stored anchor that is not one).
    """

    entries: int
    head_hash: str
    at: str

    def __post_init__(self) -> None:
        if not isinstance(self.entries, int) or isinstance(self.entries, bool):
            raise errors.InvalidInputError("audit anchor entries: an integer")
        if not 0 <= self.entries < 2**63:
            raise errors.InvalidInputError("audit anchor entries: 0 to 2^63-1")
        if not isinstance(self.head_hash, str) or not _HEX64.fullmatch(self.head_hash):
            raise errors.InvalidInputError("audit anchor head_hash: 64 lowercase hex digits")
        if self.entries == 0 and self.head_hash != GENESIS:
            raise errors.InvalidInputError("audit anchor of an empty chain: the genesis hash")
        if not isinstance(self.at, str) or not 0 < len(self.at) <= _AT_MAX:
            raise errors.InvalidInputError(f"audit anchor at: 1-{_AT_MAX} characters")
        try:
            when = datetime.fromisoformat(self.at)
        except ValueError:
            raise errors.InvalidInputError("audit anchor at: an ISO 8601 time") from None
        if when.utcoffset() is None:
            raise errors.InvalidInputError("audit anchor at: a time with its UTC offset")

    def describe(self) -> str:
        """How reports name it: ``the anchor of N entries at T``."""
        return f"the anchor of {self.entries} entries at {self.at}"


def anchor_key(anchor: AuditAnchor) -> tuple[int, str]:
    """The order anchors are listed in: by ``entries``, then ``at``."""
    return anchor.entries, anchor.at


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of a verification.

    Attributes:
        ok: Intact, and consistent with every anchor checked.
        entries: Entries read.
        head_hash: Hash of the last entry verified (of the whole chain when ``ok``).
        first_bad_seq: The first entry found edited, deleted, inserted or moved.
        reason: Why it is not ``ok``.
        anchors_checked: Anchors compared with the chain.
        latest_anchor: The anchor of the longest chain (``None``: no anchors given).
        contradicted_anchor: The first (fewest entries) anchor the chain contradicts.
    """

    ok: bool
    entries: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None
    anchors_checked: int = 0
    latest_anchor: AuditAnchor | None = None
    contradicted_anchor: AuditAnchor | None = None


def verify_chain(
    entries: list[AuditEntry],
    *,
    expected_head: str | None = None,
    anchors: Sequence[AuditAnchor] = (),
) -> ChainReport:
    """Recompute the chain over ``entries`` (in storage order) and hold it to its anchors.

    Each entry's hash is recomputed from its predecessor's; then every anchor (cheap: anchors
    are few) must find the chain at least its length, with the anchored hash at that length.
    A chain rewritten and re-hashed whole after an anchor was taken links perfectly, and is
    caught only here: its hash at the anchored length differs.

    Args:
        entries: All entries, as stored.
        expected_head: A head hash anchored earlier; a shorter or different chain fails.
        anchors: Anchors written earlier, in any order.

    Returns:
        ``ok`` and the head hash, or the first bad sequence number (a broken link) or the
        first contradicted anchor, and why. Anchors above a broken link are not counted as
        checked: the chain is already known bad there.
    """
    ordered = sorted(anchors, key=anchor_key)
    latest = ordered[-1] if ordered else None
    by_length: dict[int, list[AuditAnchor]] = {}
    for anchor in ordered:
        by_length.setdefault(anchor.entries, []).append(anchor)
    checked = 0
    contradicted: AuditAnchor | None = None

    def hold(length: int, head: str) -> None:
        nonlocal checked, contradicted
        for anchor in by_length.get(length, ()):
            checked += 1
            if anchor.head_hash != head and contradicted is None:
                contradicted = anchor

    def report(ok: bool, head: str, bad: int | None = None, why: str | None = None) -> ChainReport:
        return ChainReport(ok, len(entries), head, bad, why, checked, latest, contradicted)

    prev = GENESIS
    hold(0, prev)
    for position, entry in enumerate(entries, start=1):
        if entry.seq != position:
            return report(False, prev, entry.seq, "sequence gap or reorder")
        if entry.prev_hash != prev:
            return report(
                False, prev, entry.seq, "broken link: an entry before it changed or went missing"
            )
        if entry_hash(prev, entry.seq, entry.record) != entry.hash:
            return report(False, prev, entry.seq, "entry content was altered")
        prev = entry.hash
        hold(position, prev)
    beyond = [a for a in ordered if a.entries > len(entries)]
    checked += len(beyond)
    if contradicted is None and beyond:
        contradicted = beyond[0]
    if contradicted is not None:
        if contradicted.entries > len(entries):
            why = (
                f"contradicts {contradicted.describe()}: the chain holds {len(entries)} "
                "entries, fewer than anchored (truncated)"
            )
        else:
            why = (
                f"contradicts {contradicted.describe()}: entry {contradicted.entries} hashes "
                "differently (the chain was rewritten after it was anchored)"
            )
        return report(False, prev, None, why)
    if expected_head is not None and expected_head != prev:
        return report(False, prev, None, "head differs from the anchored head")
    return report(True, prev)
