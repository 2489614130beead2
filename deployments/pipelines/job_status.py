"""A batch job's status, kept by the job while it runs (the queue is :mod:`twin.service.jobs`).

The queue (kinds, submission, limits, cancellation, listing) works on a document store and
lives in the application layer; what is here needs the platform: opening the document store the
settings name inside the job's process, and saving the job's status there as it starts, makes
progress and ends.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from deployments.pipelines.loop_bound import LoopBound
from deployments.stores import open_documents
from twin import errors, ports
from twin.service.jobs import MAX_ATTEMPTS, JobKind, raise_if_cancelled, utc_now
from twin.settings import TwinSettings

__all__ = ["anchor_failures", "job_error", "progress", "root_cause", "save_in", "tracked"]

M = TypeVar("M", bound=BaseModel)
#: Failures that pass: a job they stop is queued again (see :func:`tracked`).
_PASSING = (errors.StorageUnavailableError, errors.HostUnavailableError)
#: How long a job's outcome is tried again while its store is unavailable, seconds.
_FINAL_SAVE_S = 30.0


@functools.cache
def _anchor_failure_counter() -> Any:
    from ray.util import metrics  # the job's own Ray worker (a connected one only)

    # The API replicas' counter of the same name: one series counts every writer's failures.
    return metrics.Counter(
        "novamind_audit_anchor_failures",
        "Audit-chain anchors the service failed to write (retried at the next N entries)",
    )


def anchor_failures() -> Callable[[BaseException], None]:
    """What a job's audit log tells of a background anchor it failed to write: the counter.

    Outside a connected Ray worker (a test, a command) the failure is only logged, by the log.
    """

    def count(_exc: BaseException) -> None:
        import ray

        if ray.is_initialized():
            _anchor_failure_counter().inc(1.0)

    return count


def root_cause(exc: BaseException) -> BaseException:
    """The error a job's code raised, under what Ray wrapped it in on the way.

    Ray Data and Ray tasks deliver a worker's error as a ``RayTaskError`` (or Ray Data's
    ``UserCodeException``) whose cause is the error itself: retries and messages go by that.
    """
    seen: set[int] = set()
    while not isinstance(exc, errors.TwinError) and id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return exc


def job_error(exc: BaseException) -> str:
    """What a job's status says of the error that stopped it (clients read it).

    The service's own errors give their message, which names no value; any other error its
    class only: a library's message may hold data (a validation error quotes its input) or a
    worker's address and paths.
    """
    if isinstance(exc, errors.TwinError):
        return f"{type(exc).__name__}: {str(exc)[:500]}"
    return f"{type(exc).__name__} (details in the job runner's log)"


def tracked(kind: JobKind[M, Any], settings: TwinSettings, running: M, work: Callable[[M], M]) -> M:
    """Run ``work`` with the job's status kept: ``running``, then its result or ``failed``.

    A job the runner started (``attempts`` of 1 or more) that a passing failure stops (a store
    unavailable, a twin host restarting) is ``queued`` again instead, while it has attempts
    left (:data:`twin.service.jobs.MAX_ATTEMPTS`).

    Args:
        kind: The job's kind.
        settings: Where the documents are.
        running: The job's status as it starts (saved first).
        work: Does the job; returns the final status from the running one.

    Raises:
        Exception: Whatever ``work`` raised, after the job was recorded as failed (the
            error's class and message only: never a value).
    """
    if "error" in type(running).model_fields:  # a run again starts without the last error
        running = running.model_copy(update={"error": None})
    asyncio.run(save_in(kind, settings, running, check_cancel=True))
    try:
        final = work(running)
    except Exception as raised:
        exc = root_cause(raised)
        cancelled = isinstance(exc, errors.JobCancelledError)
        # A store or a host out for a moment is no reason to fail a queued job: it is queued
        # again for the runner's next attempt (ingest keys and cohort results make a second
        # pass safe), unless that was its last one.
        attempts = int(getattr(running, "attempts", 0))
        again = isinstance(exc, _PASSING) and 1 <= attempts < MAX_ATTEMPTS
        error = job_error(exc)
        update: dict[str, object] = {"status": "queued", "error": f"{error}; queued again"}
        if not again:
            update = {
                "status": "cancelled" if cancelled else "failed",
                "finished_at": utc_now(),
                "error": error,
            }
        _save_final(kind, settings, running.model_copy(update=update))
        raise
    _save_final(kind, settings, final)
    return final


def _save_final(kind: JobKind[M, Any], settings: TwinSettings, job: M) -> None:
    """Save a job's outcome, trying again for a while if its store is out for a moment.

    The outcome of work that is done must not be lost to a blip of the document store (a job
    left ``running`` is run again, and a finished ingest would then refuse its own report).
    tenacity, as in the SDK, rather than a hand-written retry loop.

    Raises:
        StorageUnavailableError: The store stayed unavailable (about half a minute).
    """
    for attempt in Retrying(
        retry=retry_if_exception_type(errors.StorageUnavailableError),
        wait=wait_exponential(multiplier=0.5, max=8.0),
        stop=stop_after_delay(_FINAL_SAVE_S),
        reraise=True,
    ):
        with attempt:
            asyncio.run(save_in(kind, settings, job))


@contextmanager
def progress(kind: JobKind[M, Any], settings: TwinSettings) -> Iterator[Callable[[M], None]]:
    """A function that saves the job's status, over one store opened for the whole block.

    For progress updates during a long run: opening the stores per update would connect (and
    check the schema) every few seconds. Each update first looks for a cancellation.

    Raises:
        JobCancelledError: (from the function) the job's cancellation was requested.
    """

    async def save(documents: ports.DocumentStore, job: M) -> None:
        await raise_if_cancelled(documents, getattr(job, "job_id"))  # noqa: B009
        await kind.save(documents, job)

    with LoopBound(open_documents(settings)) as stores:
        yield lambda job: stores.run(save(stores.value, job))


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
