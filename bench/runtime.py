"""Benchmark of the durable twin runtime. The last line printed is one JSON object.

- ``activation_ms_p50``/``_p99``: a passive twin (2000 particles) brought back from its newest
  checkpoint, local folder and S3 (moto's server over HTTP), opened with its data key, plus the
  (empty) log replay; against ``ray_actor_create_ms_p50``, one new Ray actor per patient.
- ``active_twins_per_gib``: RSS growth per active twin.
- ``durable_ingest_events_per_s``: batches of 100 appended to PostgreSQL through a TwinHost by
  4 concurrent clients (``wait=False``: acknowledged after the durable commit, the twins catch
  up in the background), against ``raw_copy_events_per_s``, the same number of rows written
  with asyncpg's COPY in batches of 100.
- ``host_overhead_ratio``: assimilation events/s through a TwinHost (in-memory stores) divided by
  calling the batched kernel directly on the same events.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from storage.local import LocalCheckpointStore, LocalKeyProvider
from storage.postgres import PostgresDatabase, PostgresDataKeyStore, PostgresEventStore
from storage.s3 import S3CheckpointStore
from storage.sealed import EnvelopeSealer
from storage.sqlite import SqliteDatabase, SqliteDataKeyStore, SqliteEventStore
from tests.servers import MotoServer, PostgresServer
from twin import ports
from twin.assimilation import kernel
from twin.assimilation.state import new_twin
from twin.domain import events as E
from twin.model.virtual_patient import synthetic_patient
from twin.service.host import HostPorts, TwinHost
from twin.settings import HostSettings
from twin.testing import fakes


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def bench_activation(root: Path, checkpoints: ports.CheckpointStore, n: int) -> list[float]:
    db = await SqliteDatabase.open(root / f"{uuid.uuid4().hex}.db")
    keys = LocalKeyProvider(root / "keys")

    def stores() -> HostPorts:
        sealer = EnvelopeSealer(keys, SqliteDataKeyStore(db))  # a cold data-key cache
        return HostPorts(SqliteEventStore(db, sealer), checkpoints, sealer)

    writer = TwinHost(stores(), settings=HostSettings(particles=2000))
    patients = [f"act-{i}" for i in range(n)]
    for pid in patients:
        await writer.ingest(
            pid, [ports.NewEvent(f"{pid}-{d}", d + 0.5, E.Phq9(12)) for d in range(5)]
        )
        await writer.passivate(pid)
    reader = TwinHost(stores(), settings=HostSettings(particles=2000))
    times = []
    for pid in patients:
        start = time.perf_counter()
        await reader.summary(pid)
        times.append(1000 * (time.perf_counter() - start))
    await db.close()
    return times


def bench_ray_actor_create(n: int) -> list[float]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)

    @ray.remote(num_cpus=0)
    class PatientActor:
        def ping(self) -> int:
            return 1

    PatientActor.remote()  # warm the worker pool path once
    times = []
    actors = []
    for _ in range(n):
        start = time.perf_counter()
        actor = PatientActor.remote()
        ray.get(actor.ping.remote())
        times.append(1000 * (time.perf_counter() - start))
        actors.append(actor)
    ray.shutdown()
    return times


async def bench_memory(n: int) -> float:
    host = TwinHost(
        HostPorts(fakes.MemoryEventStore(), fakes.MemoryCheckpointStore(), fakes.PlainSealer()),
        settings=HostSettings(particles=2000),
    )
    await host.summary("warm")
    before = _rss_bytes()
    for i in range(n):
        await host.summary(f"mem-{i}")
    grown = _rss_bytes() - before
    return n / (grown / 2**30)


async def bench_ingest(server: PostgresServer, root: Path, batches: int) -> dict[str, float]:
    dsn = server.create_database(f"bench_{uuid.uuid4().hex[:8]}")
    db = await PostgresDatabase.open(dsn)
    sealer = EnvelopeSealer(LocalKeyProvider(root / "pgkeys"), PostgresDataKeyStore(db))
    host = TwinHost(
        HostPorts(PostgresEventStore(db, sealer), fakes.MemoryCheckpointStore(), sealer),
        settings=HostSettings(particles=200),
    )
    rows = 0
    start = time.perf_counter()
    for b in range(batches):
        pid = f"ing-{b % 10}"
        batch = [
            ports.NewEvent(f"{b}-{i}", b + i / 100, E.EmaAffect(1 + i % 7)) for i in range(100)
        ]
        await host.ingest(pid, batch, wait=False)
        rows += len(batch)
    durable = rows / (time.perf_counter() - start)
    async with db.pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE raw_events (patient_id text, seq bigint, idempotency_key text, "
            "day double precision, payload bytea)"
        )
        payload = b"x" * 60
        records = [(f"raw-{i % 10}", i, f"k{i}", float(i), payload) for i in range(rows)]
        start = time.perf_counter()
        for chunk in range(0, rows, 100):
            await conn.copy_records_to_table("raw_events", records=records[chunk : chunk + 100])
        raw = rows / (time.perf_counter() - start)
    await asyncio.sleep(0.5)  # let background applies finish before closing
    await db.close()
    return {"durable_ingest_events_per_s": durable, "raw_copy_events_per_s": raw}


async def bench_host_overhead(twins: int, days: int) -> float:
    logs = {
        f"h{i}": synthetic_patient(i, days=days - 1, phq9_every=1, ema_per_day=5).events
        for i in range(twins)
    }
    per_day = {
        pid: [[e for e in log if int(e.day) == d] for d in range(days)] for pid, log in logs.items()
    }
    total = sum(len(log) for log in logs.values())
    states = [new_twin(pid) for pid in logs]
    start = time.perf_counter()
    for d in range(days):
        kernel.apply_events(states, [per_day[pid][d] for pid in logs])
    direct = total / (time.perf_counter() - start)
    host = TwinHost(
        HostPorts(fakes.MemoryEventStore(), fakes.MemoryCheckpointStore(), fakes.PlainSealer()),
        settings=HostSettings(particles=2000, checkpoint_every_events=10_000),
    )
    start = time.perf_counter()
    for d in range(days):
        await asyncio.gather(
            *(
                host.ingest(
                    pid, [ports.NewEvent(f"{e.seq}", e.day, e.payload) for e in per_day[pid][d]]
                )
                for pid in logs
            )
        )
    hosted = total / (time.perf_counter() - start)
    return hosted / direct


async def main() -> None:
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        local = await bench_activation(root, LocalCheckpointStore(root / "ckpt"), 40)
        moto = MotoServer()
        moto.start()
        s3, kms = moto.client("s3"), moto.client("kms")
        s3.create_bucket(Bucket="bench")  # type: ignore[attr-defined]
        kms_key = kms.create_key()["KeyMetadata"]["KeyId"]  # type: ignore[attr-defined]
        remote = await bench_activation(
            root, S3CheckpointStore(s3, "bench", kms_key_id=kms_key), 40
        )
        moto.stop()
        result |= {
            "activation_ms_p50": _pct(local, 50),
            "activation_ms_p99": _pct(local, 99),
            "activation_s3_ms_p50": _pct(remote, 50),
            "activation_s3_ms_p99": _pct(remote, 99),
        }
        actors = bench_ray_actor_create(10)
        result["ray_actor_create_ms_p50"] = statistics.median(actors)
        result["activation_speedup_vs_actor"] = (
            result["ray_actor_create_ms_p50"] / result["activation_ms_p99"]
        )
        result["active_twins_per_gib"] = await bench_memory(300)
        server = PostgresServer()
        server.start()
        try:
            result |= await bench_ingest(server, root, 80)
        finally:
            server.destroy()
        result["durable_vs_raw_copy"] = (
            result["durable_ingest_events_per_s"] / result["raw_copy_events_per_s"]
        )
        result["host_overhead_ratio"] = await bench_host_overhead(32, 2)
    print(json.dumps({k: round(v, 3) for k, v in result.items()}))


if __name__ == "__main__":
    asyncio.run(main())
