"""Faults injected into the whole platform under concurrent clients; then the set-based check.

Each test runs clinical clients over HTTP (several per patient, the SDK's retries and
idempotency keys) while one kind of fault is injected, then checks that every acknowledged event
is stored exactly once with its payload, in acknowledgement order, that each twin equals its
rebuild from the log, and that the audit chain verifies.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.checker import Verdict
from tests.chaos.cluster import ChaosCluster
from tests.chaos.faults import Injector
from tests.chaos.scenario import under_faults
from tests.chaos.workload import Ledger

pytestmark = [pytest.mark.ray, pytest.mark.chaos]


async def _under_faults(
    cluster: ChaosCluster, kinds: tuple[str, ...], *, faults: int, seconds: float, seed: int
) -> tuple[Injector, Ledger, Verdict]:
    injector = Injector(cluster, seed=seed, outage_s=2.0)

    async def inject() -> None:
        until = time.monotonic() + seconds
        await injector.run(kinds, every_s=seconds / (faults + 1), until=until)

    run = await under_faults(cluster, inject, quiet_s=5.0)  # then a few seconds healed
    return injector, run.ledger, run.verdict


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
