"""Benchmark of cohort what-if runs. The last line printed is one JSON object.

- ``patient_scenarios_per_s``: a cohort run on Ray Data over ``--patients`` stored twins (SQLite,
  encrypted local checkpoints; 2000 particles), 12-week forecasts under 2 scenarios, rebuilt from
  checkpoint + log by the forecast tasks (``--workers`` at a time, default: every CPU). Times are
  the wall time of the whole ``run_cohort`` call (selection to the files written, plot included).
  The run is made three times: ``cohort_seconds_first`` is the first run on the fresh cluster
  (worker processes start and import the code), ``cohort_seconds`` the mean of the other two, the
  steady state a cluster that serves runs is in.
- ``loop_patient_scenarios_per_s``: the same work done by looping ``TwinRuntime.forecast`` patient
  by patient (twins activated from the same checkpoints by the Ray host actors).
- ``speedup_vs_loop``: loop time / cohort time (steady state), measured in the same process (goal:
  >= 5); ``speedup_vs_loop_first_run``: the same against the first run.
- ``--ingest-observations N`` also runs :mod:`bench.ingest` (FHIR NDJSON into PostgreSQL vs COPY).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import ray

from actors.directory import RayTwinDirectory
from actors.runtime import TwinRuntime
from deployments.host_ports import build_host_ports
from deployments.pipelines.cohorts import run_cohort
from deployments.stores import open_event_writer
from twin import ports, schemas
from twin.domain import events as E
from twin.domain.patients import Identifiers
from twin.domain.specs import Scenario, ScenarioDose
from twin.service.host import TwinHost
from twin.settings import TwinSettings

SCENARIOS = [
    Scenario(name="care"),
    Scenario(name="sertraline", doses=[ScenarioDose(day=0, drug="sertraline", mg_per_day=100)]),
]


async def _seed(settings: TwinSettings, n: int) -> list[str]:
    async with open_event_writer(settings) as (_, registry):
        pids = [
            await registry.create(Identifiers(f"B{i}", "1980-01-01", f"B{i}", None), care_team="b")
            for i in range(n)
        ]
    stores = await build_host_ports(settings)
    host = TwinHost(stores, settings=settings.host)
    for i, pid in enumerate(pids):
        weekly = [ports.NewEvent(f"{pid}-{w}", 7.0 * w + 0.3, E.Phq9(max(0, 19 - w - i % 7)))
                  for w in range(4)]  # fmt: skip
        await host.ingest(pid, weekly)
        await host.passivate(pid)
    await stores.aclose()
    return pids


async def _loop(runtime: TwinRuntime, pids: list[str]) -> float:
    started = time.perf_counter()
    for pid in pids:
        await runtime.forecast(pid, SCENARIOS, weeks=12)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--particles", type=int, default=2000)
    parser.add_argument("--ingest-observations", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = TwinSettings(data_dir=Path(tmp), particles=args.particles, hosts=2)
        pids = asyncio.run(_seed(settings, args.patients))
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            run = schemas.CohortRunIn(
                filter=schemas.CohortFilter(limit=args.patients), scenarios=SCENARIOS, weeks=12
            )
            seconds = []
            for k in range(3):
                started = time.perf_counter()
                run_cohort(settings, run, output=str(Path(tmp) / f"out{k}"), workers=args.workers)
                seconds.append(time.perf_counter() - started)
            first_s, cohort_s = seconds[0], (seconds[1] + seconds[2]) / 2
            directory = RayTwinDirectory(settings, build_host_ports, settings.host)
            directory.start()
            loop_s = asyncio.run(_loop(TwinRuntime(directory, retry_for_s=120.0), pids))
        finally:
            ray.shutdown()
    pairs = args.patients * len(SCENARIOS)
    result = {
        "patients": args.patients, "scenarios": len(SCENARIOS), "weeks": 12,
        "particles": args.particles, "workers": args.workers, "cpus": os.cpu_count(),
        "cohort_seconds_first": round(first_s, 2), "cohort_seconds": round(cohort_s, 2),
        "loop_seconds": round(loop_s, 2),
        "patient_scenarios_per_s": round(pairs / cohort_s, 2),
        "loop_patient_scenarios_per_s": round(pairs / loop_s, 2),
        "speedup_vs_loop": round(loop_s / cohort_s, 3),
        "speedup_vs_loop_first_run": round(loop_s / first_s, 3),
    }  # fmt: skip
    if args.ingest_observations:
        import subprocess
        import sys

        out = subprocess.run(
            [sys.executable, "-m", "bench.ingest", "--observations", str(args.ingest_observations),
             "--patients", str(max(1, args.ingest_observations // 100))],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        ingest = json.loads(out.stdout.strip().splitlines()[-1])
        result |= {k: ingest[k] for k in ("ingest_rows_per_s", "raw_copy_rows_per_s",
                                          "ingest_to_copy_ratio")}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
