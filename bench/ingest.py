"""Bulk-ingest throughput against raw COPY, into PostgreSQL, on the local Ray cluster.

``python -m bench.ingest [--observations N] [--patients P] [--writers W]``: writes a synthetic
FHIR NDJSON file of N Observations (PHQ-9, GAD-7, resting heart rate, sleep, steps) for P
registered patients, runs ``novamind ingest``'s pipeline into PostgreSQL (Debian's server,
started here), and in the same process COPYs the same number of rows into a table of the
event log's shape (the ceiling: no parsing, validation, sealing or ordering). The last line is
one JSON object: ``ingest_rows_per_s``, ``raw_copy_rows_per_s`` and their ratio (the goal:
``ingest_to_copy_ratio >= 0.3`` at 1,000,000 observations).

It also measures, in the same process, what validating one of the file's resources with the FHIR
library costs alone (``fhir_validate_us``: CPU microseconds per ``Observation.model_validate``,
the median of five passes over 2,000 lines) and the ratio that cost alone caps the ingest at on
this machine's CPUs: ``validation_ceiling_ratio = (cpus / fhir_validate_us) / raw_copy_rows_per_s``
(every other step of the pipeline taken as free). The ingest cannot beat that ceiling here.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import ray

from deployments.pipelines.ingest import IngestJob, run_ingest
from deployments.stores import open_event_writer
from tests.servers import PostgresServer
from twin.domain.patients import Identifiers
from twin.settings import TwinSettings

ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
_CODES = [("44261-6", "{score}", 0, 27), ("70274-6", "{score}", 0, 21), ("40443-4", "/min", 45, 95),
          ("93832-4", "h", 4, 10), ("41950-7", "/(24.h)", 500, 15000)]  # fmt: skip


async def _patients(settings: TwinSettings, n: int) -> list[str]:
    async with open_event_writer(settings) as (_, registry):
        return [
            await registry.create(Identifiers(f"B{i}", "1970-01-01", f"B{i}", None), care_team="b")
            for i in range(n)
        ]


def _write_ndjson(path: Path, pids: list[str], n: int) -> None:
    rng = random.Random(11)
    per = -(-n // len(pids))
    with path.open("w") as out:
        written = 0
        for number, pid in enumerate(pids):
            for j in range(per):
                if written == n:
                    return
                code, unit, low, high = _CODES[j % len(_CODES)]
                value = rng.randint(low, high)
                out.write(json.dumps({
                    "resourceType": "Observation", "id": f"o{number}-{j}", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": f"2024-{1 + j // 28 % 12:02d}-{1 + j % 28:02d}T"
                                         f"{j // 336 % 24:02d}:00:00Z",
                    "valueQuantity": {"value": value, "code": unit},
                }) + "\n")  # fmt: skip
                written += 1


def _validate_us(path: Path, lines: int = 2000, passes: int = 5) -> float:
    """CPU microseconds per resource of the FHIR library's validation of ``path``'s first lines."""
    from fhir.resources.R4B.observation import Observation

    with path.open() as source:
        resources = [json.loads(line) for line in itertools.islice(source, lines)]
    Observation.model_validate(resources[0])  # builds the library's validators once
    costs = []
    for _ in range(passes):
        started = time.process_time()
        for resource in resources:
            Observation.model_validate(resource)
        costs.append((time.process_time() - started) / len(resources) * 1e6)
    return statistics.median(costs)


async def _raw_copy(dsn: str, n: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE copy_baseline (patient_id TEXT, seq BIGINT, idempotency_key TEXT, "
            "day DOUBLE PRECISION, payload BYTEA, PRIMARY KEY (patient_id, seq))"
        )
        rows = [(f"p{i // 100}", i % 100 + 1, f"k{i}", i / 100, os.urandom(80)) for i in range(n)]
        started = time.perf_counter()
        await conn.copy_records_to_table("copy_baseline", records=rows)
        return time.perf_counter() - started
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--writers", type=int, default=2)
    args = parser.parse_args()
    # The ceiling is for the CPUs the cluster gets: one count for both.
    cpus = os.cpu_count() or 1
    pg = PostgresServer()
    pg.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            settings = TwinSettings(data_dir=root, database_url=pg.create_database("bench_ingest"))
            pids = asyncio.run(_patients(settings, args.patients))
            source = root / "observations.ndjson"
            _write_ndjson(source, pids, args.observations)
            validate_us = _validate_us(source)
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            try:
                job = IngestJob((str(source),), "fhir-ndjson", ORIGIN, str(root / "job"))
                report = run_ingest(settings, job, writers=args.writers)
            finally:
                ray.shutdown()
            copy_s = asyncio.run(_raw_copy(pg.create_database("bench_copy"), args.observations))
    finally:
        pg.destroy()
    ingest_rate = report.appended / report.seconds
    copy_rate = args.observations / copy_s
    print(json.dumps({
        "observations": args.observations, "patients": args.patients, "writers": args.writers,
        "appended": report.appended, "quarantined": report.quarantined,
        "top_reasons": dict(list(report.reasons.items())[:3]),
        "ingest_seconds": round(report.seconds, 2),
        "ingest_rows_per_s": round(ingest_rate, 1),
        "raw_copy_rows_per_s": round(copy_rate, 1),
        "ingest_to_copy_ratio": round(ingest_rate / copy_rate, 4),
        "cpus": cpus, "fhir_validate_us": round(validate_us, 1),
        "validation_ceiling_ratio": round(cpus / (validate_us * 1e-6) / copy_rate, 4),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
