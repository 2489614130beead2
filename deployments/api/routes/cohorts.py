"""Cohort what-if runs for researchers: submit, follow, cancel, read de-identified results.

A submission within the run budget (:mod:`twin.analytics.budget`) and the caller's job limit is
queued durably (request + ``queued`` status) and answered 202; the cluster's job runner
(:mod:`deployments.job_runner`) runs it on Ray Data. Results carry research pseudonyms only. A
researcher sees and cancels their own runs; admins see and cancel every run.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request

from deployments import jobs
from deployments.api.access import Caller, DocumentId, Services, require_role
from deployments.api.errors import PROBLEMS
from deployments.api.services import ApiServices
from deployments.auth import Principal
from twin import errors, schemas
from twin.analytics.budget import cohort_cost

router = APIRouter(prefix="/v1/cohorts/runs", tags=["cohorts"], responses=PROBLEMS)
SUBMIT = ("researcher",)
READ = ("researcher", "admin")


@router.post("", status_code=202, response_model=schemas.CohortRunOut)
async def submit_run(
    body: schemas.CohortRunIn, who: Caller, svc: Services, request: Request
) -> schemas.CohortRunOut:
    """Queue a cohort what-if run (researchers); poll it with ``GET .../{job_id}``."""
    await require_role(svc, request, who, "cohorts.submit", SUBMIT)
    svc.cohort_budget.check(cohort_cost(body, svc.stored_particles))
    await jobs.admit(svc.documents, who.subject, svc.jobs_per_caller, svc.job_scan)
    return await jobs.enqueue_cohort(svc.documents, body, who.subject)


async def _visible(svc: ApiServices, who: Principal, job_id: str) -> schemas.CohortRunOut:
    """A run the caller may see: a researcher's own, or any run for an admin (else 404)."""
    run = await jobs.COHORT.get(svc.documents, job_id)
    if who.role != "admin" and run.submitted_by != who.subject:
        raise errors.NotFoundError("no such job in cohort_run")
    return run


@router.post("/{job_id}/cancel", status_code=202, response_model=schemas.CohortRunOut)
async def cancel_run(
    job_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.CohortRunOut:
    """Cancel a run: a queued one at once, a running one at its next progress update."""
    await require_role(svc, request, who, "cohorts.cancel", READ)
    await _visible(svc, who, job_id)
    return await jobs.cancel(svc.documents, jobs.COHORT, job_id, who.subject)


@router.get("", response_model=schemas.CohortRunPage)
async def list_runs(
    who: Caller,
    svc: Services,
    request: Request,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> schemas.CohortRunPage:
    """Runs, oldest first."""
    await require_role(svc, request, who, "cohorts.runs", READ)
    items, next_after = await jobs.COHORT.page(svc.documents, after=after, limit=limit)
    if who.role != "admin":  # a page may hold fewer items; next_after still continues
        items = [run for run in items if run.submitted_by == who.subject]
    return schemas.CohortRunPage(items=items, next_after=next_after)


@router.get("/{job_id}", response_model=schemas.CohortRunOut)
async def read_run(
    job_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.CohortRunOut:
    """One run: status, progress and, once finished, the aggregate."""
    await require_role(svc, request, who, "cohorts.run", READ)
    return await _visible(svc, who, job_id)


@router.get("/{job_id}/patients", response_model=schemas.CohortPatientPage)
async def read_patients(
    job_id: DocumentId,
    who: Caller,
    svc: Services,
    request: Request,
    page: Annotated[int, Query(ge=0, le=999_999)] = 0,
) -> schemas.CohortPatientPage:
    """One page of per-(patient, scenario) rows of a finished run, by pseudonym."""
    await require_role(svc, request, who, "cohorts.patients", READ)
    run = await _visible(svc, who, job_id)
    if run.status != "succeeded":
        raise errors.JobNotFinishedError(f"the run is {run.status}")
    if page >= max(run.result_pages, 1):
        raise errors.NotFoundError("no such result page")
    rows = await svc.documents.get(jobs.COHORT_RESULTS, f"{job_id}.{page:06d}")
    return schemas.CohortPatientPage(
        items=json.loads(rows.body) if rows is not None else [],
        page=page,
        next_page=page + 1 if page + 1 < run.result_pages else None,
    )
