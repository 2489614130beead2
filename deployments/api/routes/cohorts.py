"""Cohort what-if runs for researchers: submit, follow, cancel, read de-identified results.

A submission within the run budget (:mod:`twin.analytics.budget`) and the caller's job limit is
queued durably (request + ``queued`` status) and answered 202; the cluster's job runner
(:mod:`deployments.pipelines.job_runner`) runs it on Ray Data. Results carry research pseudonyms
only. A researcher sees and cancels their own runs; admins see and cancel every run. Each route
translates HTTP to one use case of :class:`twin.service.application.TwinService`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from deployments.api.access import INT32, Caller, DocumentId, Services, caller
from deployments.api.errors import BODY, problems
from deployments.api.headers import V1Route
from twin import schemas

router = APIRouter(
    prefix="/v1/cohorts/runs", tags=["cohorts"], responses=problems(), route_class=V1Route
)


@router.post("", status_code=202, response_model=schemas.CohortRunOut, responses=problems(*BODY))
async def submit_run(
    body: schemas.CohortRunIn, who: Caller, svc: Services, request: Request
) -> schemas.CohortRunOut:
    """Queue a cohort what-if run (researchers); poll it with ``GET .../{job_id}``."""
    return await svc.app.submit_cohort_run(caller(request, who), body)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=schemas.CohortRunOut,
    responses=problems(404),
)
async def cancel_run(
    job_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.CohortRunOut:
    """Cancel a run: a queued one at once, a running one at its next progress update."""
    return await svc.app.cancel_cohort_run(caller(request, who), job_id)


@router.get("", response_model=schemas.CohortRunPage)
async def list_runs(
    who: Caller,
    svc: Services,
    request: Request,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=200, json_schema_extra=INT32)] = 50,
) -> schemas.CohortRunPage:
    """Runs, oldest first."""
    items, next_after = await svc.app.cohort_runs(caller(request, who), after=after, limit=limit)
    return schemas.CohortRunPage(items=items, next_after=next_after)


@router.get("/{job_id}", response_model=schemas.CohortRunOut, responses=problems(404))
async def read_run(
    job_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.CohortRunOut:
    """One run: status, progress and, once finished, the aggregate."""
    return await svc.app.cohort_run(caller(request, who), job_id)


@router.get(
    "/{job_id}/patients",
    response_model=schemas.CohortPatientPage,
    responses=problems(404, 409),
)
async def read_patients(
    job_id: DocumentId,
    who: Caller,
    svc: Services,
    request: Request,
    page: Annotated[int, Query(ge=0, le=999_999, json_schema_extra=INT32)] = 0,
) -> schemas.CohortPatientPage:
    """One page of per-(patient, scenario) rows of a finished run, by pseudonym."""
    return await svc.app.cohort_patients(caller(request, who), job_id, page)
