"""Batch-job status, kept as documents for the API and the SDK (bulk ingest, cohort runs).

A job writes its status when it is submitted or starts, while it runs (progress) and when it
ends (``succeeded`` with its report, or ``failed`` with the error's class and message, never a
value). A job id sorts by start time (``YYYYmmddTHHMMSSZ-<8 hex>``), so the API lists jobs oldest
first with keyset pages.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel

from twin import errors, ports, schemas

__all__ = [
    "COHORT",
    "COHORT_REQUESTS",
    "COHORT_RESULTS",
    "INGEST",
    "JobKind",
    "cohort_request",
    "enqueue_cohort",
    "new_job_id",
    "submitted",
    "utc_now",
]

M = TypeVar("M", bound=BaseModel)

#: Collection of a cohort run's result pages (``<job_id>.<page:06d>``).
COHORT_RESULTS = "cohort_result"
#: Collection of submitted cohort runs' requests (the job runner reads them).
COHORT_REQUESTS = "cohort_request"


def new_job_id(now: datetime | None = None) -> str:
    """A job id that sorts by start time."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def utc_now() -> str:
    """Now, UTC, ISO 8601 (the jobs' timestamps)."""
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class JobKind(Generic[M]):
    """One kind of job: the collection its status documents live in and their wire model."""

    collection: str
    model: type[M]

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
        found = await documents.get(self.collection, job_id)
        if found is None:
            raise errors.NotFoundError(f"no such job in {self.collection}")
        return self.load(found)

    async def page(
        self, documents: ports.DocumentStore, *, after: str | None, limit: int
    ) -> tuple[list[M], str | None]:
        """Jobs after ``after`` in id (start-time) order, and the ``after`` of the next page."""
        found = await documents.list(self.collection, after=after, limit=limit)
        return [self.load(d) for d in found], found[-1].doc_id if len(found) == limit else None


INGEST = JobKind("ingest_job", schemas.IngestJobOut)
COHORT = JobKind("cohort_run", schemas.CohortRunOut)


def submitted(run: schemas.CohortRunIn, job_id: str) -> schemas.CohortRunOut:
    """The status document of a run just submitted."""
    selection = "filter" if run.filter else "pseudonyms" if run.pseudonyms else "synthetic"
    return schemas.CohortRunOut(
        job_id=job_id,
        status="queued",
        selection=selection,
        scenarios=[s.name for s in run.scenarios],
        weeks=run.weeks,
        seed=run.seed,
        submitted_at=utc_now(),
    )


async def enqueue_cohort(
    documents: ports.DocumentStore, run: schemas.CohortRunIn
) -> schemas.CohortRunOut:
    """Queue a cohort run durably: the request, then its ``queued`` status (the runner's cue).

    Once this returns the submission survives any restart: the job runner picks queued runs
    up in id order.
    """
    status = submitted(run, new_job_id())
    body = run.model_dump_json().encode()
    await documents.put(ports.Document(COHORT_REQUESTS, status.job_id, None, body, time.time()))
    await COHORT.save(documents, status)
    return status


async def cohort_request(documents: ports.DocumentStore, job_id: str) -> schemas.CohortRunIn:
    """The request of a submitted run.

    Raises:
        NotFoundError: No such submission.
    """
    found = await documents.get(COHORT_REQUESTS, job_id)
    if found is None:
        raise errors.NotFoundError("no such cohort run request")
    return schemas.CohortRunIn.model_validate_json(found.body)
