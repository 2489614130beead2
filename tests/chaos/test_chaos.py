"""Faults injected into the whole platform under concurrent clients; then the set-based check.

Each test runs clinical clients over HTTP (several per patient, the SDK's retries and
idempotency keys) while one kind of fault is injected, then checks that every acknowledged event
is stored exactly once with its payload, in acknowledgement order, that each twin equals its
rebuild from the log, and that the audit chain verifies.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import pytest

from tests.chaos.checker import check
from tests.chaos.cluster import ChaosCluster
from tests.chaos.faults import Injector
from tests.chaos.workload import Deadline, Ledger, patient_client, register_patients, sdk

pytestmark = [pytest.mark.ray, pytest.mark.chaos]


async def _under_faults(
    cluster: ChaosCluster, kinds: tuple[str, ...], *, faults: int, seconds: float, seed: int
) -> tuple[Injector, Ledger, object]:
    team = f"team-{uuid.uuid4().hex[:6]}"
    admin = sdk(cluster.http_url, cluster.token("admin"))
    clinician = sdk(cluster.http_url, cluster.token("clinician", team=(team,)))
    try:
        patients = await register_patients(admin, 3, team)
        ledger = Ledger()
        injector = Injector(cluster, seed=seed, outage_s=2.0)
        deadline = Deadline(math.inf)

        async def inject() -> None:
            until = time.monotonic() + seconds
            await injector.run(kinds, every_s=seconds / (faults + 1), until=until)
            deadline.at = time.monotonic() + 5.0  # then a few seconds on a healed cluster

        clients = [
            patient_client(clinician, p, c, ledger, until=deadline, max_events=100_000)
            for c, p in enumerate(patients * 2)  # two clients per patient
        ]
        await asyncio.gather(*clients, inject())
        verdict = await check(cluster.settings, ledger, patients, clinician)
    finally:
        await admin.aclose()
        await clinician.aclose()
    return injector, ledger, verdict


@pytest.mark.parametrize(
    "kinds",
    [("host_kill", "replica_kill"), ("postgres_crash",), ("node_kill", "redis_restart",
     "s3_kms_outage", "runner_kill")],
    ids=["actor-kills", "postgres-crashes", "node-and-servers"],
)  # fmt: skip
async def test_no_acknowledged_event_is_lost_or_doubled(chaos_cluster, kinds):
    injector, ledger, verdict = await _under_faults(
        chaos_cluster, kinds, faults=len(kinds) * 2, seconds=16.0 * len(kinds), seed=len(kinds)
    )

    assert {i.kind for i in injector.injected} == set(kinds), injector.injected
    assert verdict.acknowledged > 50, ledger.statuses
    assert verdict.ok, verdict
