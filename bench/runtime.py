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
- ``host_recovery_ms_p50``/``_p99``: on a local Ray cluster (2 CPUs, 2 hosts, SQLite and local
  checkpoints), ``--twins`` twins (default 1000) are activated on one host, whose process is then
  SIGKILLed ``--kills`` times; each time, the milliseconds from the kill to the acknowledged
  ingest of one event for one of its twins (Ray's restart of the actor, its ``__init__``, the
  stores' opening, the twin's activation from checkpoint and log, the durable append).
  ``surviving_host_write_ms_p99``: the latency of one-event ingests to a twin on the other host,
  sent every 20 ms during each outage. ``host_recovery_restart_ms_p50`` splits one more set of
  kills: kill to the new process answering (restart and ``__init__``), and from there to the
  acknowledged write (``host_recovery_first_write_ms_p50``: stores and activation);
  ``host_recovery_spawn_ms_p50``: kill to the new process's creation (Ray noticing the death
  and starting a worker).
  ``worker_import_ms``/``kernel_load_ms``: a fresh interpreter importing the host actor's module,
  then loading the compiled kernels (what ``__init__`` does).

``--host-recovery`` runs only that part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
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


def _since_boot_s() -> float:
    """Seconds since boot (``/proc/uptime``): the clock of a process's start time in /proc."""
    with open("/proc/uptime") as uptime:
        return float(uptime.read().split()[0])


def _started_since_boot_s(pid: int) -> float:
    """When process ``pid`` started, in seconds since boot (``/proc/<pid>/stat`` field 22).

    Not psutil's ``create_time``: that adds the boot time, which Linux gives in whole seconds,
    so it can be off by up to a second against ``time.time()``.
    """
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _kernel_load_ms() -> dict[str, float]:
    """A fresh interpreter: importing the host actor's module, then loading its kernels."""
    code = (
        "import time; t0 = time.perf_counter(); import actors.host_actor; "
        "t1 = time.perf_counter(); from twin.model import counter_random, day_kernel; "
        "day_kernel.load(); counter_random.load(); t2 = time.perf_counter(); "
        "print(1000 * (t1 - t0), 1000 * (t2 - t1))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    return {"worker_import_ms": float(out[-2]), "kernel_load_ms": float(out[-1])}


async def bench_host_recovery(root: Path, twins: int, kills: int) -> dict[str, float]:
    """Kill a host holding ``twins`` active twins ``kills`` times; see the module's docstring."""
    import ray

    from actors.directory import RayTwinDirectory, rendezvous
    from actors.runtime import TwinRuntime
    from deployments.bootstrap import build_host_ports
    from twin.settings import TwinSettings

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    settings = TwinSettings(data_dir=root / "recovery", hosts=2, ray_namespace="bench-recovery")
    directory = RayTwinDirectory(settings, build_host_ports, settings.host)
    names = directory.start()
    runtime = TwinRuntime(directory, retry_for_s=60.0)
    victim = names[0]
    on_victim: list[str] = []
    on_survivor: list[str] = []
    i = 0
    while len(on_victim) < twins or not on_survivor:
        pid = f"rec-{i}"
        i += 1
        (on_victim if rendezvous(pid, names) == victim else on_survivor).append(pid)
    on_victim = on_victim[:twins]
    other = on_survivor[0]
    seq = 0

    async def write(pid: str) -> float:
        nonlocal seq
        seq += 1
        start = time.perf_counter()
        await runtime.ingest(pid, [ports.NewEvent(f"w{seq}", seq * 1e-3, E.EmaAffect(4))])
        return 1000 * (time.perf_counter() - start)

    for chunk in range(0, len(on_victim), 100):  # activate them all (one event each)
        await asyncio.gather(*(write(pid) for pid in on_victim[chunk : chunk + 100]))
    await write(other)
    stats = await runtime.hosts()
    assert stats[victim]["active_twins"] == twins, stats[victim]

    recovery: list[float] = []
    surviving: list[float] = []
    restart: list[float] = []
    first_write: list[float] = []
    spawned: list[float] = []
    for k in range(kills + max(2, kills // 2)):
        split = k >= kills  # the last kills time the restart and the first write apart
        target = on_victim[(k * 97) % len(on_victim)]
        host_pid = await runtime.host_pid(target)
        killed, killed_at = time.perf_counter(), _since_boot_s()
        os.kill(host_pid, signal.SIGKILL)
        done = asyncio.Event()

        async def survive(done: asyncio.Event) -> None:
            while not done.is_set():  # 50 writes/s: a load, not a spin that starves the restart
                surviving.append(await write(other))
                await asyncio.sleep(0.02)

        side = asyncio.ensure_future(survive(done))
        if split:
            new_pid = await runtime.host_pid(target)  # answered by the new process, after __init__
            restart.append(1000 * (time.perf_counter() - killed))
            spawned.append(1000 * (_started_since_boot_s(new_pid) - killed_at))
            answered = time.perf_counter()
            await write(target)
            first_write.append(1000 * (time.perf_counter() - answered))
        else:
            await write(target)
            recovery.append(1000 * (time.perf_counter() - killed))
        done.set()
        await side
        await asyncio.sleep(0.5)  # Ray settles (the dead worker reaped) before the next kill
    for handle in directory.hosts().values():
        ray.kill(handle, no_restart=True)
    ray.shutdown()
    return {
        "host_recovery_twins": float(twins),
        "host_recovery_kills": float(kills),
        "host_recovery_ms_p50": _pct(recovery, 50),
        "host_recovery_ms_p99": _pct(recovery, 99),
        "host_recovery_ms_max": max(recovery),
        "host_recovery_restart_ms_p50": _pct(restart, 50),
        "host_recovery_first_write_ms_p50": _pct(first_write, 50),
        "host_recovery_spawn_ms_p50": _pct(spawned, 50),
        "surviving_host_write_ms_p50": _pct(surviving, 50),
        "surviving_host_write_ms_p99": _pct(surviving, 99),
        "surviving_host_writes": float(len(surviving)),
    } | _kernel_load_ms()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host-recovery", action="store_true", help="run only host recovery")
    parser.add_argument("--twins", type=int, default=1000, help="active twins on the killed host")
    parser.add_argument("--kills", type=int, default=8, help="timed kills of the host")
    args = parser.parse_args()
    if not 1 <= args.twins <= 100_000 or not 1 <= args.kills <= 1000:
        parser.error("--twins must be 1..100000 and --kills 1..1000")
    result: dict[str, float] = {}
    if args.host_recovery:
        with tempfile.TemporaryDirectory() as tmp:
            result = await bench_host_recovery(Path(tmp), args.twins, args.kills)
        print(json.dumps({k: round(v, 3) for k, v in result.items()}))
        return
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
        result |= await bench_host_recovery(root, args.twins, args.kills)
    print(json.dumps({k: round(v, 3) for k, v in result.items()}))


if __name__ == "__main__":
    asyncio.run(main())
