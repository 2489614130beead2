"""Batch-job status, kept as documents for the API and the SDK (bulk ingest, cohort runs).

A job writes its status when it is submitted or starts, while it runs (progress) and when it
ends (``succeeded`` with its report, ``failed`` with the error's class and message, never a
value, or ``cancelled``). A job id sorts by start time (``YYYYmmddTHHMMSSZ-<8 hex>``), so the API
lists jobs oldest first with keyset pages.

Limits: a caller holds at most ``jobs_per_caller`` queued or running jobs; a cancellation is a
document of its own (``job_cancel``, so that no status write can overwrite it) that the runner
reads before it starts a job and at every progress update; a job the runner was started on
:data:`MAX_ATTEMPTS` times without finishing (its process killed, out of memory) is failed
rather than run again for ever.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from deployments.bootstrap import open_documents
from twin import errors, ports, schemas
from twin.settings import TwinSettings

__all__ = [
    "CANCELS",
    "COHORT",
    "COHORT_RESULTS",
    "FINISHED",
    "INGEST",
    "KINDS",
    "MAX_ATTEMPTS",
    "MAX_SOURCE_ENTRIES",
    "PROGRESS_EVERY_S",
    "JobKind",
    "active_jobs_of",
    "admit",
    "cancel",
    "check_sources",
    "enqueue_cohort",
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

    def tracked(self, settings: TwinSettings, running: M, work: Callable[[M], M]) -> M:
        """Run ``work`` with the job's status kept: ``running``, then its result or ``failed``.

        Args:
            settings: Where the documents are.
            running: The job's status as it starts (saved first).
            work: Does the job; returns the final status from the running one.

        Raises:
            Exception: Whatever ``work`` raised, after the job was recorded as failed (the
                error's class and message only: never a value).
        """
        asyncio.run(self.save_in(settings, running, check_cancel=True))
        try:
            final = work(running)
        except Exception as exc:
            cancelled = isinstance(exc, errors.JobCancelledError)
            failed = running.model_copy(
                update={
                    "status": "cancelled" if cancelled else "failed",
                    "finished_at": utc_now(),
                    "error": f"{type(exc).__name__}: {str(exc)[:500]}",
                }
            )
            asyncio.run(self.save_in(settings, failed))
            raise
        asyncio.run(self.save_in(settings, final))
        return final

    @contextmanager
    def progress(self, settings: TwinSettings) -> Iterator[Callable[[M], None]]:
        """A function that saves the job's status, over one store opened for the whole block.

        For progress updates during a long run: opening the stores per update would connect (and
        check the schema) every few seconds. Each update first looks for a cancellation.

        Raises:
            JobCancelledError: (from the function) the job's cancellation was requested.
        """
        loop = asyncio.new_event_loop()
        stack = AsyncExitStack()

        async def save(documents: ports.DocumentStore, job: M) -> None:
            await raise_if_cancelled(documents, getattr(job, "job_id"))  # noqa: B009
            await self.save(documents, job)

        try:
            documents = loop.run_until_complete(stack.enter_async_context(open_documents(settings)))
            yield lambda job: loop.run_until_complete(save(documents, job))
        finally:
            loop.run_until_complete(stack.aclose())
            loop.close()

    async def save_in(self, settings: TwinSettings, job: M, *, check_cancel: bool = False) -> None:
        """:meth:`save` into the document store the settings name (opened for the call).

        Raises:
            JobCancelledError: ``check_cancel`` and the job's cancellation is on record.
        """
        async with open_documents(settings) as documents:
            if check_cancel:
                await raise_if_cancelled(documents, getattr(job, "job_id"))  # noqa: B009
            await self.save(documents, job)

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
#: Every kind of job, in the order the runner serves them.
KINDS: tuple[JobKind[Any, Any], ...] = (COHORT, INGEST)


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


#: Entries a folder named as a source may hold (the check walks them all).
MAX_SOURCE_ENTRIES = 100_000


def check_sources(root: str, paths: list[str]) -> None:
    """Refuse any path outside ``root`` (an API caller names files, never arbitrary ones).

    A local path is judged by where it really leads: a symbolic link under the root that points
    outside it (the path itself or a folder on the way) is outside, and a folder named as a
    source may hold no link to a folder at all (a reader would follow it) and no link to a
    file outside the root. Called when a job is queued and again when it runs (links may
    change between; what remains is a link swapped in after the run-time check, and hard
    links, which no path check can see).

    Raises:
        InvalidInputError: A path is outside the ingest root, or a folder holds more than
            :data:`MAX_SOURCE_ENTRIES` entries.
    """
    import os
    from pathlib import PurePosixPath

    def under(real: str, top: str) -> bool:
        return real == top or real.startswith(top.rstrip("/") + "/")

    def refuse() -> None:
        raise errors.InvalidInputError(f"paths: every source must be under {root}")

    seen = 0
    for path in dict.fromkeys(paths):  # each distinct path once
        if root.startswith("s3://"):
            if not path.startswith(root.rstrip("/") + "/"):
                refuse()
            continue
        if not (PurePosixPath(path).is_absolute() and PurePosixPath(path).is_relative_to(root)):
            refuse()
        top = os.path.realpath(root)
        real = os.path.realpath(path)
        if not under(real, top):
            refuse()
        if not os.path.isdir(real):
            continue
        for folder, names, files in os.walk(real):  # links are listed, never descended
            for name in (*names, *files):
                seen += 1
                if seen > MAX_SOURCE_ENTRIES:
                    raise errors.InvalidInputError(
                        f"paths: at most {MAX_SOURCE_ENTRIES} files and folders in all"
                    )
                entry = os.path.join(folder, name)
                if os.path.islink(entry) and (
                    os.path.isdir(entry) or not under(os.path.realpath(entry), top)
                ):
                    refuse()
