"""The twin host over the embedded stores (SQLite log, local checkpoints, envelope encryption)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.local import LocalCheckpointStore, LocalKeyProvider
from storage.sealed import EnvelopeSealer
from storage.sqlite import SqliteDatabase, SqliteDataKeyStore, SqliteEventStore
from twin import errors
from twin.domain import events as E
from twin.model.virtual_patient import synthetic_patient
from twin.ports import NewEvent
from twin.service.host import CHECKPOINT_RETRY_S, HostPorts, TwinHost
from twin.settings import HostSettings

SETTINGS = HostSettings(particles=300, checkpoint_every_events=25)


class Stores:
    def __init__(self, db: SqliteDatabase, root: Path) -> None:
        self.db = db
        self.checkpoints = LocalCheckpointStore(root / "checkpoints")
        self.sealer = EnvelopeSealer(LocalKeyProvider(root / "keys"), SqliteDataKeyStore(db))
        self.events = SqliteEventStore(db, self.sealer)

    def host(self, settings: HostSettings = SETTINGS) -> TwinHost:
        return TwinHost(HostPorts(self.events, self.checkpoints, self.sealer), settings=settings)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    db = await SqliteDatabase.open(tmp_path / "novamind.db")
    yield Stores(db, tmp_path)
    await db.close()


def _log(seed: int, days: int = 30) -> list[NewEvent]:
    patient = synthetic_patient(
        seed,
        days=days,
        phq9_every=7,
        ema_per_day=2,
        wearables=True,
        drug_name="sertraline",
        mg_per_day=50.0,
        drug_from_day=7,
    )
    return [NewEvent(f"{seed}-{e.seq}", e.day, e.payload) for e in patient.events]


async def _ingest_in_batches(host: TwinHost, patient: str, log: list[NewEvent], size: int) -> None:
    for start in range(0, len(log), size):
        await host.ingest(patient, log[start : start + size])


async def test_replay_equals_live_from_checkpoint_and_from_the_log_alone(stores, tmp_path):
    log = _log(1)
    live = stores.host()
    await _ingest_in_batches(live, "p1", log, 13)
    live_bytes = (await live.state("p1")).to_bytes()
    assert live.stats.checkpoints_written >= 1

    from_checkpoint = stores.host()
    assert (await from_checkpoint.state("p1")).to_bytes() == live_bytes
    assert from_checkpoint.stats.applied_events < len(log)  # it started from a checkpoint
    assert from_checkpoint.stats.replayed_events == from_checkpoint.stats.applied_events

    await stores.checkpoints.delete_all("p1")
    from_log = stores.host()
    assert (await from_log.state("p1")).to_bytes() == live_bytes
    assert from_log.stats.applied_events == len(log)


async def test_retried_ingest_is_acknowledged_once_and_applied_once(stores):
    host = stores.host()
    batch = _log(2, days=5)
    first = await host.ingest("p2", batch)
    again = await host.ingest("p2", batch)
    assert [r.seq for r in again.appended] == [r.seq for r in first.appended]
    assert all(r.duplicate for r in again.appended)
    assert (await host.state("p2")).last_seq == len(batch)
    assert host.stats.applied_events == len(batch)


async def test_safety_alert_comes_back_with_the_ingest(stores):
    host = stores.host()
    items = (3, 3, 3, 2, 2, 2, 1, 1, 1)
    result = await host.ingest("p3", [NewEvent("q1", 0.5, E.Phq9(18, items))])
    assert [a.rule for a in result.alerts] == ["safety_item9"]


async def test_concurrent_ingests_for_many_twins_share_kernel_calls(stores):
    host = stores.host()
    logs = {f"p{i}": _log(10 + i, days=3) for i in range(8)}
    await asyncio.gather(*(host.ingest(pid, log) for pid, log in logs.items()))
    assert host.stats.flushes < len(logs)
    for pid, log in logs.items():
        alone = stores.host()
        await stores.checkpoints.delete_all(pid)
        assert (await alone.state(pid)).last_seq == len(log)


async def test_an_event_the_twin_cannot_apply_stops_neither_it_nor_its_batch(stores):
    host = stores.host()
    bad = [NewEvent("dose", 0.0, E.DoseTaken("sertraline", True))]
    good = [NewEvent("phq", 0.0, E.Phq9(12))]
    # Both twins join one flush; the dose without a prescription is stored and reported.
    first, second = await asyncio.gather(host.ingest("p-bad", bad), host.ingest("p-ok", good))
    assert "without a prescription" in first.rejected[first.appended[0].seq]
    assert second.rejected == {} and second.last_seq == 1
    after = await host.ingest("p-bad", [NewEvent("phq-2", 1.0, E.Phq9(15))])
    assert after.rejected == {} and after.last_seq == 2
    assert (await host.summary("p-bad")).last_seq == 2
    # A fresh host replays the log to the same place (the rejected event is skipped again).
    assert (await stores.host().summary("p-bad")).last_seq == 2


async def test_a_tampered_checkpoint_is_rejected_and_the_log_rebuilds_the_twin(stores, tmp_path):
    host = stores.host()
    await _ingest_in_batches(host, "p4", _log(4), 40)
    expected = (await host.state("p4")).to_bytes()
    await host.passivate("p4")
    for path in (tmp_path / "checkpoints").rglob("*.ckpt"):
        raw = bytearray(path.read_bytes())
        raw[-3] ^= 0x55
        path.write_bytes(bytes(raw))
    fresh = stores.host()
    assert (await fresh.state("p4")).to_bytes() == expected
    assert fresh.stats.checkpoints_rejected == 1


async def test_a_checkpoint_moved_to_another_patient_is_refused(stores):
    host = stores.host()
    await host.ingest("a", _log(5, days=4))
    await host.ingest("b", _log(6, days=4))
    await host.passivate("a")
    await host.passivate("b")
    stolen = await stores.checkpoints.latest("a")
    await stores.checkpoints.delete_all("b")
    await stores.checkpoints.put(type(stolen)("b", stolen.seq, stolen.model_version, stolen.data))
    fresh = stores.host()
    state_b = await fresh.state("b")
    assert fresh.stats.checkpoints_rejected == 1
    assert state_b.last_seq == await stores.events.last_seq("b")


async def test_checkpoints_and_the_database_hold_no_plaintext(stores, tmp_path):
    host = stores.host()
    await host.ingest("CANARY-MRN-77", [NewEvent("a", 0.2, E.Prescription("citalopram", 20.0))])
    await host.passivate("CANARY-MRN-77")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".ckpt" for p in files)
    for path in files:
        raw = path.read_bytes()
        assert b"citalopram" not in raw, path.name
        assert b"CANARY-MRN-77" not in raw or path.name.startswith("novamind.db"), path.name


async def test_erasure_shreds_the_twin_its_checkpoints_and_its_log(stores):
    host = stores.host()
    await host.ingest("p7", _log(7, days=3))
    await host.passivate("p7")
    await host.erase("p7")
    assert await stores.checkpoints.latest("p7") is None
    with pytest.raises(errors.KeyAccessError):
        await stores.host().state("p7")
    # Another patient in the same micro-batch is unaffected by the erased one.
    other = stores.host()
    await other.ingest("p8", _log(8, days=2))
    results = await asyncio.gather(other.state("p7"), other.state("p8"), return_exceptions=True)
    assert isinstance(results[0], errors.KeyAccessError)
    assert results[1].last_seq > 0


async def test_passivation_on_idle_time_and_on_the_memory_budget(stores):
    now = [0.0]
    settings = HostSettings(particles=200, max_active_twins=3, idle_passivate_s=60.0)
    host = TwinHost(
        HostPorts(stores.events, stores.checkpoints, stores.sealer),
        settings=settings,
        clock=lambda: now[0],
    )
    for i in range(5):
        await host.ingest(f"q{i}", [NewEvent("k", 0.5, E.Phq9(10 + i))])
    assert host.active_count() == 3
    assert host.stats.passivations == 2
    assert (await stores.checkpoints.latest("q0")).seq == 1
    now[0] = 120.0
    await host.state("q4")
    assert await host.passivate_idle() == 2
    assert host.active_count() == 1


async def test_index_and_redis_feed_are_updated_and_hold_no_phi(stores):
    import redis.asyncio as aioredis

    from storage.redis import RedisChangeFeed
    from storage.sqlite import SqliteTwinIndex
    from tests.servers import RedisServer

    server = RedisServer()
    server.start()
    client = aioredis.from_url(server.url, socket_timeout=1.0, socket_connect_timeout=1.0)
    index = SqliteTwinIndex(stores.db)
    ports_ = HostPorts(
        stores.events, stores.checkpoints, stores.sealer, index, RedisChangeFeed(client)
    )
    host = TwinHost(ports_, settings=SETTINGS)
    canary = "CANARY-Jane-Doe"
    items = (3, 3, 3, 3, 3, 2, 1, 0, 1)
    await host.ingest(
        canary,
        [
            NewEvent("c1", 0.5, E.Phq9(19, items)),
            NewEvent("c2", 0.6, E.Prescription("citalopram", 20.0)),
        ],
    )
    entry = await index.get(canary)
    assert entry is not None and entry.last_seq == 2 and "safety_item9" in entry.alert_flags
    assert [e.patient_id for e in await index.search(alert="safety_item9")] == [canary]
    raw = b""
    for key in await client.keys("*"):
        raw += key + (await client.get(key) or b"")
    assert raw  # the summary was cached
    for secret in (b"CANARY", b"Jane", b"citalopram", b"severity"):
        assert secret not in raw

    # Redis down: ingest still succeeds, the index still moves, the failure is counted.
    server.stop()
    result = await host.ingest(canary, [NewEvent("c3", 1.5, E.Gad7(12))])
    assert result.last_seq == 3
    assert (await index.get(canary)).last_seq == 3
    assert host.stats.derived_update_failures == 1
    await client.aclose()


class _SlowCheckpoints:
    """The real local store, with each read taking 20 ms and the concurrency recorded."""

    def __init__(self, inner: LocalCheckpointStore) -> None:
        self.inner = inner
        self.in_flight = 0
        self.peak = 0

    async def put(self, checkpoint):
        return await self.inner.put(checkpoint)

    async def latest(self, patient_id):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            return await self.inner.latest(patient_id)
        finally:
            self.in_flight -= 1

    async def delete_all(self, patient_id):
        return await self.inner.delete_all(patient_id)


async def test_after_a_restart_twins_come_back_lazily_and_rate_limited(stores):
    first = stores.host()
    patients = [f"r{i}" for i in range(12)]
    for pid in patients:
        await first.ingest(pid, [NewEvent("k", 0.5, E.Phq9(11))])
        await first.passivate(pid)
    slow = _SlowCheckpoints(stores.checkpoints)
    settings = HostSettings(particles=200, max_concurrent_activations=3)
    restarted = TwinHost(HostPorts(stores.events, slow, stores.sealer), settings=settings)
    assert restarted.active_count() == 0  # nothing is loaded eagerly
    await asyncio.gather(*(restarted.summary(pid) for pid in patients))
    assert restarted.active_count() == len(patients)
    assert slow.peak == 3  # activations overlap, never more than the limit


def test_audit_verify_command(tmp_path, monkeypatch):
    import asyncio as aio

    from deployments.ops import audit
    from storage.sqlite import SqliteAuditLog, SqliteDatabase
    from twin.domain.audit import AuditRecord

    monkeypatch.setenv("NOVAMIND_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NOVAMIND_DATABASE_URL", raising=False)

    async def write() -> None:
        db = await SqliteDatabase.open(tmp_path / "novamind.db")
        log = SqliteAuditLog(db)
        for i in range(3):
            record = AuditRecord(
                "u",
                "admin",
                "patient.read",
                f"p{i}",
                "allowed",
                "ops",
                "2026-11-29T01:00Z",
                f"r{i}",
            )
            await log.append(record)
        await db.close()

    async def tamper() -> None:
        db = await SqliteDatabase.open(tmp_path / "novamind.db")
        await db.conn.execute("DROP TRIGGER audit_log_no_delete")
        await db.conn.execute("DELETE FROM audit_log WHERE seq = 2")
        await db.close()

    aio.run(write())
    assert audit.main([]) == 0
    aio.run(tamper())
    assert audit.main([]) == 1


async def test_alert_flags_survive_a_restart_from_a_checkpoint(stores):
    # A host's memory of the alerts it raised is gone when it dies; a twin activated from its
    # checkpoint must still report what its earlier events raised, as a rebuild from the log
    # does (found by the chaos suite: flags differed after host kills).
    host = stores.host(HostSettings(particles=200, checkpoint_every_events=1))
    raised = await host.ingest(
        "p",
        [
            NewEvent("a", 1.0, E.Phq9(8)),
            NewEvent("b", 2.0, E.Phq9(16, (2, 2, 2, 2, 2, 2, 2, 1, 1))),
        ],
    )
    await host.ingest("p", [NewEvent("c", 3.0, E.EmaAffect(4))])
    assert {a.rule for a in raised.alerts} == {"reliable_deterioration", "safety_item9"}
    live = await host.summary("p")

    restarted = await stores.host().summary("p")  # activated from the checkpoint after "c"

    assert restarted.alert_flags == live.alert_flags == ["reliable_deterioration", "safety_item9"]


async def test_a_checkpoint_that_fails_for_any_reason_fails_no_ingest_and_waits_its_retry(stores):
    import hashlib

    now = [0.0]
    host = TwinHost(
        HostPorts(stores.events, stores.checkpoints, stores.sealer),
        settings=HostSettings(particles=200, checkpoint_every_events=1),
        clock=lambda: now[0],
    )
    # A file where the patient's checkpoint folder goes: not a passing failure (no 503), and
    # still no ingest fails for it (the checkpoint is derived from the log).
    folder = stores.checkpoints._dir("p1")
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_bytes(b"")
    assert folder.name == hashlib.sha256(b"p1").hexdigest()[:32]
    first = await host.ingest("p1", [NewEvent("a", 0.5, E.Phq9(14))])
    second = await host.ingest("p1", [NewEvent("b", 1.5, E.Phq9(12))])
    assert (first.last_seq, second.last_seq) == (1, 2)
    assert host.stats.checkpoint_failures == 1  # not tried again within the retry window
    live = (await host.state("p1")).to_bytes()
    assert await host.passivate("p1")  # nor at passivation: dropped, rebuilt from the log
    assert host.stats.checkpoint_failures == 1
    assert (await host.state("p1")).to_bytes() == live
    folder.unlink()
    now[0] += CHECKPOINT_RETRY_S
    await host.ingest("p1", [NewEvent("c", 2.5, E.Phq9(10))])
    assert (await stores.checkpoints.latest("p1")).seq == 3


async def test_a_stopping_host_checkpoints_every_twin_ahead_of_its_checkpoint(stores):
    host = stores.host(HostSettings(particles=200, checkpoint_every_events=25))
    await _ingest_in_batches(host, "behind", _log(3, days=10), 10)  # checkpointed every 30
    await host.ingest("fresh", [NewEvent("a", 0.5, E.Phq9(14))])  # never checkpointed
    behind = (await host.state("behind")).last_seq
    periodic = (await stores.checkpoints.latest("behind")).seq
    assert 0 < periodic < behind
    assert await stores.checkpoints.latest("fresh") is None

    assert await host.checkpoint_active() == 2
    assert [(await stores.checkpoints.latest(p)).seq for p in ("behind", "fresh")] == [behind, 1]
    assert await host.checkpoint_active() == 0  # nothing is ahead any more
    # A restarted host replays nothing: both twins come back from their checkpoints.
    restarted = stores.host()
    for patient in ("behind", "fresh"):
        await restarted.summary(patient)
    assert restarted.stats.replayed_events == 0
