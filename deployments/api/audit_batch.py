"""Group commit for the audit trail: concurrent requests share one durable transaction.

Every request that touches patient data appends an audit record before it proceeds, so each
request would otherwise pay one synchronous commit (an fsync) of its own. Here, while one
append transaction is in flight, newly arriving records wait; the next transaction takes all of
them (``AuditLog.append_many``). Each caller still gets its entry only after the commit that
holds it, so "audited before served" keeps its meaning; the chain order is the arrival order.

Nothing one client sends can fail another client's audit write: a record that may not be
stored is refused before it joins a transaction (:func:`twin.domain.audit.check_writable`),
and a transaction that the store refuses anyway (not one it could not reach) is retried one
record at a time, so only the records that fail on their own fail their callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from twin import errors, ports
from twin.domain.audit import AuditEntry, AuditRecord, check_writable

__all__ = ["GroupCommitAuditLog"]


class GroupCommitAuditLog:
    """An :class:`twin.ports.AuditLog` that batches concurrent appends (see module docstring).

    Args:
        inner: The durable audit log.
        max_batch: Most records per transaction.
    """

    def __init__(self, inner: ports.AuditLog, *, max_batch: int = 500) -> None:
        self._inner = inner
        self._max_batch = max_batch
        self._waiting: list[tuple[AuditRecord, asyncio.Future[AuditEntry]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, record: AuditRecord) -> AuditEntry:
        """Append durably (in the next group transaction).

        Raises:
            InvalidInputError: The record may not be stored (it joins no transaction).
        """
        check_writable(record)
        future: asyncio.Future[AuditEntry] = asyncio.get_running_loop().create_future()
        self._waiting.append((record, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def append_many(self, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        """Append a caller's own batch (passes through, ordered after earlier appends)."""
        return list(await asyncio.gather(*(self.append(r) for r in records)))

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                entries = await self._inner.append_many([record for record, _ in batch])
            except Exception as exc:
                if len(batch) == 1 or _unavailable(exc):
                    # The store is down: every record would fail alone too, each after its own
                    # timeout, so all of this transaction's callers learn it now.
                    for _, future in batch:
                        _settle(future, exc)
                    continue
                # One record's failure must not become every caller's: each alone, in order.
                for record, future in batch:
                    try:
                        (entry,) = await self._inner.append_many([record])
                    except Exception as alone:  # this caller's own failure
                        _settle(future, alone)
                    else:
                        _settle(future, entry)
                continue
            for (_, future), entry in zip(batch, entries, strict=True):
                _settle(future, entry)  # a caller that went away is still audited

    async def entries(self, *, after_seq: int = 0, limit: int = 10_000) -> list[AuditEntry]:
        """Entries in chain order (from the durable log)."""
        return await self._inner.entries(after_seq=after_seq, limit=limit)


def _settle(future: asyncio.Future[AuditEntry], outcome: AuditEntry | Exception) -> None:
    """Resolve a caller's future, unless the caller has gone away."""
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _unavailable(exc: Exception) -> bool:
    """Whether a failed transaction says the store could not be reached (not what it held)."""
    return isinstance(
        exc, errors.StorageUnavailableError | ConnectionError | TimeoutError | asyncio.TimeoutError
    )
