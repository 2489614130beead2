"""Chaos run: concurrent clinical clients against a multi-node cluster while faults are injected.

``python -m bench.chaos`` starts the whole platform on this machine (a Ray head and a worker
node, PostgreSQL, Redis, moto's S3 and KMS, the Serve app with two replicas), runs clients over
HTTP for the length of the fault schedule, checks every acknowledged write against the stores,
and prints one JSON object as its last line.

The default run injects a fixed schedule of every fault kind: 20 process kills (twin hosts,
Serve replicas, the job runner, bulk ingest writers, the HAProxy ingress, a whole worker node),
3 PostgreSQL crashes with commits in flight, a Redis restart, an S3/KMS outage, and latency,
resets and a black hole on the network to PostgreSQL and to Redis, while bulk ingest jobs,
cohort runs and erasures run beside the clinical clients. A full disk is a fault of the embedded
stores, not of this cluster's: the run ends with the disk-full scenario
(``tests/integration/test_disk_full.py``, a tmpfs filled under the embedded service) and reports
its outcome. ``--soak-minutes N`` instead draws a fault kind every ``--every-s`` seconds
(default 30) for N minutes: the release gate is a 30-minute soak (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tests.chaos.cluster import ChaosCluster, running_cluster
from tests.chaos.faults import KINDS, Injected, Injector
from tests.chaos.scenario import under_faults
from tests.chaos.workload import Ack, Ledger

#: The default schedule: every fault kind, 20 kills and 3 PostgreSQL crash cycles.
DEFAULT_SCHEDULE = (
    ["host_kill"] * 5 + ["replica_kill"] * 5 + ["runner_kill"] * 3 + ["node_kill"] * 3
    + ["haproxy_kill"] * 2 + ["writer_kill"] * 2 + ["postgres_crash"] * 3
    + ["redis_restart", "s3_kms_outage", "postgres_latency", "postgres_reset",
       "postgres_blackhole", "redis_latency", "redis_reset", "redis_blackhole"]
)  # fmt: skip
KILLS = ("host_kill", "replica_kill", "runner_kill", "node_kill", "haproxy_kill", "writer_kill")


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None}
    array = np.asarray(values) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(array, 50)), 1),
        "p99_ms": round(float(np.percentile(array, 99)), 1),
    }


def _latencies(ledger: Ledger, faults: list[Injected]) -> dict[str, Any]:
    """Latency of acknowledged calls that overlapped a fault, and of the others."""

    def overlaps(sent: float, seconds: float) -> bool:
        return any(f.at <= sent + seconds and sent <= f.until for f in faults)

    inside = [s for t, s in ledger.latencies if overlaps(t, s)]
    outside = [s for t, s in ledger.latencies if not overlaps(t, s)]
    return {"outside_faults": _percentiles(outside), "during_faults": _percentiles(inside)}


def _recovery(ledger: Ledger, faults: list[Injected]) -> dict[str, float | None]:
    """Per fault kind, the longest any client waited for an acknowledgement across a fault.

    For each fault and client: from the fault's start to the client's first acknowledgement
    after it; the worst client and fault of each kind is reported, seconds.
    """
    by_client: dict[int, list[Ack]] = {}
    for ack in ledger.acked.values():
        by_client.setdefault(ack.client, []).append(ack)
    done = {c: sorted(a.done for a in acks) for c, acks in by_client.items()}
    worst: dict[str, float | None] = {}
    for fault in faults:
        waits = [
            next((t for t in times if t >= fault.at), math.inf) - fault.at
            for times in done.values()
        ]
        took = max(waits, default=math.inf)
        value = None if math.isinf(took) else round(took, 2)
        previous = worst.get(fault.kind)
        if fault.kind not in worst or (value is not None and (previous or 0) < value):
            worst[fault.kind] = value
    return worst


async def _run(
    cluster: ChaosCluster, schedule: list[str], *, every_s: float, patients: int, seed: int
) -> dict[str, Any]:
    injector = Injector(cluster, seed=seed)

    async def faults() -> None:
        for kind in schedule:
            await asyncio.sleep(every_s)
            await injector.inject(kind)

    # A quiet minute after the last fault: the clients go on against a healed cluster.
    run = await under_faults(cluster, faults, patients=patients, quiet_s=60.0, jobs=True)
    ledger, verdict = run.ledger, run.verdict
    assert run.job_verdict is not None
    by_kind = Counter(f.kind for f in injector.injected)
    return {
        "benchmark": "chaos",
        "seconds": round(run.seconds, 1),
        "faults": dict(sorted(by_kind.items())),
        "kills": sum(by_kind[k] for k in KILLS),
        "postgres_crash_cycles": by_kind["postgres_crash"],
        **verdict.as_dict(),
        "jobs": run.job_verdict.as_dict(),
        "job_clients": dict(run.jobs.statuses),
        "ok": run.ok,
        "requests": dict(ledger.statuses),
        "latency": _latencies(ledger, injector.injected),
        "recovery_s": _recovery(ledger, injector.injected),
    }


def _disk_full() -> dict[str, Any]:
    """Run the disk-full scenario of the embedded stores; its tests' outcome."""
    test = Path(__file__).resolve().parent.parent / "tests" / "integration" / "test_disk_full.py"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(test), "-q", "-p", "no:cacheprovider"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    return {"ok": done.returncode == 0 and "skipped" not in summary, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak-minutes", type=float, default=0.0)
    parser.add_argument("--every-s", type=float, default=None,
                        help="seconds between faults (default 4; 30 in a soak)")  # fmt: skip
    parser.add_argument("--patients", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.soak_minutes > 0:
        every = args.every_s or 30.0
        draws = random.Random(args.seed)
        schedule = [draws.choice(KINDS) for _ in range(int(args.soak_minutes * 60 / every))]
    else:
        every = args.every_s or 4.0
        schedule = list(DEFAULT_SCHEDULE)
        random.Random(args.seed).shuffle(schedule)
    with (
        tempfile.TemporaryDirectory(prefix="novamind-chaos-") as root,
        running_cluster(Path(root)) as cluster,
    ):
        result = asyncio.run(
            _run(cluster, schedule, every_s=every, patients=args.patients, seed=args.seed)
        )
    result["disk_full"] = _disk_full()
    result["ok"] = result["ok"] and result["disk_full"]["ok"]
    result["soak_minutes"] = args.soak_minutes
    print(json.dumps(result))
    if not result["ok"]:
        sys.exit(1)  # the release gate: a count that must be zero is not


if __name__ == "__main__":
    main()
