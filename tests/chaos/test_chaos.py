"""Faults injected into the whole platform under concurrent clients; then the set-based check.

Each test runs clinical clients over HTTP (several per patient, the SDK's retries and
idempotency keys), bulk ingest jobs, cohort runs and erasures while faults of some kinds are
injected, then checks that every acknowledged event is stored exactly once with its payload, in
acknowledgement order, that each twin equals its rebuild from the log, that the audit chain
verifies, that every acknowledged job finished once with all of its data, and that no erased
patient is readable.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from deployments.host_ports import build_host_ports
from tests.chaos import jobs as J
from tests.chaos.checker import final_status, ingest_discrepancies
from tests.chaos.cluster import ChaosCluster
from tests.chaos.faults import KINDS, Injector
from tests.chaos.scenario import Run, under_faults
from tests.chaos.workload import sdk

pytestmark = [pytest.mark.ray, pytest.mark.chaos]

#: Every kind of fault, in three groups (one test each): processes, PostgreSQL, the rest.
GROUPS = {
    "processes": ("host_kill", "replica_kill", "haproxy_kill", "writer_kill", "runner_kill"),
    "postgres": ("postgres_crash", "postgres_reset", "postgres_blackhole", "postgres_latency"),
    "node-and-servers": ("node_kill", "redis_restart", "redis_reset", "redis_blackhole",
                         "redis_latency", "s3_kms_outage"),
}  # fmt: skip


def test_the_groups_cover_every_kind_of_fault():
    grouped = [kind for kinds in GROUPS.values() for kind in kinds]
    assert sorted(grouped) == sorted(KINDS)


async def _under_faults(
    cluster: ChaosCluster, kinds: tuple[str, ...], seed: int
) -> tuple[Injector, Run]:
    injector = Injector(cluster, seed=seed, outage_s=2.0)

    async def inject() -> None:
        for kind in kinds:  # one of each, a few seconds apart
            await injector.inject(kind)
            await asyncio.sleep(6.0)

    run = await under_faults(cluster, inject, quiet_s=5.0, jobs=True)  # then a few healed
    return injector, run


@pytest.mark.parametrize("group", list(GROUPS))
async def test_nothing_acknowledged_is_lost_or_doubled(chaos_cluster, group):
    kinds = GROUPS[group]
    injector, run = await _under_faults(chaos_cluster, kinds, seed=len(kinds))

    assert [i.kind for i in injector.injected] == list(kinds), injector.injected
    assert run.verdict.acknowledged > 50, run.ledger.statuses
    assert run.verdict.ok, run.verdict
    # The service recovered: clients were acknowledged after the last fault was undone.
    healed = injector.injected[-1].until
    assert any(ack.done > healed for ack in run.ledger.acked.values()), run.ledger.statuses
    jobs = run.job_verdict
    assert jobs is not None and jobs.ok, jobs
    # Jobs ran under the faults and succeeded (a job the runner gave up on fails the test).
    assert jobs.by_status.get("ingest succeeded", 0) >= 1, (jobs, run.jobs.statuses)
    assert jobs.by_status.get("cohort succeeded", 0) >= 1, (jobs, run.jobs.statuses)
    assert not jobs.failures, jobs


async def test_a_job_whose_runner_is_killed_mid_job_finishes_exactly_once(chaos_cluster):
    team = f"team-{uuid.uuid4().hex[:6]}"
    admin = sdk(chaos_cluster.http_url, chaos_cluster.token("admin"))
    try:
        patients = await J.job_patients(admin, J.JOB_PATIENTS, team)
        inbox = chaos_cluster.settings.data_dir / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        source = inbox / f"{uuid.uuid4().hex}.ndjson"
        source.write_text(J.observations_ndjson(patients))
        job = await admin.submit_ingest_job([str(source)], format="fhir-ndjson")
        deadline = time.monotonic() + 60
        while (await admin.ingest_job(job.job_id)).status != "running":
            assert time.monotonic() < deadline, "the job never started"
            await asyncio.sleep(0.1)
        assert await Injector(chaos_cluster).inject("runner_kill") is not None

        final = await final_status(admin.ingest_job, job.job_id, 180.0)
    finally:
        await admin.aclose()
    assert final.status == "succeeded", final
    assert final.attempts == 2  # interrupted once, run again from the start
    assert final.report is not None and final.report.quarantined == 0
    stores = await build_host_ports(chaos_cluster.settings)
    try:
        assert await ingest_discrepancies(stores, patients) == (0, 0)  # each event once
    finally:
        await stores.aclose()
