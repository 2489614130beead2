"""Anchoring and verifying through the ports: streamed, from the latest anchor, reported whole.

Anchoring every N entries happens in the background, one at a time, never a request's failure;
``novamind audit anchor`` checks the chain from its latest anchor on; verification streams the
chain page by page and reports every anchor it contradicts, every unreadable one, and (by
policy) a chain whose anchoring stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta

import pytest

from twin import errors
from twin.audit_log import AnchoringAuditLog, anchor_audit_log, chain_length, verify_audit_log
from twin.domain.audit import (
    AnchoringPolicy,
    AnchorScan,
    AuditAnchor,
    AuditEntry,
    AuditRecord,
    entry_hash,
    now,
)
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
        async def scan(self, *, min_entries: int = 0) -> AnchorScan:
            kept = await super().scan(min_entries=min_entries)
            await log.append_many([_record(9)])  # a request commits while verification reads
            return kept

    store = Busy()
    await store.put(AuditAnchor(3, log.entries_[2].hash, "2026-12-01T10:00:00+00:00"))
    report = await verify_audit_log(log, store)
    assert report.ok and report.entries == 4 and report.anchors_checked == 1


class _CountingLog(fakes.MemoryAuditLog):
    """Counts the entries handed out and the largest page asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.handed = 0
        self.largest_page = 0

    async def entries(self, *, after_seq: int = 0, limit: int = 10_000) -> list[AuditEntry]:
        self.largest_page = max(self.largest_page, limit)
        out = await super().entries(after_seq=after_seq, limit=limit)
        self.handed += len(out)
        return out


async def _log(n: int) -> _CountingLog:
    log = _CountingLog()
    await log.append_many([_record(i) for i in range(n)])
    log.handed = 0
    return log


def _at(log: fakes.MemoryAuditLog, n: int, *, ago_s: float = 60.0, head: str | None = None):
    at = (datetime.now(UTC) - timedelta(seconds=ago_s)).isoformat(timespec="milliseconds")
    return AuditAnchor(n, head or log.entries_[n - 1].hash, at)


def _rehash_from(log: fakes.MemoryAuditLog, seq: int) -> None:
    """An attacker with the database: one record changed, every hash after it recomputed."""
    prev = log.entries_[seq - 2].hash if seq > 1 else "0" * 64
    for i in range(seq - 1, len(log.entries_)):
        entry = log.entries_[i]
        record = entry.record
        if entry.seq == seq:
            record = dataclasses.replace(record, outcome="denied")
        log.entries_[i] = AuditEntry(entry.seq, record, prev, entry_hash(prev, entry.seq, record))
        prev = log.entries_[i].hash


async def test_unreadable_anchors_fail_verification_by_place_yet_hide_no_rewrite():
    log = await _log(30)
    store = fakes.MemoryAuditAnchorStore()
    store.anchors.append(_at(log, 20))
    store.unreadable.append("object version 7 listed")
    report = await verify_audit_log(log, store)
    assert not report.ok and report.unreadable_count == 1
    assert report.unreadable_anchors == ("object version 7 listed",)
    assert "object version 7 listed" in report.reason and report.anchors_checked == 1
    _rehash_from(log, 5)  # the junk beside the anchor must not blind it
    rewritten = await verify_audit_log(log, store)
    assert rewritten.contradicted_anchor == store.anchors[0] and rewritten.unreadable_count == 1
    assert (await verify_audit_log(log, None)).ok


async def test_verification_streams_the_chain_in_pages():
    log = await _log(50)
    store = fakes.MemoryAuditAnchorStore()
    store.anchors += [_at(log, 7), _at(log, 50)]
    report = await verify_audit_log(log, store, page=8)
    assert report.ok and report.entries == 50 and report.anchors_checked == 2
    assert log.largest_page == 8 and log.handed == 50


_STRICT = AnchoringPolicy(every_entries=10, interval_s=900.0, strict=True)
_LOCAL = dataclasses.replace(_STRICT, strict=False)


@pytest.mark.parametrize("case", ["none", "stale"])
async def test_a_chain_whose_anchoring_stopped_fails_outside_local_and_warns_locally(case):
    log = await _log(11)  # more than N = 10 entries
    store = fakes.MemoryAuditAnchorStore()
    if case == "stale":
        store.anchors.append(_at(log, 5, ago_s=1801.0))  # more than twice the 900 s interval
    strict = await verify_audit_log(log, store, policy=_STRICT)
    local = await verify_audit_log(log, store, policy=_LOCAL)
    words = "no audit anchor" if case == "none" else "1801 s old"
    assert not strict.ok and words in strict.reason
    assert local.ok and len(local.warnings) == 1 and words in local.warnings[0]
    # A restored chain is held to the anchors it covers; the age of old ones says nothing.
    assert (await verify_audit_log(log, store, policy=_STRICT, covered_only=True)).ok


@pytest.mark.parametrize("recorded_ago_s", [60.0, 1801.0])
async def test_an_anchor_dated_ahead_of_its_store_is_reported_and_never_counts_as_fresh(
    recorded_ago_s,
):
    log = await _log(11)
    store = fakes.MemoryAuditAnchorStore()
    recorded = datetime.now(UTC) - timedelta(seconds=recorded_ago_s)
    ahead = dataclasses.replace(_at(log, 11, ago_s=-3600.0), recorded_at=recorded)
    store.anchors.append(ahead)  # dated an hour ahead: its own age would be negative
    strict = await verify_audit_log(log, store, policy=_STRICT)
    local = await verify_audit_log(log, store, policy=_LOCAL)
    assert not strict.ok and "dated more than 300 s after their store recorded them" in (
        strict.reason
    )
    assert local.ok and "dated more than 300 s" in local.warnings[0]
    stale = recorded_ago_s > 2 * _STRICT.interval_s  # its age counts from when it was recorded
    assert ("1801 s old" in strict.reason) is stale
    assert len(local.warnings) == (2 if stale else 1)
    # Anchoring renews it once it is old by the store's time, not by its own.
    outcome = await anchor_audit_log(log, store, every=10, refresh_after_s=900.0)
    assert outcome.written is stale


async def test_an_anchor_within_the_skew_of_its_store_passes():
    log = await _log(11)
    store = fakes.MemoryAuditAnchorStore()
    await store.put(_at(log, 11, ago_s=-200.0))  # a writer's clock 200 s ahead: tolerated
    assert (await verify_audit_log(log, store, policy=_STRICT)).ok


async def test_a_recent_anchor_or_a_short_chain_meets_the_policy():
    log = await _log(10)
    assert (await verify_audit_log(log, fakes.MemoryAuditAnchorStore(), policy=_STRICT)).ok
    store = fakes.MemoryAuditAnchorStore()
    store.anchors.append(_at(log, 10, ago_s=1700.0))
    await log.append(_record(99))
    assert (await verify_audit_log(log, store, policy=_STRICT)).ok


async def test_a_restored_chain_counts_the_anchors_beyond_it_instead_of_failing():
    log = await _log(10)
    store = fakes.MemoryAuditAnchorStore()
    store.anchors += [_at(log, 10), AuditAnchor(15, "e" * 64, now())]
    assert not (await verify_audit_log(log, store)).ok  # truncated, read as the live chain
    restored = await verify_audit_log(log, store, covered_only=True)
    assert restored.ok and restored.anchors_beyond == 1 and restored.anchors_checked == 1


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 64, 100])
async def test_the_chain_length_is_found_in_a_logarithmic_number_of_reads(n):
    log = await _log(n)
    assert await chain_length(log) == n
    assert log.handed <= 2 * max(1, n).bit_length() + 1


async def test_anchoring_reads_the_chain_from_its_latest_anchor_on():
    log = await _log(100)
    store = fakes.MemoryAuditAnchorStore()
    store.anchors += [_at(log, 10), _at(log, 90)]
    log.entries_[4] = dataclasses.replace(log.entries_[4], hash="f" * 64)  # below: not read
    outcome = await anchor_audit_log(log, store, every=5)
    assert outcome.written and outcome.anchor.entries == 100
    assert outcome.anchor.head_hash == log.entries_[-1].hash
    assert log.handed < 40  # the probes for the head, then entries 90..100; never all 100
    assert outcome.report.anchors_checked == 1  # the latest anchor, held to entry 90


@pytest.mark.parametrize("tamper", ["after", "at", "rehash", "truncate"])
async def test_anchoring_refuses_a_chain_that_does_not_check_from_the_latest_anchor(tamper):
    log = await _log(40)
    store = fakes.MemoryAuditAnchorStore()
    store.anchors.append(_at(log, 30))
    if tamper == "after":
        log.entries_[34] = dataclasses.replace(log.entries_[34], prev_hash="f" * 64)
    elif tamper == "at":
        record = dataclasses.replace(log.entries_[29].record, outcome="denied")
        log.entries_[29] = dataclasses.replace(log.entries_[29], record=record)
    elif tamper == "rehash":
        _rehash_from(log, 12)
    else:
        del log.entries_[25:]
    outcome = await anchor_audit_log(log, store)
    assert not outcome.report.ok and not outcome.written and len(store.anchors) == 1
    if tamper == "truncate":
        assert "truncated" in outcome.report.reason


async def test_conflicting_anchors_at_one_length_are_reported_with_both_explanations():
    log = await _log(40)
    store = fakes.MemoryAuditAnchorStore()
    genuine = _at(log, 30, ago_s=600.0)
    forged = _at(log, 30, head="e" * 64)  # written by someone holding the writer's role
    store.anchors += [_at(log, 20), genuine, forged]
    report = await verify_audit_log(log, store)
    assert not report.ok and report.conflicting_lengths == (30,)
    assert report.contradicted_anchors == (forged,) and report.contradicted_count == 1
    assert "forged" in report.reason and "rewritten and then anchored again" in report.reason
    refused = await anchor_audit_log(log, store)
    assert not refused.written and refused.report.conflicting_lengths == (30,)


async def test_every_contradicted_anchor_is_counted_and_the_first_ten_listed():
    log = await _log(40)
    store = fakes.MemoryAuditAnchorStore()
    store.anchors += [_at(log, n) for n in range(1, 41)]
    _rehash_from(log, 15)
    report = await verify_audit_log(log, store)
    assert report.contradicted_count == 26 and report.anchors_checked == 40
    assert [a.entries for a in report.contradicted_anchors] == list(range(15, 25))
    assert report.contradicted_anchor.entries == 15 and "26 anchors contradicted" in report.reason


async def test_anchoring_an_unchanged_head_again_only_once_the_latest_is_old():
    log = await _log(5)
    store = fakes.MemoryAuditAnchorStore()
    store.anchors.append(_at(log, 5, ago_s=100.0))
    assert not (await anchor_audit_log(log, store, refresh_after_s=450.0)).written
    store.anchors[0] = _at(log, 5, ago_s=500.0)
    renewed = await anchor_audit_log(log, store, refresh_after_s=450.0)
    assert renewed.written and renewed.anchor.entries == 5 and len(store.anchors) == 2


async def test_anchoring_goes_on_past_an_unreadable_anchor_and_warns():
    log = await _log(5)
    store = fakes.MemoryAuditAnchorStore()
    store.unreadable.append("object version 1 listed")
    outcome = await anchor_audit_log(log, store)
    assert outcome.written and "object version 1 listed" in outcome.report.warnings[0]


async def test_the_anchoring_log_reports_the_latest_anchors_age_including_other_writers():
    ages: list[float] = []
    store = fakes.MemoryAuditAnchorStore()
    log = fakes.MemoryAuditLog()
    anchoring = AnchoringAuditLog(log, store, every=100, on_age=ages.append, refresh_s=0.0)
    await anchoring.append(_record(0))
    await asyncio.sleep(0.01)
    assert ages == []  # nothing anchored yet: no age to tell
    store.anchors.append(_at(log, 1, ago_s=1000.0))  # the scheduled job's anchor
    await anchoring.append(_record(1))
    for _ in range(100):
        if ages:
            break
        await asyncio.sleep(0.01)
    await anchoring.aclose()
    assert ages and 999.0 <= ages[-1] < 1010.0 and anchoring.latest == store.anchors[0]
    writes = AnchoringAuditLog(fakes.MemoryAuditLog(), store, every=1, on_age=ages.append)
    await writes.append(_record(2))
    await writes.aclose()
    assert ages[-1] < 5.0  # its own anchor, just written
