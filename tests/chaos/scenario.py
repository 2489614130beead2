"""One chaos run: register patients, run the clients while faults are injected, then check."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests.chaos.checker import Verdict, check
from tests.chaos.cluster import ChaosCluster
from tests.chaos.workload import Deadline, Ledger, patient_client, register_patients, sdk


@dataclass(frozen=True, slots=True)
class Run:
    """What a run did: its ledger, the check's verdict and how long the clients ran (s)."""

    ledger: Ledger
    verdict: Verdict
    seconds: float


async def under_faults(
    cluster: ChaosCluster,
    inject: Callable[[], Awaitable[None]],
    *,
    patients: int = 3,
    quiet_s: float,
) -> Run:
    """Two clients per patient write until ``inject`` is done and ``quiet_s`` more; then check.

    Args:
        cluster: The running cluster.
        inject: Injects the run's faults (returns when the last one is undone).
        patients: Patients registered for the run (in a care team of its own).
        quiet_s: How long the clients go on against the healed cluster, seconds.
    """
    team = f"team-{uuid.uuid4().hex[:6]}"
    admin = sdk(cluster.http_url, cluster.token("admin"))
    clinician = sdk(cluster.http_url, cluster.token("clinician", team=(team,)))
    try:
        ids = await register_patients(admin, patients, team)
        ledger = Ledger()
        deadline = Deadline(math.inf)

        async def faults() -> None:
            await inject()
            deadline.at = time.monotonic() + quiet_s

        started = time.monotonic()
        await asyncio.gather(faults(), *[
            patient_client(clinician, p, c, ledger, until=deadline, max_events=1_000_000)
            for c, p in enumerate(ids * 2)
        ])  # fmt: skip
        seconds = time.monotonic() - started
        verdict = await check(cluster.settings, ledger, ids, clinician)
    finally:
        await admin.aclose()
        await clinician.aclose()
    return Run(ledger, verdict, seconds)
