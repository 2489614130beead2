"""The audit trail: hash-chained, append-only records of every access to patient data.

Each entry stores the hash of the one before it; its own hash is
SHA-256(previous hash ‖ canonical JSON of (seq, record)). :func:`verify_chain` recomputes the
chain and reports the first entry that was edited, deleted, inserted or moved. Records name the
opaque patient id, never identifiers (no PHI in the audit trail itself).

The chain alone is only tamper-evident against a head kept elsewhere: whoever can write the
database can rewrite every entry and recompute every hash, or drop the newest entries. An
:class:`AuditAnchor` is such a head (the chain's length and its hash at that length, with the
time it was taken), written where the database's writers cannot change it (S3 Object Lock, or
an append-only file); :class:`ChainVerifier` checks the chain against every anchor given,
page by page (the chain is never held in memory whole).

What anchors cannot do: entries newer than the latest anchor are protected only by the
database's access control, until the next anchor is written (at most N entries or the
anchoring interval later); :func:`anchoring_gaps` reports a chain whose anchoring stopped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from twin import errors
from twin.domain.events import MAX_SEQ

#: The largest sequence number a store's 64-bit column holds.
_INT64_MAX = 2**63 - 1

__all__ = [
    "FUTURE_SKEW_S",
    "GENESIS",
    "MALFORMED",
    "REPORT_LIST_MAX",
    "AnchorScan",
    "AnchoringPolicy",
    "AuditAnchor",
    "AuditEntry",
    "AuditRecord",
    "ChainReport",
    "ChainVerifier",
    "anchor_key",
    "anchoring_gaps",
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
#: Contradicted anchors, unreadable anchors and warnings a report lists (it counts the rest).
REPORT_LIST_MAX = 10
#: Longest anchor time accepted (characters of ISO 8601).
_AT_MAX = 40
#: Seconds an anchor's ``at`` may run ahead of when its store recorded it (clock skew).
FUTURE_SKEW_S = 300.0
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
        StorageUnavailableError: The stored last sequence number leaves no room in a 64-bit
            column (a row planted behind the service's back: ``novamind audit verify`` names
            it); nothing is appended.
    """
    if last_seq > _INT64_MAX - len(records):
        raise errors.StorageUnavailableError(
            f"the audit trail's last sequence number {last_seq} leaves no room for another "
            "entry (a row written behind the service's back: run `novamind audit verify`)"
        )
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
        entries: Chain length when anchored: the ``seq`` of the anchored head (0: empty chain),
            at most :data:`~twin.domain.events.MAX_SEQ` (the largest audit ``seq``).
        head_hash: The hash of entry ``entries`` (64 lowercase hex; :data:`GENESIS` for 0).
        at: When it was anchored: ISO 8601 with its UTC offset (UTC as written).
        recorded_at: When the store recorded it, as the store itself says (S3: the version's
            LastModified; a local file: the time it was read), filled in by the store on
            reading; ``None``: not known. Not part of the anchor (never compared or written):
            ``at`` is chosen by whoever writes the anchor, this time is not.

    Raises:
        InvalidInputError: A field out of its range (a stored anchor that is not one).
    """

    entries: int
    head_hash: str
    at: str
    recorded_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.entries, int) or isinstance(self.entries, bool):
            raise errors.InvalidInputError("audit anchor entries: an integer")
        if not 0 <= self.entries <= MAX_SEQ:
            raise errors.InvalidInputError(f"audit anchor entries: 0 to {MAX_SEQ}")
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
        recorded = self.recorded_at
        if recorded is not None and (
            not isinstance(recorded, datetime) or recorded.utcoffset() is None
        ):
            raise errors.InvalidInputError("audit anchor recorded_at: a time with its UTC offset")

    def when(self) -> datetime:
        """``at`` as an aware datetime."""
        return datetime.fromisoformat(self.at)

    def trusted_when(self, now: datetime) -> datetime:
        """The instant its age is counted from: the earlier of ``at`` and when it was recorded.

        A store records nothing after it is read, so ``now`` stands in for an unknown
        ``recorded_at``. An ``at`` set ahead (a clock running fast, or an anchor written to
        look fresh) never makes an anchor younger than its store says it is.
        """
        return min(self.when(), self.recorded_at if self.recorded_at is not None else now)

    def future_dated(self, now: datetime) -> bool:
        """Whether ``at`` is more than :data:`FUTURE_SKEW_S` after its store recorded it."""
        recorded = self.recorded_at if self.recorded_at is not None else now
        return (self.when() - recorded).total_seconds() > FUTURE_SKEW_S

    def describe(self) -> str:
        """How reports name it: ``the anchor of N entries at T``."""
        return f"the anchor of {self.entries} entries at {self.at}"


def anchor_key(anchor: AuditAnchor) -> tuple[int, datetime]:
    """The order anchors are listed in: by ``entries``, then the instant ``at``."""
    return anchor.entries, anchor.when()


@dataclass(frozen=True, slots=True)
class AnchorScan:
    """What an anchor store holds, as read (:meth:`twin.ports.AuditAnchorStore.scan`).

    Attributes:
        anchors: Every readable anchor, sorted by :func:`anchor_key`.
        unreadable: The first :data:`REPORT_LIST_MAX` stored items that are not anchors, each
            named by its place in the store (never by its content, which anyone holding the
            writer's role chose).
        unreadable_count: How many such items in all.
        notes: What was found that is not evidence of tampering (e.g. a last line torn by a
            crash mid-write, never acknowledged).
    """

    anchors: tuple[AuditAnchor, ...] = ()
    unreadable: tuple[str, ...] = ()
    unreadable_count: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of a verification.

    Attributes:
        ok: Intact, consistent with every anchor checked, every stored anchor readable, and
            (where required) anchored recently enough.
        entries: Chain length read (reading stops at the first broken link).
        head_hash: Hash of the last entry verified (of the whole chain when ``ok``).
        first_bad_seq: The first entry found edited, deleted, inserted or moved.
        reason: Why it is not ``ok``.
        anchors_checked: Anchors compared with the chain.
        latest_anchor: The anchor of the longest chain, newest last (``None``: no anchors).
        contradicted_anchor: The first (fewest entries) anchor the chain contradicts.
        contradicted_anchors: The first :data:`REPORT_LIST_MAX` anchors it contradicts.
        contradicted_count: How many anchors it contradicts in all.
        conflicting_lengths: The first :data:`REPORT_LIST_MAX` lengths anchored twice with
            different hashes, one of them agreeing with the chain (a forged anchor, or a chain
            rewritten and anchored again).
        unreadable_anchors: The first stored items that are not anchors, named by place.
        unreadable_count: How many in all.
        anchors_beyond: Anchors above the chain's length that were counted, not held to it
            (a restored chain, verified against the anchors it covers).
        warnings: What should be looked at but does not fail the report (at most
            :data:`REPORT_LIST_MAX`).
    """

    ok: bool
    entries: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None
    anchors_checked: int = 0
    latest_anchor: AuditAnchor | None = None
    contradicted_anchor: AuditAnchor | None = None
    contradicted_anchors: tuple[AuditAnchor, ...] = ()
    contradicted_count: int = 0
    conflicting_lengths: tuple[int, ...] = ()
    unreadable_anchors: tuple[str, ...] = ()
    unreadable_count: int = 0
    anchors_beyond: int = 0
    warnings: tuple[str, ...] = ()

    def failing(self, why: str) -> ChainReport:
        """This report, not ``ok``, with ``why`` added to its reason."""
        reason = f"{self.reason}; {why}" if self.reason else why
        return replace(self, ok=False, reason=reason)

    def warned(self, *notes: str) -> ChainReport:
        """This report with ``notes`` added to its warnings (at most :data:`REPORT_LIST_MAX`)."""
        return replace(self, warnings=(*self.warnings, *notes)[:REPORT_LIST_MAX])


class ChainVerifier:
    """Verifies the chain incrementally: pages of entries are fed in chain order.

    Each entry's hash is recomputed from its predecessor's, and at each length the anchors of
    that length are compared with the chain's hash there. Memory holds the anchors and one
    page, never the chain. A chain rewritten and re-hashed whole after an anchor was taken
    links perfectly, and is caught only by the anchor: its hash at the anchored length
    differs. Feeding stops counting as verification at the first broken link (the rest is
    only counted).

    Args:
        anchors: Anchors written earlier, in any order. Only those at ``start``'s length or
            above are held to the chain.
        start: ``(seq, hash)`` of a trusted entry to start after (an anchored head whose entry
            was checked); the default is the genesis.
        beyond: What an anchor above the chain's final length is: ``"contradict"`` (the chain
            was truncated) or ``"count"`` (a restored chain, held only to the anchors it
            covers; the rest are counted in ``anchors_beyond``).
    """

    def __init__(
        self,
        anchors: Iterable[AuditAnchor] = (),
        *,
        start: tuple[int, str] = (0, GENESIS),
        beyond: Literal["contradict", "count"] = "contradict",
    ) -> None:
        ordered = sorted(anchors, key=anchor_key)
        self._latest = ordered[-1] if ordered else None
        self._start, self._head = start
        self._seq = self._start
        self._pending: dict[int, list[AuditAnchor]] = {}
        for anchor in ordered:
            if anchor.entries >= self._start:
                self._pending.setdefault(anchor.entries, []).append(anchor)
        self._beyond = beyond
        self._read = 0
        self._bad: tuple[int, str] | None = None
        self._checked = 0
        self._contradicted: list[AuditAnchor] = []
        self._contradicted_count = 0
        self._conflicting: list[int] = []
        self._hold(self._seq, self._head)

    @property
    def broken(self) -> bool:
        """Whether a broken link was found (the rest of the chain proves nothing)."""
        return self._bad is not None

    def _contradict(self, anchor: AuditAnchor) -> None:
        self._contradicted_count += 1
        if len(self._contradicted) < REPORT_LIST_MAX:
            self._contradicted.append(anchor)

    def _hold(self, length: int, head: str) -> None:
        group = self._pending.pop(length, None)
        if not group:
            return
        agree = False
        disagree = False
        for anchor in group:
            self._checked += 1
            if anchor.head_hash == head:
                agree = True
            else:
                disagree = True
                self._contradict(anchor)
        if agree and disagree and len(self._conflicting) < REPORT_LIST_MAX:
            self._conflicting.append(length)

    def feed(self, entries: Iterable[AuditEntry]) -> bool:
        """Verify the next entries (in storage order); ``False`` once a link is broken."""
        for entry in entries:
            self._read += 1
            if self._bad is not None:
                continue
            position = self._seq + 1
            if not 1 <= entry.seq <= MAX_SEQ:
                # No entry the service writes has it: a row planted behind its back.
                self._bad = (entry.seq, f"sequence number out of range (1 to {MAX_SEQ})")
            elif entry.seq != position:
                self._bad = (entry.seq, "sequence gap or reorder")
            elif entry.prev_hash != self._head:
                self._bad = (entry.seq, "broken link: an entry before it changed or went missing")
            elif entry_hash(self._head, entry.seq, entry.record) != entry.hash:
                self._bad = (entry.seq, "entry content was altered")
            else:
                self._seq = position
                self._head = entry.hash
                self._hold(position, entry.hash)
        return self._bad is None

    def report(self, *, expected_head: str | None = None) -> ChainReport:
        """The verdict on what was fed.

        Args:
            expected_head: A head hash kept elsewhere; a shorter or different chain fails.

        Returns:
            ``ok`` and the head hash, or the first bad sequence number (a broken link) or
            the contradicted anchors, and why. Anchors above a broken link are not counted as
            checked: the chain is already known bad there.
        """
        checked = self._checked
        contradicted = list(self._contradicted)
        count = self._contradicted_count
        beyond = 0
        if self._bad is None:
            for length in sorted(self._pending):  # every one is above the chain's length
                for anchor in self._pending[length]:
                    if self._beyond == "count":
                        beyond += 1
                        continue
                    checked += 1
                    count += 1
                    if len(contradicted) < REPORT_LIST_MAX:
                        contradicted.append(anchor)
        report = ChainReport(
            ok=True,
            entries=self._start + self._read,
            head_hash=self._head,
            anchors_checked=checked,
            latest_anchor=self._latest,
            contradicted_anchor=contradicted[0] if contradicted else None,
            contradicted_anchors=tuple(contradicted),
            contradicted_count=count,
            conflicting_lengths=tuple(self._conflicting),
            anchors_beyond=beyond,
        )
        if self._bad is not None:
            seq, why = self._bad
            return replace(report, ok=False, first_bad_seq=seq, reason=why)
        if contradicted:
            return report.failing(_contradiction(contradicted[0], count, self._seq, report))
        if expected_head is not None and expected_head != self._head:
            return report.failing("head differs from the anchored head")
        return report


def _contradiction(first: AuditAnchor, count: int, length: int, report: ChainReport) -> str:
    """Why a chain that contradicts ``first`` (and ``count - 1`` more anchors) fails."""
    if first.entries > length:
        why = (
            f"contradicts {first.describe()}: the chain holds {length} entries, fewer than "
            "anchored (truncated)"
        )
    else:
        why = (
            f"contradicts {first.describe()}: entry {first.entries} hashes differently (the "
            "chain was rewritten after it was anchored, or the anchor was forged)"
        )
    if count > 1:
        why += f"; {count} anchors contradicted in all"
    if report.conflicting_lengths:
        lengths = ", ".join(str(n) for n in report.conflicting_lengths)
        why += (
            f"; conflicting anchors at the same length ({lengths} entries): one agrees with the "
            "chain and another does not, so either an anchor was forged by someone holding the "
            "anchor writer's role, or the chain was rewritten and then anchored again (compare "
            "the anchors' times)"
        )
    return why


def verify_chain(
    entries: Iterable[AuditEntry],
    *,
    expected_head: str | None = None,
    anchors: Sequence[AuditAnchor] = (),
) -> ChainReport:
    """Verify ``entries`` (all of them, in storage order) at once (:class:`ChainVerifier`)."""
    verifier = ChainVerifier(anchors)
    verifier.feed(entries)
    return verifier.report(expected_head=expected_head)


@dataclass(frozen=True, slots=True)
class AnchoringPolicy:
    """How recently a chain must have been anchored.

    Attributes:
        every_entries: Entries between the anchors the service writes (N).
        interval_s: Seconds between scheduled anchors; the latest may be twice as old.
        strict: Whether a gap fails the report (outside local use) or only warns.
    """

    every_entries: int
    interval_s: float
    strict: bool


def anchoring_gaps(
    report: ChainReport,
    policy: AnchoringPolicy,
    now: datetime,
    anchors: Sequence[AuditAnchor] = (),
) -> list[str]:
    """What the anchors of an otherwise verified chain lack, one sentence each.

    Entries newer than the latest anchor are protected by the database's access control alone
    (docs/operations.md, "Audit anchors"): a chain longer than N entries with no anchor at all
    (anchors missing, or looked for in the wrong place), or whose latest anchor is older than
    twice the interval (anchoring stopped), leaves that window open. An anchor's age counts
    from :meth:`AuditAnchor.trusted_when` (an anchor dated ahead never counts as fresh), and
    every anchor of ``anchors`` dated more than :data:`FUTURE_SKEW_S` after its store recorded
    it is reported too.
    """
    gaps: list[str] = []
    ahead = [anchor for anchor in anchors if anchor.future_dated(now)]
    if ahead:
        first = ahead[0]
        recorded = first.recorded_at if first.recorded_at is not None else now
        gaps.append(
            f"{len(ahead)} audit anchor(s) dated more than {FUTURE_SKEW_S:.0f} s after their "
            f"store recorded them (the first: {first.describe()}, recorded "
            f"{recorded.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}): a writer's clock runs ahead, or "
            "an anchor was written to look fresh; each one's age counts from when it was "
            "recorded"
        )
    latest = report.latest_anchor
    if latest is None:
        if report.entries > policy.every_entries:
            gaps.append(
                f"no audit anchor, and the chain holds {report.entries} entries (more than "
                f"{policy.every_entries}): the anchors are missing, or were looked for in the "
                "wrong place"
            )
        return gaps
    age_s = (now - latest.trusted_when(now)).total_seconds()
    if age_s > 2 * policy.interval_s:
        gaps.append(
            f"the latest audit anchor ({latest.describe()}) is {age_s:.0f} s old, more than "
            f"twice the anchoring interval ({policy.interval_s:.0f} s): anchoring stopped, and "
            "newer entries are protected only by the database's access control"
        )
    return gaps
