"""Bulk-ingest jobs: queue one (run by the job runner), follow or cancel it, read its report.

Each route translates HTTP to one use case of :class:`twin.service.application.TwinService`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from deployments.api.access import Caller, DocumentId, Services, caller
from deployments.api.errors import PROBLEMS
from twin import schemas

router = APIRouter(prefix="/v1/ingest/jobs", tags=["ingest"], responses=PROBLEMS)


@router.get("", response_model=schemas.IngestJobPage)
async def list_jobs(
    who: Caller,
    svc: Services,
    request: Request,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> schemas.IngestJobPage:
    """Jobs, oldest first (admins, services, researchers)."""
    items, next_after = await svc.app.ingest_jobs(caller(request, who), after=after, limit=limit)
    return schemas.IngestJobPage(items=items, next_after=next_after)


@router.get("/{job_id}", response_model=schemas.IngestJobOut)
async def read_job(
    job_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.IngestJobOut:
    """One job: its status, and its report once finished."""
    return await svc.app.ingest_job(caller(request, who), job_id)


@router.post("", status_code=202, response_model=schemas.IngestJobOut)
async def submit_job(
    body: schemas.IngestJobIn, who: Caller, svc: Services, request: Request
) -> schemas.IngestJobOut:
    """Queue a bulk-ingest job over files under the ingest root (admins, services)."""
    return await svc.app.submit_ingest_job(caller(request, who), body)


@router.post("/{job_id}/cancel", status_code=202, response_model=schemas.IngestJobOut)
async def cancel_job(
    job_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.IngestJobOut:
    """Cancel a job (admins, services): a queued one at once, a running one when it next reports.

    Records appended before it stopped stay: each was acknowledged.
    """
    return await svc.app.cancel_ingest_job(caller(request, who), job_id)
