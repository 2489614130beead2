"""Reading the :class:`twin.ports.AuditLog` port whole, and anchoring its head.

:func:`twin.domain.audit.verify_chain` needs every entry in chain order; the port hands them
out in pages. :func:`verify_audit_log` reads them and every anchor of the
:class:`twin.ports.AuditAnchorStore`; :func:`anchor_audit_log` writes a new anchor of a chain
that verifies; :class:`AnchoringAuditLog` anchors the head in the background each time the
chain grows past another multiple of N entries. This module sits beside :mod:`twin.ports`, not
in :mod:`twin.domain`, because it takes ports (the domain layer may not import the ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twin import errors
from twin.domain.audit import AuditAnchor, AuditEntry, AuditRecord, ChainReport, now, verify_chain
from twin.ports import AuditAnchorStore, AuditLog

__all__ = [
    "AnchorOutcome",
    "AnchoringAuditLog",
    "all_audit_entries",
    "anchor_audit_log",
    "verify_audit_log",
]

_LOG = logging.getLogger("novamind.audit")


async def all_audit_entries(log: AuditLog, *, page: int = 10_000) -> list[AuditEntry]:
    """The whole audit chain, read page by page (for verification).

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


async def verify_audit_log(
    log: AuditLog, anchors: AuditAnchorStore | None, *, expected_head: str | None = None
) -> ChainReport:
    """Verify the whole chain, and hold it to every anchor ``anchors`` keeps.

    Args:
        log: The audit trail.
        anchors: The anchor store; ``None`` checks the chain's own links only.
        expected_head: A head hash kept elsewhere, checked too.

    Returns:
        The report. An anchor store that cannot be read as one (a damaged, edited or cut
        anchor record) makes it not ``ok``: that is evidence of tampering too.

    Raises:
        StorageUnavailableError: The log or the anchor store cannot be reached (retry).
    """
    if anchors is None:
        return verify_chain(await all_audit_entries(log), expected_head=expected_head)
    # Anchors first: each anchors an entry already committed, so the chain read after them is
    # at least as long. Read the other way round, an anchor written meanwhile by a busy
    # service would find the chain read before it "truncated".
    try:
        kept = await anchors.all()
    except errors.AuditAnchorCorruptError as exc:
        report = verify_chain(await all_audit_entries(log), expected_head=expected_head)
        why = f"the audit anchors are damaged: {exc}"
        return dataclasses.replace(
            report, ok=False, reason=f"{report.reason}; {why}" if report.reason else why
        )
    entries = await all_audit_entries(log)
    return verify_chain(entries, expected_head=expected_head, anchors=kept)


@dataclass(frozen=True, slots=True)
class AnchorOutcome:
    """What :func:`anchor_audit_log` did.

    Attributes:
        report: The verification of the chain (against the earlier anchors) that came first.
        anchor: The anchor written, or the latest one when the chain had not grown since;
            ``None`` when nothing was anchored (a broken chain, or an empty one).
        written: Whether ``anchor`` is new.
    """

    report: ChainReport
    anchor: AuditAnchor | None
    written: bool


async def anchor_audit_log(log: AuditLog, anchors: AuditAnchorStore) -> AnchorOutcome:
    """Anchor the current head of a chain that verifies (links and earlier anchors).

    A broken chain is never anchored: an anchor would vouch for the tampering. When the latest
    anchor already covers the whole chain, nothing new is written (a scheduled run on an idle
    service adds nothing).

    Raises:
        StorageUnavailableError: The log or the anchor store cannot be reached (retry).
    """
    report = await verify_audit_log(log, anchors)
    if not report.ok:
        return AnchorOutcome(report, None, False)
    latest = report.latest_anchor
    if latest is not None and latest.entries == report.entries:
        return AnchorOutcome(report, latest, False)
    if report.entries == 0:
        return AnchorOutcome(report, None, False)
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
    verified first (that reads it whole): an anchor here records what the head was, and
    ``novamind audit verify`` holds the chain to it.

    Args:
        inner: The durable audit log.
        anchors: Where anchors go.
        every: Entries between anchors (N).
        on_failure: Called with each failure (e.g. to count it in a metric).
    """

    def __init__(
        self,
        inner: AuditLog,
        anchors: AuditAnchorStore,
        *,
        every: int,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        if every < 1:
            raise errors.InvalidInputError("audit anchor interval: at least 1 entry")
        self._inner = inner
        self._anchors = anchors
        self._every = every
        self._on_failure = on_failure
        self._pending: AuditEntry | None = None
        self._writer: asyncio.Task[None] | None = None

    async def append(self, record: AuditRecord) -> AuditEntry:
        """Append durably (through the inner log); anchors in the background when due."""
        (entry,) = await self.append_many([record])
        return entry

    async def append_many(self, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        """Append durably in one transaction; anchors in the background when due."""
        entries = await self._inner.append_many(records)
        if entries and (entries[-1].seq // self._every) > ((entries[0].seq - 1) // self._every):
            self._due(entries[-1])
        return entries

    async def entries(self, *, after_seq: int = 0, limit: int = 10_000) -> list[AuditEntry]:
        """Entries in chain order (from the inner log)."""
        return await self._inner.entries(after_seq=after_seq, limit=limit)

    def _due(self, head: AuditEntry) -> None:
        if self._pending is None or head.seq > self._pending.seq:
            self._pending = head
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while (head := self._pending) is not None:
            self._pending = None
            try:
                await self._anchors.put(AuditAnchor(head.seq, head.hash, now()))
            except Exception as exc:  # never the request's failure; the next crossing retries
                _LOG.warning(
                    "audit anchor at %d entries not written (%s)", head.seq, type(exc).__name__
                )
                if self._on_failure is not None:
                    with contextlib.suppress(Exception):
                        self._on_failure(exc)

    async def aclose(self, *, timeout_s: float = 10.0) -> None:
        """Let the anchor in flight finish (at most ``timeout_s`` seconds), then stop it."""
        writer = self._writer
        if writer is None or writer.done():
            return
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(writer), timeout=timeout_s)
        if not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
