"""Bulk ingest jobs, cohort runs and erasures submitted while faults are injected.

Alongside the clinical clients (:mod:`tests.chaos.workload`), an operator's clients keep the
job runner and Ray Data busy: one submits bulk ingest jobs (FHIR NDJSON files of PHQ-9
observations for patients it registered), one submits small synthetic cohort runs, one
registers patients, writes to them and erases them. Each records what the service
acknowledged, so the check can ask: did every acknowledged job finish exactly once, with all of
its events stored once each, and is every acknowledged erasure unreadable?
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from tests.chaos.workload import Deadline
from twin import errors, schemas
from twin.client import AsyncClient, observation
from twin.domain import events as E
from twin.domain.specs import CohortSpec, Scenario

#: Where each job patient's time axis starts; its observations are on the days after.
ENROLLED = "2024-01-01T00:00:00+00:00"
#: PHQ-9 observations per patient in an ingest job, and patients per job.
OBSERVATIONS, JOB_PATIENTS = 30, 8
#: Synthetic patients and scenarios of a cohort run (its rows are their product).
COHORT_PATIENTS, COHORT_SCENARIOS = 4, 2
#: How long a client waits for a job it submitted before going on, seconds.
_JOB_WAIT_S = 240.0
_FAILURES = (errors.TwinError, httpx.HTTPError, OSError)


def job_score(patient_index: int, day: int) -> int:
    """The PHQ-9 total a job's file gives a patient on a day (0..27)."""
    return (patient_index * 5 + day) % 28


@dataclass
class JobLedger:
    """What the operator's clients submitted and what the service acknowledged.

    Attributes:
        ingests: Acknowledged ingest jobs: job id -> the patients whose events it carries.
        cohorts: Acknowledged cohort runs (their job ids).
        unacked_jobs: Submissions that were never acknowledged (they may or may not exist).
        erased: Patients whose erasure was acknowledged.
        unacked_erasures: Patients whose erasure was sent and never acknowledged.
        statuses: Outcomes of the clients' calls by kind.
    """

    ingests: dict[str, list[str]] = field(default_factory=dict)
    cohorts: list[str] = field(default_factory=list)
    unacked_jobs: int = 0
    erased: list[str] = field(default_factory=list)
    unacked_erasures: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)


def observations_ndjson(patients: list[str]) -> str:
    """An NDJSON file of ``OBSERVATIONS`` PHQ-9 totals per patient, at 10:00 UTC each day."""
    lines = [
        {
            "resourceType": "Observation",
            "id": f"{pid.replace('_', '-')}-{day}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": f"2024-01-{1 + day:02d}T10:00:00Z",
            "valueQuantity": {"value": job_score(i, day), "code": "{score}"},
        }
        for i, pid in enumerate(patients)
        for day in range(1, OBSERVATIONS + 1)
    ]
    return "\n".join(json.dumps(line) for line in lines) + "\n"


async def job_patients(admin: AsyncClient, n: int, team: str) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [
        await admin.create_patient(
            name=f"Job {tag} {i}",
            birth_date="1975-05-05",
            mrn=f"J-{tag}-{i}",
            care_team=team,
            enrolled_at=ENROLLED,
        )
        for i in range(n)
    ]


async def ingest_client(
    admin: AsyncClient, inbox: Path, team: str, ledger: JobLedger, *, until: Deadline
) -> None:
    """Submit bulk ingest jobs one after another (each waited for) until ``until``."""
    inbox.mkdir(parents=True, exist_ok=True)
    while time.monotonic() < until.at:
        try:
            patients = await job_patients(admin, JOB_PATIENTS, team)
            source = inbox / f"{uuid.uuid4().hex}.ndjson"
            source.write_text(observations_ndjson(patients))
            job = await admin.submit_ingest_job([str(source)], format="fhir-ndjson")
        except _FAILURES as exc:
            ledger.unacked_jobs += 1
            ledger.statuses[f"ingest {type(exc).__name__}"] += 1
            await asyncio.sleep(1.0)
            continue
        ledger.ingests[job.job_id] = patients
        ledger.statuses["ingest submitted"] += 1
        await _await_job(admin.ingest_job, job.job_id)


async def cohort_client(researcher: AsyncClient, ledger: JobLedger, *, until: Deadline) -> None:
    """Submit small synthetic cohort runs one after another (each waited for) until ``until``."""
    run = schemas.CohortRunIn(
        synthetic=CohortSpec(n_patients=COHORT_PATIENTS, days=7, seed=3),
        scenarios=[Scenario(name="care"), Scenario(name="no care", care=False)],
        weeks=2,
        particles=50,
    )
    while time.monotonic() < until.at:
        try:
            job = await researcher.submit_cohort_run(run)
        except _FAILURES as exc:
            ledger.unacked_jobs += 1
            ledger.statuses[f"cohort {type(exc).__name__}"] += 1
            await asyncio.sleep(1.0)
            continue
        ledger.cohorts.append(job.job_id)
        ledger.statuses["cohort submitted"] += 1
        await _await_job(researcher.cohort_run, job.job_id)


async def _await_job(
    status: Callable[[str], Awaitable[schemas.IngestJobOut | schemas.CohortRunOut]], job_id: str
) -> None:
    """Poll a job until it has finished or :data:`_JOB_WAIT_S` passed (the check waits more)."""
    deadline = time.monotonic() + _JOB_WAIT_S
    while time.monotonic() < deadline:
        try:
            now = await status(job_id)
        except _FAILURES:
            now = None
        if now is not None and now.status in ("succeeded", "failed", "cancelled"):
            return
        await asyncio.sleep(1.0)


async def erasure_client(
    admin: AsyncClient, clinician: AsyncClient, team: str, ledger: JobLedger, *, until: Deadline
) -> None:
    """Register a patient (admin), write to it (its clinician), erase it (admin); again."""
    while time.monotonic() < until.at:
        try:
            (patient,) = await job_patients(admin, 1, team)
            one_day_in = datetime.fromisoformat(ENROLLED) + timedelta(days=1)
            await clinician.add_observations(
                patient, [observation(E.Phq9(12), effective=one_day_in)]
            )
        except _FAILURES as exc:
            ledger.statuses[f"erasure setup {type(exc).__name__}"] += 1
            await asyncio.sleep(1.0)
            continue
        try:
            await admin.erase_patient(patient)
        except _FAILURES as exc:
            ledger.unacked_erasures.append(patient)
            ledger.statuses[f"erase {type(exc).__name__}"] += 1
        else:
            ledger.erased.append(patient)
            ledger.statuses["erased"] += 1
        await asyncio.sleep(2.0)
