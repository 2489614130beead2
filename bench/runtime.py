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

``--host-recovery`` runs only that part. ``--kill-every SECONDS`` runs only sustained writes on
that cluster (``--writers`` clients, default 6, one event at a time with idempotency keys and the
SDK's retries, to ``--twins`` twins spread over both hosts) for ``--duration`` seconds (default
30) without kills (the ``baseline_`` keys), then as long again while a thread SIGKILLs one host's
process every SECONDS, alternating hosts: ``kills``, ``acknowledged`` (``_per_s``),
``longest_gap_ms`` (the longest time with no acknowledgement at all), ``write_ms_p50``/``_p99``
(retries included) and ``failed_writes`` (given up after the SDK's attempts).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

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


def _start_cluster(root: Path, *, retry_for_s: float) -> tuple[Any, list[str], Any]:
    """A local Ray cluster (2 CPUs) with 2 twin hosts on SQLite and local checkpoints.

    Returns:
        The directory (``RayTwinDirectory``), the hosts' names, and a ``TwinRuntime`` that
        retries a call whose host died for ``retry_for_s`` seconds.
    """
    from actors.directory import RayTwinDirectory
    from actors.runtime import TwinRuntime
    from deployments import ray_env
    from deployments.host_ports import build_host_ports
    from twin.settings import TwinSettings

    settings = TwinSettings(data_dir=root / "recovery", hosts=2, ray_namespace="bench-recovery")
    # Ray as the platform starts it (its system config included)
    ray_env.connect(
        settings, num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    directory = RayTwinDirectory(settings, build_host_ports, settings.host)
    names = directory.start()
    return directory, names, TwinRuntime(directory, retry_for_s=retry_for_s)


def _stop_cluster(directory: Any) -> None:
    """Kill the hosts for good (no restart) and stop Ray."""
    import ray

    for handle in directory.hosts().values():
        ray.kill(handle, no_restart=True)
    ray.shutdown()


async def bench_host_recovery(root: Path, twins: int, kills: int) -> dict[str, float]:
    """Kill a host holding ``twins`` active twins ``kills`` times; see the module's docstring."""
    from actors.directory import rendezvous

    directory, names, runtime = _start_cluster(root, retry_for_s=60.0)
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
    _stop_cluster(directory)
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


async def _write_under_kills(
    runtime: Any, pids: list[str], written: list[int], duration_s: float
) -> tuple[list[float], list[float], int]:
    """Clients ingesting one event at a time for ``duration_s`` seconds, each to its own twins.

    Client ``w`` writes round robin to ``pids[w::len(written)]``; ``written[w]`` counts its
    events across calls (its keys and days: a twin's events must come in order).

    Each write keeps its idempotency key across retries and, like the SDK
    (:class:`twin.client.http.RetryPolicy`), retries a 503 (the host still restarting after the
    runtime's own retries, a store or queue unavailable) with exponential backoff and jitter,
    giving up after the policy's attempts.

    Returns:
        The acknowledgements' times (``time.perf_counter()`` seconds), the acknowledged writes'
        latencies in milliseconds (retries included), and the number of writes given up on.
    """
    import random

    from twin import errors
    from twin.client.http import RetryPolicy

    policy = RetryPolicy()
    acked: list[float] = []
    latencies: list[float] = []
    failed = 0
    end = time.perf_counter() + duration_s

    async def writer(w: int) -> None:
        nonlocal failed
        share = pids[w :: len(written)]
        while time.perf_counter() < end:
            pid = share[written[w] % len(share)]
            written[w] += 1
            n = written[w]
            event = ports.NewEvent(f"ke-{w}-{n}", n * 1e-3, E.EmaAffect(4))
            start = time.perf_counter()
            for attempt in range(policy.attempts):
                try:
                    await runtime.ingest(pid, [event])
                except (
                    errors.HostUnavailableError,
                    errors.StorageUnavailableError,
                    errors.OverloadedError,
                ):
                    if attempt + 1 < policy.attempts:
                        wait = min(policy.max_s, policy.initial_s * 2**attempt)
                        await asyncio.sleep(wait + random.uniform(0, policy.initial_s))
                    continue
                now = time.perf_counter()
                acked.append(now)
                latencies.append(1000 * (now - start))
                break
            else:
                failed += 1

    begun = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(len(written))))
    acked.sort()
    acked = [begun, *acked, max(end, acked[-1] if acked else end)]
    return acked, latencies, failed


def _gap_ms(marks: list[float]) -> float:
    """The longest interval between consecutive marks, in milliseconds."""
    return 1000 * max(b - a for a, b in itertools.pairwise(marks))


async def bench_kill_every(
    root: Path, twins: int, kill_every_s: float, duration_s: float, writers: int
) -> dict[str, float]:
    """Sustained writes while a twin host is SIGKILLed every ``kill_every_s`` seconds.

    On the cluster of :func:`bench_host_recovery`, ``twins`` twins spread over both hosts (each
    activated by one write first) take ``writers`` clients' one-event ingests for
    ``duration_s`` seconds without kills (the ``baseline_`` keys), then for ``duration_s``
    seconds while a thread SIGKILLs one host's process every ``kill_every_s`` seconds,
    alternating hosts. ``longest_gap_ms``: the longest time with no acknowledgement at all;
    ``failed_writes``: writes given up on after the SDK's retries.
    """
    import ray

    from actors.directory import rendezvous

    directory, names, runtime = _start_cluster(root, retry_for_s=30.0)  # the service's default
    pids = [f"ke-{i}" for i in range(twins)]
    for chunk in range(0, twins, 100):  # activate them all (one event each)
        await asyncio.gather(
            *(
                runtime.ingest(pid, [ports.NewEvent(f"a-{pid}", 0.0, E.EmaAffect(4))])
                for pid in pids[chunk : chunk + 100]
            )
        )
    spread = {name: sum(rendezvous(pid, names) == name for pid in pids) for name in names}
    assert all(spread.values()), spread

    written = [0] * writers
    base_acked, base_lat, base_failed = await _write_under_kills(runtime, pids, written, duration_s)

    stop = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        handles = directory.hosts()
        k = 0
        while not stop.wait(kill_every_s):
            name = names[k % len(names)]
            k += 1
            try:  # waits for the host if it is still restarting from its previous kill
                host_pid = ray.get(handles[name].pid.remote(), timeout=30)
            except Exception:  # not up within 30 s (or already dead): skip this turn
                continue
            if stop.is_set():
                return
            os.kill(host_pid, signal.SIGKILL)
            kills += 1

    thread = threading.Thread(target=killer, name="host-killer", daemon=True)
    thread.start()
    acked, lat, failed = await _write_under_kills(runtime, pids, written, duration_s)
    stop.set()
    thread.join()
    _stop_cluster(directory)

    def figures(acked: list[float], lat: list[float], failed: int) -> dict[str, float]:
        """One run's figures: acknowledgements, the longest gap, latency, failures."""
        return {
            "acknowledged": float(len(lat)),
            "acknowledged_per_s": len(lat) / duration_s,
            "longest_gap_ms": _gap_ms(acked),
            "write_ms_p50": _pct(lat, 50),
            "write_ms_p99": _pct(lat, 99),
            "failed_writes": float(failed),
        }

    baseline = figures(base_acked, base_lat, base_failed)
    return {
        "kill_every_s": kill_every_s,
        "duration_s": duration_s,
        "writers": float(writers),
        "twins": float(twins),
        "kills": float(kills),
        **figures(acked, lat, failed),
        "baseline_kill_every_s": 0.0,
        **{f"baseline_{name}": value for name, value in baseline.items()},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host-recovery", action="store_true", help="run only host recovery")
    parser.add_argument("--twins", type=int, default=1000, help="active twins on the killed host")
    parser.add_argument("--kills", type=int, default=8, help="timed kills of the host")
    parser.add_argument(
        "--kill-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="run only sustained writes while a host is SIGKILLed every SECONDS (0: off)",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of writes, each run")
    parser.add_argument("--writers", type=int, default=6, help="concurrent one-event writers")
    args = parser.parse_args()
    if not 1 <= args.twins <= 100_000 or not 1 <= args.kills <= 1000:
        parser.error("--twins must be 1..100000 and --kills 1..1000")
    if args.kill_every and not 0.5 <= args.kill_every <= 3600:
        parser.error("--kill-every must be 0.5..3600 seconds")
    if not 1 <= args.duration <= 3600 or not 1 <= args.writers <= 1000:
        parser.error("--duration must be 1..3600 seconds and --writers 1..1000")
    if args.kill_every and args.writers > args.twins:
        parser.error("--writers must not exceed --twins")
    result: dict[str, float] = {}
    if args.kill_every:
        with tempfile.TemporaryDirectory() as tmp:
            result = await bench_kill_every(
                Path(tmp), args.twins, args.kill_every, args.duration, args.writers
            )
        print(json.dumps({k: round(v, 3) for k, v in result.items()}))
        return
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
