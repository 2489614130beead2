"""Bulk-ingest jobs: queue one (run by the job runner), follow or cancel it, read its report."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request

from deployments import jobs
from deployments.api.access import Caller, DocumentId, Services, require_role
from deployments.api.errors import PROBLEMS
from twin import schemas

router = APIRouter(prefix="/v1/ingest/jobs", tags=["ingest"], responses=PROBLEMS)
ROLES = ("admin", "service", "researcher")
SUBMIT = ("admin", "service")


@router.get("", response_model=schemas.IngestJobPage)
async def list_jobs(
    who: Caller,
    svc: Services,
    request: Request,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> schemas.IngestJobPage:
    """Jobs, oldest first (admins, services, researchers)."""
    await require_role(svc, request, who, "ingest.jobs", ROLES)
    items, next_after = await jobs.INGEST.page(svc.documents, after=after, limit=limit)
    return schemas.IngestJobPage(items=items, next_after=next_after)


@router.get("/{job_id}", response_model=schemas.IngestJobOut)
async def read_job(
    job_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.IngestJobOut:
    """One job: its status, and its report once finished."""
    await require_role(svc, request, who, "ingest.job", ROLES)
    return await jobs.INGEST.get(svc.documents, job_id)


@router.post("", status_code=202, response_model=schemas.IngestJobOut)
async def submit_job(
    body: schemas.IngestJobIn, who: Caller, svc: Services, request: Request
) -> schemas.IngestJobOut:
    """Queue a bulk-ingest job over files under the ingest root (admins, services)."""
    await require_role(svc, request, who, "ingest.submit", SUBMIT)
    # A walk of the named folders: off the event loop.
    await asyncio.to_thread(jobs.check_sources, svc.ingest_root, body.paths)
    await jobs.admit(svc.documents, who.subject, svc.jobs_per_caller, svc.job_scan)
    return await jobs.enqueue_ingest(svc.documents, body, who.subject)


@router.post("/{job_id}/cancel", status_code=202, response_model=schemas.IngestJobOut)
async def cancel_job(
    job_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.IngestJobOut:
    """Cancel a job (admins, services): a queued one at once, a running one when it next reports.

    Records appended before it stopped stay: each was acknowledged.
    """
    await require_role(svc, request, who, "ingest.cancel", SUBMIT)
    return await jobs.cancel(svc.documents, jobs.INGEST, job_id, who.subject)
