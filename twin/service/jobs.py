"""The job queue: batch jobs (bulk ingest, cohort runs, FHIR exports) as status documents.

A job writes its status when it is submitted or starts, while it runs (progress) and when it
ends (``succeeded`` with its report, ``failed`` with the error's class and message, never a
value, or ``cancelled``). A job id sorts by start time (``YYYYmmddTHHMMSSZ-<8 hex>``), so jobs
are listed oldest first with keyset pages.

Limits: a caller holds at most ``jobs_per_caller`` queued or running jobs; a cancellation is a
document of its own (``job_cancel``, so that no status write can overwrite it) that the runner
reads before it starts a job and at every progress update; a job the runner was started on
:data:`MAX_ATTEMPTS` times without finishing (its process killed, out of memory) is failed
rather than run again for ever.

Everything here works on a :class:`twin.ports.DocumentStore`; the runner's side (opening the
stores where a job runs, keeping its status while it works) is the platform's.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from twin import errors, ports, schemas
from twin.fhir_out.export import ExportJob, ExportRequest

__all__ = [
    "CANCELS",
    "COHORT",
    "COHORT_RESULTS",
    "EXPORT",
    "FINISHED",
    "INGEST",
    "KINDS",
    "MAX_ATTEMPTS",
    "PROGRESS_EVERY_S",
    "JobKind",
    "active_jobs_of",
    "admit",
    "cancel",
    "enqueue_cohort",
    "enqueue_export",
    "enqueue_ingest",
    "new_job_id",
    "pending_jobs",
    "raise_if_cancelled",
    "submitted",
    "utc_now",
]

M = TypeVar("M", bound=BaseModel)
Q = TypeVar("Q", bound=BaseModel)

#: Collection of a cohort run's result pages (``<job_id>.<page:06d>``).
COHORT_RESULTS = "cohort_result"
#: Seconds between progress updates of a running job's status document.
PROGRESS_EVERY_S = 2.0
#: Collection of cancellation requests (id = job id; the body names who asked).
CANCELS = "job_cancel"
#: Starts of one job after which an unfinished job is failed, not run again.
MAX_ATTEMPTS = 2
#: States a job does not leave.
FINISHED = ("succeeded", "failed", "cancelled")
_SETTLE = timedelta(minutes=10)


def new_job_id(now: datetime | None = None) -> str:
    """A job id that sorts by start time."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def utc_now() -> str:
    """Now, UTC, ISO 8601 (the jobs' timestamps)."""
    return datetime.now(UTC).isoformat()


async def _existing(documents: ports.DocumentStore, collection: str, job_id: str) -> ports.Document:
    found = await documents.get(collection, job_id)
    if found is None:
        raise errors.NotFoundError(f"no such job in {collection}")
    return found


@dataclass(frozen=True, slots=True)
class JobKind(Generic[M, Q]):
    """One kind of job: where its status documents and submitted requests live, and their models.

    Attributes:
        collection: Collection of the status documents (id = job id).
        model: Wire model of the status.
        requests: Collection of the requests submitted through the API (id = job id).
        request_model: Wire model of a request.
    """

    collection: str
    model: type[M]
    requests: str
    request_model: type[Q]

    async def enqueue(self, documents: ports.DocumentStore, request: Q, queued: M) -> M:
        """Queue a job durably: the request, then its ``queued`` status (the runner's cue).

        Once this returns the submission survives any restart: the job runner picks queued
        jobs up in id order.
        """
        job_id = getattr(queued, "job_id")  # noqa: B009 - every job model has one
        body = request.model_dump_json().encode()
        await documents.put(ports.Document(self.requests, job_id, None, body, time.time()))
        await self.save(documents, queued)
        return queued

    async def request(self, documents: ports.DocumentStore, job_id: str) -> Q:
        """The request of a submitted job.

        Raises:
            NotFoundError: No such submission.
        """
        found = await _existing(documents, self.requests, job_id)
        return self.request_model.model_validate_json(found.body)

    async def save(self, documents: ports.DocumentStore, job: M) -> None:
        """Write (or replace) the job's status document."""
        job_id = getattr(job, "job_id")  # noqa: B009 - every job model has one
        body = job.model_dump_json().encode()
        await documents.put(ports.Document(self.collection, job_id, None, body, time.time()))

    def load(self, document: ports.Document) -> M:
        """The job of a status document."""
        return self.model.model_validate_json(document.body)

    async def get(self, documents: ports.DocumentStore, job_id: str) -> M:
        """One job's status.

        Raises:
            NotFoundError: No such job.
        """
        return self.load(await _existing(documents, self.collection, job_id))

    async def page(
        self, documents: ports.DocumentStore, *, after: str | None, limit: int
    ) -> tuple[list[M], str | None]:
        """Jobs after ``after`` in id (start-time) order, and the ``after`` of the next page."""
        found = await documents.list(self.collection, after=after, limit=limit)
        return [self.load(d) for d in found], found[-1].doc_id if len(found) == limit else None


INGEST = JobKind("ingest_job", schemas.IngestJobOut, "ingest_request", schemas.IngestJobIn)
COHORT = JobKind("cohort_run", schemas.CohortRunOut, "cohort_request", schemas.CohortRunIn)
EXPORT = JobKind("fhir_export", ExportJob, "fhir_export_request", ExportRequest)
#: Every kind of job, in the order the runner serves them.
KINDS: tuple[JobKind[Any, Any], ...] = (COHORT, INGEST, EXPORT)


async def pending_jobs(
    documents: ports.DocumentStore,
    kind: JobKind[Any, Any],
    wanted: tuple[str, ...],
    settled: dict[str, str],
    *,
    now: datetime | None = None,
) -> list[Any]:
    """The jobs of ``kind`` in one of the ``wanted`` states, in id (submission) order.

    ``settled`` maps a collection to the id after which scans start: the last of an unbroken
    run of finished jobs older than :data:`_SETTLE` (ids sort by submission time; the margin
    covers clock skew between the API replicas that minted them). It is advanced in place, so a
    poll reads only the recent part of a long job history.
    """
    found: list[Any] = []
    after = settled.get(kind.collection)
    unbroken = True
    horizon = new_job_id((now or datetime.now(UTC)) - _SETTLE)
    while True:
        page, next_after = await kind.page(documents, after=after, limit=200)
        for job in page:
            if job.status in wanted:
                found.append(job)
            unbroken = unbroken and job.status in FINISHED and job.job_id < horizon
            if unbroken:
                settled[kind.collection] = job.job_id
        if next_after is None:
            return found
        after = next_after


async def active_jobs_of(
    documents: ports.DocumentStore, subject: str, settled: dict[str, str]
) -> int:
    """How many jobs (of every kind) ``subject`` submitted that are queued or running.

    ``settled`` is the caller's scan cursor over ``documents`` (see :func:`pending_jobs`).
    """
    count = 0
    for kind in KINDS:
        pending = await pending_jobs(documents, kind, ("queued", "running"), settled)
        count += sum(1 for job in pending if job.submitted_by == subject)
    return count


async def admit(
    documents: ports.DocumentStore, subject: str, limit: int, settled: dict[str, str]
) -> None:
    """Let ``subject`` queue one more job unless it already holds ``limit`` unfinished ones.

    ``settled``: the caller's scan cursor over ``documents`` (kept between calls, so a count
    reads only the recent part of the job history).

    Two submissions racing each other may both pass (the count is not a lock): the limit
    bounds a caller's share of the one job runner, not an exact number.

    Raises:
        ConcurrencyLimitError: ``subject`` holds ``limit`` queued or running jobs.
    """
    if await active_jobs_of(documents, subject, settled) >= limit:
        raise errors.ConcurrencyLimitError(
            30, f"at most {limit} queued or running jobs per caller: wait for one or cancel it"
        )


async def raise_if_cancelled(documents: ports.DocumentStore, job_id: str) -> None:
    """Stop a job whose cancellation was requested.

    Raises:
        JobCancelledError: A cancellation of ``job_id`` is on record.
    """
    if await documents.get(CANCELS, job_id) is not None:
        raise errors.JobCancelledError("the job was cancelled on request")


async def cancel(documents: ports.DocumentStore, kind: JobKind[M, Any], job_id: str, by: str) -> M:
    """Request a job's cancellation; returns its status (``cancelled`` at once if queued).

    A queued job is marked cancelled here; a running one stops at its next progress update
    (the runner marks it). Cancelling a finished job changes nothing.

    Raises:
        NotFoundError: No such job.
    """
    job = await kind.get(documents, job_id)
    if getattr(job, "status") in FINISHED:  # noqa: B009 - every job model has one
        return job
    body = json.dumps({"by": by, "at": utc_now()}).encode()
    await documents.put(ports.Document(CANCELS, job_id, None, body, time.time()))
    # Read again after the request is on record: a runner that starts the job from here on
    # sees the request (it checks before it writes "running"); one that already started it
    # stops at its next progress update and writes "cancelled" itself.
    job = await kind.get(documents, job_id)
    if getattr(job, "status") == "queued":  # noqa: B009
        job = job.model_copy(
            update={"status": "cancelled", "finished_at": utc_now(), "error": "cancelled"}
        )
        await kind.save(documents, job)
    return job


def submitted(run: schemas.CohortRunIn, job_id: str, by: str | None = None) -> schemas.CohortRunOut:
    """The status document of a run just submitted (by the token subject ``by``)."""
    selection = "filter" if run.filter else "pseudonyms" if run.pseudonyms else "synthetic"
    return schemas.CohortRunOut(
        job_id=job_id,
        status="queued",
        submitted_by=by,
        selection=selection,
        scenarios=[s.name for s in run.scenarios],
        weeks=run.weeks,
        seed=run.seed,
        submitted_at=utc_now(),
    )


async def enqueue_cohort(
    documents: ports.DocumentStore, run: schemas.CohortRunIn, by: str | None = None
) -> schemas.CohortRunOut:
    """Queue a cohort run (see :meth:`JobKind.enqueue`)."""
    return await COHORT.enqueue(documents, run, submitted(run, new_job_id(), by))


async def enqueue_ingest(
    documents: ports.DocumentStore, request: schemas.IngestJobIn, by: str | None = None
) -> schemas.IngestJobOut:
    """Queue a bulk-ingest job (see :meth:`JobKind.enqueue`)."""
    queued = schemas.IngestJobOut(
        job_id=new_job_id(),
        status="queued",
        submitted_by=by,
        format=request.format,
        sources=len(request.paths),
        submitted_at=utc_now(),
    )
    return await INGEST.enqueue(documents, request, queued)


async def enqueue_export(
    documents: ports.DocumentStore, request: ExportRequest, by: str | None = None
) -> ExportJob:
    """Queue a FHIR Bulk Data export of a care team (see :meth:`JobKind.enqueue`)."""
    queued = ExportJob(
        job_id=new_job_id(),
        status="queued",
        submitted_by=by,
        care_team=request.care_team,
        submitted_at=utc_now(),
    )
    return await EXPORT.enqueue(documents, request, queued)
