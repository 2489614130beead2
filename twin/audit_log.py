"""Verifying the :class:`twin.ports.AuditLog` port page by page, and anchoring its head.

:func:`verify_audit_log` streams the whole chain through a
:class:`twin.domain.audit.ChainVerifier` (one page in memory at a time) and holds it to every
anchor of the :class:`twin.ports.AuditAnchorStore`; :func:`anchor_audit_log` checks the chain
from its latest anchor on (that entry's hash, then every link after it) and anchors the head;
:class:`AnchoringAuditLog` anchors the head in the background each time the chain grows past
another multiple of N entries, and reports the latest anchor's age. This module sits beside
:mod:`twin.ports`, not in :mod:`twin.domain`, because it takes ports (the domain layer may not
import the ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from twin import errors
from twin.domain.audit import (
    AnchoringPolicy,
    AnchorScan,
    AuditAnchor,
    AuditEntry,
    AuditRecord,
    ChainReport,
    ChainVerifier,
    anchor_key,
    anchoring_gaps,
    now,
)
from twin.domain.events import MAX_SEQ
from twin.ports import AuditAnchorStore, AuditLog

__all__ = [
    "AnchorOutcome",
    "AnchoringAuditLog",
    "all_audit_entries",
    "anchor_audit_log",
    "chain_length",
    "verify_audit_log",
]

_LOG = logging.getLogger("novamind.audit")
#: Entries per read while verifying (about 0.9 KB each in memory).
PAGE = 5000


async def all_audit_entries(log: AuditLog, *, page: int = 10_000) -> list[AuditEntry]:
    """The whole audit chain in a list (tests and small chains; verification streams instead).

    Args:
        log: The audit trail.
        page: Entries per read.

    Returns:
        Every entry, in chain order.
    """
    out: list[AuditEntry] = []
    while batch := await log.entries(after_seq=out[-1].seq if out else 0, limit=page):
        out.extend(batch)
    return out


async def _stream(
    log: AuditLog, verifier: ChainVerifier, *, after: int, page: int, offload: bool = False
) -> None:
    """Feed the entries after ``after`` to ``verifier``, page by page, up to the chain's end.

    ``offload``: each page is hashed in a worker thread (about 46 ms per 5,000 entries), so an
    event loop serving requests is not held that long; pages are fed one at a time.
    """
    while batch := await log.entries(after_seq=after, limit=page):
        fed = await asyncio.to_thread(verifier.feed, batch) if offload else verifier.feed(batch)
        if not fed or len(batch) < page:
            return
        after = batch[-1].seq


async def chain_length(log: AuditLog) -> int:
    """The highest ``seq`` in the chain (0 when empty), in O(log n) reads of one entry."""

    async def beyond(seq: int) -> bool:
        return bool(await log.entries(after_seq=seq, limit=1))

    if not await beyond(0):
        return 0
    low, high = 0, 1  # an entry lies above low; none above high, once found
    while await beyond(high):
        if high >= MAX_SEQ:
            return MAX_SEQ
        low, high = high, min(2 * high, MAX_SEQ)
    while high - low > 1:
        middle = (low + high) // 2
        if await beyond(middle):
            low = middle
        else:
            high = middle
    return high


def _unreadable_why(scan: AnchorScan) -> str | None:
    """Why the stored items of ``scan`` that are not anchors matter (``None``: there are none)."""
    if not scan.unreadable_count:
        return None
    named = ", ".join(scan.unreadable)
    rest = scan.unreadable_count - len(scan.unreadable)
    return (
        f"{scan.unreadable_count} unreadable audit anchor(s) ({named}"
        + (f" and {rest} more" if rest > 0 else "")
        + "): not an anchor as the anchor writer stores one (damaged, or put there by someone "
        "holding its role); the chain was held to every readable anchor"
    )


async def verify_audit_log(
    log: AuditLog,
    anchors: AuditAnchorStore | None,
    *,
    expected_head: str | None = None,
    policy: AnchoringPolicy | None = None,
    covered_only: bool = False,
    page: int = PAGE,
    offload: bool = False,
) -> ChainReport:
    """Verify the whole chain, streaming, and hold it to every anchor ``anchors`` keeps.

    Args:
        log: The audit trail.
        anchors: The anchor store; ``None`` checks the chain's own links only.
        expected_head: A head hash kept elsewhere, checked too.
        policy: How recently the chain must have been anchored (:func:`anchoring_gaps`: a
            failure when ``strict``, else a warning); ``None`` asks nothing.
        covered_only: A restored chain: anchors above its length are counted
            (``anchors_beyond``), not reported as truncation; the policy is not applied.
        page: Entries per read.
        offload: Hash each page in a worker thread (a server's event loop stays free).

    Returns:
        The report. A stored item that is not an anchor makes it not ``ok`` (it is named by
        its place), and the chain is still held to every readable anchor.

    Raises:
        StorageUnavailableError: The log or the anchor store cannot be reached (retry).
    """
    if anchors is None:
        verifier = ChainVerifier()
        await _stream(log, verifier, after=0, page=page, offload=offload)
        return verifier.report(expected_head=expected_head)
    # Anchors first: each anchors an entry already committed, so the chain read after them is
    # at least as long. Read the other way round, an anchor written meanwhile by a busy
    # service would find the chain read before it "truncated".
    scan = await anchors.scan()
    verifier = ChainVerifier(scan.anchors, beyond="count" if covered_only else "contradict")
    await _stream(log, verifier, after=0, page=page, offload=offload)
    report = verifier.report(expected_head=expected_head)
    if (why := _unreadable_why(scan)) is not None:
        report = replace(
            report, unreadable_anchors=scan.unreadable, unreadable_count=scan.unreadable_count
        ).failing(why)
    if scan.notes:
        report = report.warned(*scan.notes)
    if policy is not None and not covered_only and not verifier.broken:
        for gap in anchoring_gaps(report, policy, datetime.now(UTC), scan.anchors):
            report = report.failing(gap) if policy.strict else report.warned(gap)
    return report


@dataclass(frozen=True, slots=True)
class AnchorOutcome:
    """What :func:`anchor_audit_log` did.

    Attributes:
        report: The check of the chain from its latest anchor to its head that came first
            (its ``warnings`` name stored items that are not anchors).
        anchor: The anchor written, or the latest one when it covers the whole chain and is
            recent; ``None`` when nothing was anchored (a broken chain, or an empty one).
        written: Whether ``anchor`` is new.
    """

    report: ChainReport
    anchor: AuditAnchor | None
    written: bool


async def _recent_scan(anchors: AuditAnchorStore, head: int, every: int) -> AnchorScan:
    """The anchors near and above ``head``, widening the window back until one is found.

    Normally the first window (4N entries) holds the latest anchor: one short listing instead
    of every anchor ever written.
    """
    window = 4 * max(1, every)
    while True:
        low = max(0, head - window)
        scan = await anchors.scan(min_entries=low)
        if scan.anchors or low == 0:
            return scan
        window *= 16


async def anchor_audit_log(
    log: AuditLog,
    anchors: AuditAnchorStore,
    *,
    every: int = 1000,
    refresh_after_s: float | None = None,
    page: int = PAGE,
) -> AnchorOutcome:
    """Anchor the current head, once the chain checks from its latest anchor on.

    The entry at the latest anchor's length must hash to it (as must every other anchor of
    that length), and every link after it must hold: a chain that does not is never
    anchored (an anchor would vouch for the tampering). What lies below the latest anchor was
    checked when that anchor was written; ``novamind audit verify`` checks it all again.
    When the latest anchor covers the whole chain and is younger than ``refresh_after_s``,
    nothing new is written (a second run on an idle service adds nothing); an older one is
    written again with the current time, so that the latest anchor's age says whether
    anchoring works.

    Args:
        log: The audit trail.
        anchors: The anchor store.
        every: Entries between the service's anchors (N): how far back the latest is sought.
        refresh_after_s: Age, seconds, past which an anchor of an unchanged head is renewed
            (``None``: never).
        page: Entries per read.

    Raises:
        StorageUnavailableError: The log or the anchor store cannot be reached (retry).
    """
    head = await chain_length(log)
    scan = await _recent_scan(anchors, head, every)
    latest = scan.anchors[-1] if scan.anchors else None
    verifier = ChainVerifier(scan.anchors)
    after = 0
    if latest is not None and latest.entries > 0:
        got = await log.entries(after_seq=latest.entries - 1, limit=1)
        if not got and head:  # shorter than anchored: check from the head, then "truncated"
            got = await log.entries(after_seq=head - 1, limit=1)
        if got:
            first = got[0]
            start = min(first.seq, latest.entries) - 1
            verifier = ChainVerifier(
                [a for a in scan.anchors if a.entries > start], start=(start, first.prev_hash)
            )
            verifier.feed([first])
            after = first.seq
    if not verifier.broken:
        await _stream(log, verifier, after=after, page=page)
    report = verifier.report()
    if (why := _unreadable_why(scan)) is not None:  # reported by verify; anchoring goes on
        report = report.warned(why)
    if not report.ok or report.entries == 0:
        return AnchorOutcome(report, None, False)
    if latest is not None and latest.entries == report.entries:
        clock = datetime.now(UTC)
        age_s = (clock - latest.trusted_when(clock)).total_seconds()
        if refresh_after_s is None or age_s < refresh_after_s:
            return AnchorOutcome(report, latest, False)
    anchor = AuditAnchor(report.entries, report.head_hash, now())
    await anchors.put(anchor)
    return AnchorOutcome(report, anchor, True)


class AnchoringAuditLog:
    """An :class:`twin.ports.AuditLog` that anchors the head every ``every`` entries.

    When an append commits entries that cross a multiple of ``every``, an anchor of the last
    of them is written in the background: the append returns at once, and a failed anchor
    never fails it (the failure is logged by its class alone, and ``on_failure`` is told).
    At most one anchor is written at a time; crossings that happen meanwhile are folded into
    one anchor of the newest head, written when the one in flight is done. The chain is not
    verified first: an anchor here records what the committed head was, and
    ``novamind audit verify`` holds the chain to it.

    After each append, ``on_age`` is told the latest anchor's age in seconds (anchors this log
    wrote, and those it finds in the store, looked up in the background at most every
    ``refresh_s``: the scheduled anchors and other processes' are learnt too).

    Args:
        inner: The durable audit log.
        anchors: Where anchors go.
        every: Entries between anchors (N).
        on_failure: Called with each failure (e.g. to count it in a metric).
        on_age: Called with the latest anchor's age, seconds (e.g. a gauge).
        refresh_s: Seconds between look-ups of the latest anchor in the store (``None``:
            only the anchors this log writes are known).
    """

    def __init__(
        self,
        inner: AuditLog,
        anchors: AuditAnchorStore,
        *,
        every: int,
        on_failure: Callable[[BaseException], None] | None = None,
        on_age: Callable[[float], None] | None = None,
        refresh_s: float | None = None,
    ) -> None:
        if every < 1:
            raise errors.InvalidInputError("audit anchor interval: at least 1 entry")
        self._inner = inner
        self._anchors = anchors
        self._every = every
        self._on_failure = on_failure
        self._on_age = on_age
        self._refresh_s = refresh_s
        self._pending: AuditEntry | None = None
        self._writer: asyncio.Task[None] | None = None
        self._latest: AuditAnchor | None = None
        self._latest_epoch_s = 0.0
        self._looked_at: float | None = None
        self._looker: asyncio.Task[None] | None = None

    async def append(self, record: AuditRecord) -> AuditEntry:
        """Append durably (through the inner log); anchors in the background when due."""
        (entry,) = await self.append_many([record])
        return entry

    async def append_many(self, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        """Append durably in one transaction; anchors in the background when due."""
        entries = await self._inner.append_many(records)
        if entries:
            if (entries[-1].seq // self._every) > ((entries[0].seq - 1) // self._every):
                self._due(entries[-1])
            self._look_up(entries[-1].seq)
            self._tell_age()
        return entries

    async def entries(self, *, after_seq: int = 0, limit: int = 10_000) -> list[AuditEntry]:
        """Entries in chain order (from the inner log)."""
        return await self._inner.entries(after_seq=after_seq, limit=limit)

    @property
    def latest(self) -> AuditAnchor | None:
        """The latest anchor known to this log."""
        return self._latest

    def _learn(self, anchor: AuditAnchor) -> None:
        if self._latest is None or anchor_key(anchor) > anchor_key(self._latest):
            self._latest = anchor
            self._latest_epoch_s = anchor.trusted_when(datetime.now(UTC)).timestamp()

    def _tell_age(self) -> None:
        if self._on_age is not None and self._latest is not None:
            with contextlib.suppress(Exception):  # a metric never fails an append
                self._on_age(max(0.0, time.time() - self._latest_epoch_s))

    def _look_up(self, head: int) -> None:
        if self._refresh_s is None or (self._looker is not None and not self._looker.done()):
            return
        clock = time.monotonic()
        if self._looked_at is not None and clock - self._looked_at < self._refresh_s:
            return
        self._looked_at = clock
        self._looker = asyncio.get_running_loop().create_task(self._look(head))

    async def _look(self, head: int) -> None:
        try:
            scan = await _recent_scan(self._anchors, head, self._every)
        except Exception as exc:  # the next look-up retries; the age keeps growing meanwhile
            _LOG.warning("latest audit anchor not read (%s)", type(exc).__name__)
            return
        if scan.anchors:
            self._learn(scan.anchors[-1])
            self._tell_age()

    def _due(self, head: AuditEntry) -> None:
        if self._pending is None or head.seq > self._pending.seq:
            self._pending = head
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while (head := self._pending) is not None:
            self._pending = None
            anchor = AuditAnchor(head.seq, head.hash, now())
            try:
                await self._anchors.put(anchor)
            except Exception as exc:  # never the request's failure; the next crossing retries
                _LOG.warning(
                    "audit anchor at %d entries not written (%s)", head.seq, type(exc).__name__
                )
                if self._on_failure is not None:
                    with contextlib.suppress(Exception):
                        self._on_failure(exc)
            else:
                self._learn(anchor)
                self._tell_age()

    async def aclose(self, *, timeout_s: float = 10.0) -> None:
        """Let the anchor in flight finish (at most ``timeout_s`` seconds), then stop it."""
        looker = self._looker
        if looker is not None and not looker.done():
            looker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await looker
        writer = self._writer
        if writer is None or writer.done():
            return
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(writer), timeout=timeout_s)
        if not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
