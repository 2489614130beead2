"""Chaos run: concurrent clinical clients against a multi-node cluster while faults are injected.

``python -m bench.chaos`` starts the whole platform on this machine (a Ray head and a worker
node, PostgreSQL, Redis, moto's S3 and KMS, the Serve app with two replicas), runs clients over
HTTP for the length of the fault schedule, checks every acknowledged write against the stores,
and prints one JSON object as its last line.

The default run injects a fixed schedule: 20 process kills (twin hosts, Serve replicas, the job
runner, a whole worker node), 3 PostgreSQL crashes with commits in flight, a Redis restart and an
S3/KMS outage. ``--soak-minutes N`` instead draws a fault kind every ``--every-s`` seconds
(default 30) for N minutes: the release gate is a 30-minute soak (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tests.chaos.checker import check
from tests.chaos.cluster import ChaosCluster, running_cluster
from tests.chaos.faults import KINDS, Injected, Injector
from tests.chaos.workload import Ledger, patient_client, register_patients, sdk

#: The default schedule: every fault kind, at least 20 kills and 3 PostgreSQL crash cycles.
DEFAULT_SCHEDULE = (
    ["host_kill"] * 6 + ["replica_kill"] * 6 + ["runner_kill"] * 4 + ["node_kill"] * 4
    + ["postgres_crash"] * 3 + ["redis_restart", "s3_kms_outage"]
)  # fmt: skip
KILLS = ("host_kill", "replica_kill", "runner_kill", "node_kill")


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None}
    array = np.asarray(values) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(array, 50)), 1),
        "p99_ms": round(float(np.percentile(array, 99)), 1),
    }


def _latencies(ledger: Ledger, faults: list[Injected]) -> dict[str, Any]:
    def during(t: float) -> bool:
        return any(f.at <= t <= f.until + 1.0 for f in faults)

    inside = [s for t, s in ledger.latencies if during(t)]
    outside = [s for t, s in ledger.latencies if not during(t)]
    return {"outside_faults": _percentiles(outside), "during_faults": _percentiles(inside)}


def _recovery(ledger: Ledger, faults: list[Injected]) -> dict[str, float | None]:
    """Per kind, the slowest time from a fault's start to the first acknowledgement after it."""
    done = sorted(t + s for t, s in ledger.latencies)
    worst: dict[str, float | None] = {}
    for fault in faults:
        after = next((t for t in done if t >= fault.until), None)
        took = None if after is None else round(after - fault.at, 2)
        previous = worst.get(fault.kind)
        if previous is None or (took is not None and took > previous):
            worst[fault.kind] = took
    return worst


async def _run(
    cluster: ChaosCluster, schedule: list[str], *, every_s: float, patients: int, seed: int
) -> dict[str, Any]:
    team = f"team-{uuid.uuid4().hex[:6]}"
    admin = sdk(cluster.http_url, cluster.token("admin"))
    clinician = sdk(cluster.http_url, cluster.token("clinician", team=(team,)))
    try:
        ids = await register_patients(admin, patients, team)
        ledger = Ledger()
        injector = Injector(cluster, seed=seed)
        until = time.monotonic() + every_s * (len(schedule) + 1) + 60.0

        async def faults() -> None:
            for kind in schedule:
                await asyncio.sleep(every_s)
                await injector.inject(kind)

        async def clients() -> None:
            await asyncio.gather(*[
                patient_client(clinician, p, c, ledger, until=until, max_events=100_000)
                for c, p in enumerate(ids * 2)
            ])  # fmt: skip

        started = time.monotonic()
        fault_task = asyncio.ensure_future(faults())
        client_task = asyncio.ensure_future(clients())
        await fault_task
        # The clients go on for a quiet minute after the last fault, against a healed cluster.
        await client_task
        seconds = time.monotonic() - started
        verdict = await check(cluster.settings, ledger, ids, clinician)
    finally:
        await admin.aclose()
        await clinician.aclose()
    by_kind = Counter(f.kind for f in injector.injected)
    return {
        "benchmark": "chaos",
        "seconds": round(seconds, 1),
        "faults": dict(sorted(by_kind.items())),
        "kills": sum(by_kind[k] for k in KILLS),
        "postgres_crash_cycles": by_kind["postgres_crash"],
        **verdict.as_dict(),
        "requests": dict(ledger.statuses),
        "latency": _latencies(ledger, injector.injected),
        "recovery_s": _recovery(ledger, injector.injected),
    }


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
    result["soak_minutes"] = args.soak_minutes
    print(json.dumps(result))


if __name__ == "__main__":
    main()
