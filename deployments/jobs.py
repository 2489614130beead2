"""Batch jobs where they run: their status kept while they work (the queue is twin.service.jobs).

The queue itself (kinds, submission, limits, cancellation, listing) works on a document store
and lives in :mod:`twin.service.jobs`, re-exported here for the runner's modules. What needs the
platform is here: opening the document store named by the settings inside a job's process, and
the checks of an ingest job's source paths against the ingest root (local or S3).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel

from deployments.bootstrap import open_documents
from twin import errors, ports
from twin.service.jobs import (
    CANCELS,
    COHORT,
    COHORT_RESULTS,
    FINISHED,
    INGEST,
    KINDS,
    MAX_ATTEMPTS,
    PROGRESS_EVERY_S,
    JobKind,
    active_jobs_of,
    admit,
    cancel,
    enqueue_cohort,
    enqueue_ingest,
    new_job_id,
    pending_jobs,
    raise_if_cancelled,
    submitted,
    utc_now,
)
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
    "progress",
    "raise_if_cancelled",
    "save_in",
    "submitted",
    "tracked",
    "utc_now",
]

M = TypeVar("M", bound=BaseModel)


def tracked(kind: JobKind[M, Any], settings: TwinSettings, running: M, work: Callable[[M], M]) -> M:
    """Run ``work`` with the job's status kept: ``running``, then its result or ``failed``.

    Args:
        kind: The job's kind.
        settings: Where the documents are.
        running: The job's status as it starts (saved first).
        work: Does the job; returns the final status from the running one.

    Raises:
        Exception: Whatever ``work`` raised, after the job was recorded as failed (the
            error's class and message only: never a value).
    """
    asyncio.run(save_in(kind, settings, running, check_cancel=True))
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
        asyncio.run(save_in(kind, settings, failed))
        raise
    asyncio.run(save_in(kind, settings, final))
    return final


@contextmanager
def progress(kind: JobKind[M, Any], settings: TwinSettings) -> Iterator[Callable[[M], None]]:
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
        await kind.save(documents, job)

    try:
        documents = loop.run_until_complete(stack.enter_async_context(open_documents(settings)))
        yield lambda job: loop.run_until_complete(save(documents, job))
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


async def save_in(
    kind: JobKind[M, Any], settings: TwinSettings, job: M, *, check_cancel: bool = False
) -> None:
    """:meth:`JobKind.save` into the document store the settings name (opened for the call).

    Raises:
        JobCancelledError: ``check_cancel`` and the job's cancellation is on record.
    """
    async with open_documents(settings) as documents:
        if check_cancel:
            await raise_if_cancelled(documents, getattr(job, "job_id"))  # noqa: B009
        await kind.save(documents, job)


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
