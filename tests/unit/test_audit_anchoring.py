"""Anchoring every N entries: in the background, one at a time, never a request's failure."""

from __future__ import annotations

import asyncio
import logging

from twin import errors
from twin.audit_log import AnchoringAuditLog, verify_audit_log
from twin.domain.audit import AuditAnchor, AuditRecord
from twin.testing import fakes


def _record(i: int) -> AuditRecord:
    return AuditRecord(
        "dr-a", "clinician", "twin.read", f"p{i}", "allowed", "treatment",
        "2026-12-01T10:00:00.000+00:00", f"r{i}",
    )  # fmt: skip


class _SlowStore(fakes.MemoryAuditAnchorStore):
    """Holds each put until released; counts the puts in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.in_flight = 0
        self.peak = 0

    async def put(self, anchor: AuditAnchor) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        await super().put(anchor)


class _BrokenStore(fakes.MemoryAuditAnchorStore):
    async def put(self, anchor: AuditAnchor) -> None:
        raise errors.StorageUnavailableError("anchor bucket unreachable, secret detail")


async def test_crossings_while_one_is_written_fold_into_one_anchor_of_the_newest_head():
    log, store = fakes.MemoryAuditLog(), _SlowStore()
    anchoring = AnchoringAuditLog(log, store, every=2)
    await anchoring.append_many([_record(0)])  # 1: nothing due
    await asyncio.sleep(0)
    assert store.in_flight == 0
    await anchoring.append(_record(1))  # 2: due, and held in flight
    await asyncio.sleep(0)
    assert store.in_flight == 1
    for i in range(2, 7):  # crosses 4 and 6; the appends return while the first is held
        await anchoring.append(_record(i))
    store.release.set()
    await anchoring.aclose(timeout_s=5)
    assert store.peak == 1
    assert [a.entries for a in await store.all()] == [2, 6]
    assert (await store.all())[1].head_hash == log.entries_[5].hash


async def test_a_failed_anchor_never_fails_the_append_and_is_counted(caplog):
    failures: list[BaseException] = []
    anchoring = AnchoringAuditLog(
        fakes.MemoryAuditLog(), _BrokenStore(), every=1, on_failure=failures.append
    )
    with caplog.at_level(logging.WARNING, logger="novamind.audit"):
        entry = await anchoring.append(_record(0))
        await anchoring.aclose()
    assert entry.seq == 1 and len(failures) == 1
    assert "StorageUnavailableError" in caplog.text and "secret detail" not in caplog.text


async def test_verification_reads_the_anchors_before_the_chain_so_a_busy_service_is_not_truncated():
    log = fakes.MemoryAuditLog()
    await log.append_many([_record(i) for i in range(3)])

    class Busy(fakes.MemoryAuditAnchorStore):
        async def all(self) -> list[AuditAnchor]:
            kept = await super().all()
            await log.append_many([_record(9)])  # a request commits while verification reads
            return kept

    store = Busy()
    await store.put(AuditAnchor(3, log.entries_[2].hash, "2026-12-01T10:00:00+00:00"))
    report = await verify_audit_log(log, store)
    assert report.ok and report.entries == 4 and report.anchors_checked == 1


async def test_damaged_anchors_fail_verification_with_the_reason():
    class Damaged(fakes.MemoryAuditAnchorStore):
        async def all(self) -> list[AuditAnchor]:
            raise errors.AuditAnchorCorruptError("audit anchor file line 2 is damaged")

    log = fakes.MemoryAuditLog()
    await log.append(_record(0))
    report = await verify_audit_log(log, Damaged())
    assert not report.ok and "line 2 is damaged" in report.reason
    assert (await verify_audit_log(log, None)).ok
