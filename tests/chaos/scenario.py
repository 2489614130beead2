"""One chaos run: register patients, run the clients while faults are injected, then check."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests.chaos import jobs as J
from tests.chaos.checker import JobVerdict, Verdict, check, check_jobs
from tests.chaos.cluster import ChaosCluster
from tests.chaos.workload import Deadline, Ledger, patient_client, register_patients, sdk


@dataclass(frozen=True, slots=True)
class Run:
    """What a run did: its ledgers, the checks' verdicts and how long the clients ran (s)."""

    ledger: Ledger
    verdict: Verdict
    seconds: float
    jobs: J.JobLedger
    job_verdict: JobVerdict | None

    @property
    def ok(self) -> bool:
        return self.verdict.ok and (self.job_verdict is None or self.job_verdict.ok)


async def under_faults(
    cluster: ChaosCluster,
    inject: Callable[[], Awaitable[None]],
    *,
    patients: int = 3,
    quiet_s: float,
    jobs: bool = False,
) -> Run:
    """Two clients per patient write until ``inject`` is done and ``quiet_s`` more; then check.

    Args:
        cluster: The running cluster.
        inject: Injects the run's faults (returns when the last one is undone).
        patients: Patients registered for the run (in a care team of its own).
        quiet_s: How long the clients go on against the healed cluster, seconds.
        jobs: Whether bulk ingest jobs, cohort runs and erasures run meanwhile (and are
            checked).
    """
    team = f"team-{uuid.uuid4().hex[:6]}"
    admin = sdk(cluster.http_url, cluster.token("admin"))
    clinician = sdk(cluster.http_url, cluster.token("clinician", team=(team,)))
    researcher = sdk(cluster.http_url, cluster.token("researcher"))
    try:
        ids = await register_patients(admin, patients, team)
        ledger, job_ledger = Ledger(), J.JobLedger()
        deadline = Deadline(math.inf)
        operators = [
            J.ingest_client(admin, cluster.settings.data_dir / "inbox", team, job_ledger,
                            until=deadline),
            J.cohort_client(researcher, job_ledger, until=deadline),
            J.erasure_client(admin, clinician, team, job_ledger, until=deadline),
        ] if jobs else []  # fmt: skip

        async def faults() -> None:
            await inject()
            deadline.at = time.monotonic() + quiet_s

        started = time.monotonic()
        await asyncio.gather(faults(), *[
            patient_client(clinician, p, c, ledger, until=deadline, max_events=1_000_000)
            for c, p in enumerate(ids * 2)
        ], *operators)  # fmt: skip
        seconds = time.monotonic() - started
        verdict = await check(cluster.settings, ledger, ids, clinician)
        job_verdict = None
        if jobs:
            job_verdict = await check_jobs(
                cluster.settings, job_ledger, admin=admin, researcher=researcher,
                clinician=clinician,
            )  # fmt: skip
    finally:
        for client in (admin, clinician, researcher):
            await client.aclose()
    return Run(ledger, verdict, seconds, job_ledger, job_verdict)
