"""Cohort what-if runs on Ray Data against real stores (SQLite and local checkpoints here).

Stored twins are rebuilt from checkpoint + log and give exactly the clinical forecast; results
carry pseudonyms only; any number of workers gives identical files; a run queued the way the API
queues it is picked up by the job runner.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from deployments.host_ports import build_host_ports
from deployments.pipelines.cohorts import _shares, run_cohort
from deployments.pipelines.job_runner import RUNNER_NAME, ensure_runner
from deployments.stores import open_cohort_stores, open_documents, open_event_writer
from twin import errors, ports, schemas
from twin.domain import events as E
from twin.domain.patients import Identifiers
from twin.domain.specs import Scenario, ScenarioDose
from twin.service import jobs
from twin.service.host import TwinHost
from twin.settings import TwinSettings

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

CARE = Scenario(name="care")
DRUG = Scenario(
    name="escitalopram", doses=[ScenarioDose(day=0, drug="escitalopram", mg_per_day=10)]
)
SYNTHETIC = {"n_patients": 70, "days": 7, "seed": 11, "screen_phq9_min": 10}


async def _stored_twins(settings: TwinSettings, n: int) -> dict[str, str]:
    """``n`` patients with a few weeks of PHQ-9 (checkpointed for half); pseudonym -> pid."""
    async with open_event_writer(settings) as (_, registry):
        pids = [
            await registry.create(Identifiers(f"N{i}", "1970-01-01", f"M{i}", None), care_team="t")
            for i in range(n)
        ]
    stores = await build_host_ports(settings)
    host = TwinHost(stores, settings=settings.host)
    for i, pid in enumerate(pids):
        batch = [
            ports.NewEvent(f"{pid}-{w}", 7.0 * w + 0.3, E.Phq9(20 - w - i % 5)) for w in range(4)
        ]
        await host.ingest(pid, batch)
        if i % 2:
            await host.passivate(pid)  # checkpoint: the run starts from it
        await host.ingest(pid, [ports.NewEvent(f"{pid}-x", 30.0, E.Gad7(9))])
    for pid in pids:
        await host.passivate(pid)
    await stores.aclose()
    async with open_cohort_stores(settings) as cohort:
        return {cohort.deidentifier.pseudonym(pid): pid for pid in pids}


async def _compare(settings: TwinSettings, pid: str) -> tuple[list, list]:
    stores = await build_host_ports(settings)
    try:
        host = TwinHost(stores, settings=settings.host)
        return await host.compare(pid, [CARE, DRUG], weeks=8)
    finally:
        await stores.aclose()


def _run(settings: TwinSettings, **selection: object) -> schemas.CohortRunIn:
    return schemas.CohortRunIn.model_validate(
        {"scenarios": [CARE.model_dump(), DRUG.model_dump()], "weeks": 8, **selection}
    )


def test_stored_twins_give_the_clinical_forecast_under_pseudonyms(ray_cluster, settings, tmp_path):
    mapping = asyncio.run(_stored_twins(settings, 5))
    chosen = sorted(mapping)[:3]
    unknown = "rs_" + "0" * 24
    final = run_cohort(
        settings, _run(settings, pseudonyms=[*chosen, unknown]), output=str(tmp_path / "out")
    )
    assert final.status == "succeeded" and final.patients_done == 3
    assert final.skipped == {"pseudonym: no such twin": 1}
    rows = pq.read_table(tmp_path / "out" / "patients.parquet").to_pylist()
    assert [r["pseudonym"] for r in rows] == [p for p in chosen for _ in range(2)]
    text = (tmp_path / "out" / "patients.parquet").read_bytes()
    assert not any(pid.encode() in text for pid in mapping.values())
    # The same numbers as the clinician's comparison of that twin (same posterior and seed).
    forecasts, contrasts = asyncio.run(_compare(settings, mapping[chosen[0]]))
    assert rows[0]["remission_p"] == forecasts[0].remission[8].value
    assert rows[1]["response_p"] == forecasts[1].response[8].value
    assert rows[1]["diff_mean"] == pytest.approx(contrasts[0].mean_difference[-1])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["patients_done"] == 3 and "pseudonyms" not in report["run"]
    assert (tmp_path / "out" / "report.png").read_bytes()[:4] == b"\x89PNG"
    # A filter selection: every indexed twin.
    everyone = run_cohort(settings, _run(settings, filter={"min_severity": 0.0}))
    assert everyone.patients_done == 5 and everyone.result_pages == 1


def test_any_number_of_workers_gives_identical_files(ray_cluster, settings, tmp_path):
    run = _run(settings, synthetic=SYNTHETIC, particles=100, seed=4)
    one = run_cohort(settings, run, output=str(tmp_path / "one"), workers=1)
    two = run_cohort(settings, run, output=str(tmp_path / "two"), workers=2)
    assert one.patients_done == two.patients_done == 70
    for name in ("patients.parquet", "aggregate.parquet"):
        assert pq.read_table(tmp_path / "one" / name).equals(pq.read_table(tmp_path / "two" / name))
    assert one.aggregate == two.aggregate
    with pytest.raises(errors.InvalidInputError, match="matches no twin"):
        run_cohort(settings, _run(settings, filter={"min_severity": 27.0}))


@pytest.mark.parametrize(
    ("twins", "workers", "tasks"),
    [(5, 2, 1), (40, 2, 2), (200, 2, 2), (1000, 2, 8), (1000, 3, 9), (40, 8, 3)],
)
def test_stored_twins_are_split_into_a_few_equal_tasks_per_worker(twins, workers, tasks):
    """Whole rounds of one task per worker (never more tasks than batches of 16 twins)."""
    assert _shares(twins, workers) == tasks


async def _queue(settings: TwinSettings, run: schemas.CohortRunIn) -> str:
    async with open_documents(settings) as documents:
        return (await jobs.enqueue_cohort(documents, run)).job_id


async def _status(settings: TwinSettings, job_id: str) -> schemas.CohortRunOut:
    async with open_documents(settings) as documents:
        found = await documents.get(jobs.COHORT.collection, job_id)
        assert found is not None
        return jobs.COHORT.load(found)


def test_the_job_runner_runs_queued_runs(ray_cluster, settings, settle):
    job_id = asyncio.run(
        _queue(settings, _run(settings, synthetic={**SYNTHETIC, "n_patients": 5}, particles=50))
    )
    runner = ensure_runner(settings, workers=1)
    try:
        status = settle(lambda: asyncio.run(_status(settings, job_id)), 120)
        assert status.status == "succeeded" and status.patients_done == 5
        assert (Path(settings.data_dir) / "cohorts" / job_id / "patients.parquet").exists()
        assert ensure_runner(settings) is not None  # a second ensure finds the same actor
        assert ray.get(ray.get_actor(RUNNER_NAME, namespace=settings.ray_namespace).alive.remote())
    finally:
        ray.kill(runner, no_restart=True)
