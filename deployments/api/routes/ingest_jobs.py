"""Bulk-ingest jobs: queue one (run by the job runner), follow or cancel it, read its report.

Each route translates HTTP to one use case of :class:`twin.service.application.TwinService`.

The FHIR Bulk Data flow (its export's asynchronous request pattern, which its import drafts
reuse): the kick-off (``POST``, with ``Prefer: respond-async``; every kick-off here is
asynchronous) answers 202 with ``Content-Location``, the job's status URL (a relative
reference: behind the load balancer the request's own scheme and host are internal ones).
Polling that URL answers 202 with ``Retry-After`` and ``X-Progress`` while the job is queued or
running, and 200 with the job and its report once it has finished (succeeded, failed or
cancelled). ``DELETE`` on it cancels the job.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from deployments.api.access import INT32, Caller, DocumentId, Services, caller
from deployments.api.errors import BODY, problems
from deployments.api.headers import V1Route, polling_headers
from twin import schemas

router = APIRouter(
    prefix="/v1/ingest/jobs", tags=["ingest"], responses=problems(), route_class=V1Route
)
#: Seconds a poller waits before asking again while a job runs.
POLL_AFTER_S = 5
_IN_PROGRESS = {
    202: {
        "model": schemas.IngestJobOut,
        "description": "queued or running; poll again after Retry-After seconds",
        "headers": polling_headers("records"),
    }
}
#: The job's status URL (a relative reference) on a kick-off's answer.
_STATUS_URL = {
    202: {
        "headers": {
            "Content-Location": {
                "required": True,
                "description": "the job's status URL, to poll",
                "schema": {
                    "type": "string",
                    "maxLength": 128,
                    "pattern": "^/v1/ingest/jobs/[A-Za-z0-9_-]{1,64}/status$",
                },
            }
        }
    }
}


def _progress(job: schemas.IngestJobOut) -> str:
    """The job's progress as ``X-Progress`` states it (no values, only counts)."""
    if job.records_read is None:
        return job.status
    return f"{job.status}: {job.records_done or 0} of {job.records_read} records"


@router.get("", response_model=schemas.IngestJobPage)
async def list_jobs(
    who: Caller,
    svc: Services,
    request: Request,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=200, json_schema_extra=INT32)] = 50,
) -> schemas.IngestJobPage:
    """Jobs, oldest first (admins, services, researchers)."""
    items, next_after = await svc.app.ingest_jobs(caller(request, who), after=after, limit=limit)
    return schemas.IngestJobPage(items=items, next_after=next_after)


@router.get("/{job_id}", response_model=schemas.IngestJobOut, responses=problems(404))
async def read_job(
    job_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.IngestJobOut:
    """One job: its status, and its report once finished."""
    return await svc.app.ingest_job(caller(request, who), job_id)


@router.get(
    "/{job_id}/status",
    response_model=schemas.IngestJobOut,
    responses={**_IN_PROGRESS, **problems(404)},
)
async def job_status(
    job_id: DocumentId, who: Caller, svc: Services, request: Request, response: Response
) -> schemas.IngestJobOut:
    """Bulk Data status polling: 202 while the job runs, 200 with its report once finished."""
    job = await svc.app.ingest_job(caller(request, who), job_id)
    if job.status in ("queued", "running"):
        response.status_code = 202
        response.headers["Retry-After"] = str(POLL_AFTER_S)
        response.headers["X-Progress"] = _progress(job)
    return job


@router.delete(
    "/{job_id}/status",
    status_code=202,
    response_model=schemas.IngestJobOut,
    responses=problems(404),
)
async def delete_job_status(
    job_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.IngestJobOut:
    """Bulk Data cancellation: cancel the job (as ``POST .../cancel``)."""
    return await svc.app.cancel_ingest_job(caller(request, who), job_id)


@router.post(
    "",
    status_code=202,
    response_model=schemas.IngestJobOut,
    responses={**_STATUS_URL, **problems(*BODY)},
)
async def submit_job(
    body: schemas.IngestJobIn, who: Caller, svc: Services, request: Request, response: Response
) -> schemas.IngestJobOut:
    """Queue a bulk-ingest job over files under the ingest root (admins, services).

    Asynchronous, as a FHIR Bulk Data kick-off (``Prefer: respond-async``): 202 with
    ``Content-Location``, the job's status URL to poll.
    """
    job = await svc.app.submit_ingest_job(caller(request, who), body)
    # A relative reference (RFC 9110 §8.7): behind the TLS-terminating load balancer the
    # request's own scheme and host are the internal ones, not the client's.
    response.headers["Content-Location"] = request.url_for("job_status", job_id=job.job_id).path
    return job


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=schemas.IngestJobOut,
    responses=problems(404),
)
async def cancel_job(
    job_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.IngestJobOut:
    """Cancel a job (admins, services): a queued one at once, a running one when it next reports.

    Records appended before it stopped stay: each was acknowledged.
    """
    return await svc.app.cancel_ingest_job(caller(request, who), job_id)
