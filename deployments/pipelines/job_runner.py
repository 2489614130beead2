"""The job runner: one detached Ray actor per cluster that runs jobs submitted through the API.

The API only *queues* a job (:func:`twin.service.jobs.enqueue_cohort`,
:func:`~twin.service.jobs.enqueue_ingest`, :func:`~twin.service.jobs.enqueue_export`: the request
and a ``queued`` status document, durable before the 202 answer). The runner polls the status
documents in id order and runs each queued job, one at a time: cohort runs with
:func:`deployments.pipelines.cohorts.run_cohort`, bulk ingests with
:func:`deployments.pipelines.ingest.run_ingest`, FHIR exports with
:func:`deployments.pipelines.fhir_export.run_export`. Every :data:`SWEEP_S` it also deletes the
files of FHIR exports that expired, failed or were cancelled
(:func:`twin.service.fhir.sweep_exports`). A job found ``running`` when the runner (re)starts
was interrupted (so is one whose final status this runner could not write, its store
unavailable): it is run again from the start, which is safe because cohort results are
deterministic (their documents are overwritten under the same ids), ingest appends are
idempotent (the deterministic keys make a second pass all duplicates) and an export deletes its
earlier attempt's parts before it writes them again.
Each start counts in the job's ``attempts``; a job interrupted
:data:`twin.service.jobs.MAX_ATTEMPTS` times (a run that exhausts the runner's memory kills it
each time) is failed instead of started again. A job
cancelled before it starts is not started.

The actor is named (``novamind-job-runner`` in the platform's namespace) and created with
``get_if_exists``, so every API replica can ensure it without starting a second one; Ray
restarts it if its process dies.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import ray

from deployments.pipelines import cohorts, fhir_export, ingest, job_status
from deployments.stores import check_sources, ingest_root, open_documents
from twin import errors, ports, schemas
from twin.fhir_out.export import ExportJob, ExportRequest
from twin.service import jobs
from twin.service.fhir import sweep_exports
from twin.settings import TwinSettings

__all__ = ["RUNNER_NAME", "SWEEP_S", "JobRunner", "ensure_runner", "output_for"]

RUNNER_NAME = "novamind-job-runner"
_POLL_S = 1.0
#: Seconds between sweeps of expired FHIR exports' files.
SWEEP_S = 60.0
_log = logging.getLogger(__name__)


def output_for(settings: TwinSettings, folder: str, job_id: str) -> str:
    """Where a submitted job's files go: the checkpoint bucket when configured, else data_dir."""
    if settings.s3_bucket:
        return f"s3://{settings.s3_bucket}/{settings.s3_prefix}{folder}/{job_id}"
    return str(Path(settings.data_dir).resolve() / folder / job_id)


async def _refusal(
    documents: ports.DocumentStore, kind: jobs.JobKind[Any, Any], status: Any
) -> Any | None:
    """The final status of a pending job that must not start, or ``None`` to run it.

    Not started: a job whose cancellation is on record, one interrupted
    :data:`twin.service.jobs.MAX_ATTEMPTS` times (each start is counted before it runs), and one
    whose request is missing.
    """
    reason: tuple[str, str] | None = None
    if await documents.get(jobs.CANCELS, status.job_id) is not None:
        reason = ("cancelled", "cancelled")
    elif status.attempts >= jobs.MAX_ATTEMPTS:
        reason = (
            "failed",
            f"ResourceExhausted: the job runner stopped {status.attempts} times while running "
            "this job (killed, e.g. out of memory); it is not run again",
        )
    else:
        try:
            await kind.request(documents, status.job_id)
        except errors.NotFoundError:
            reason = ("failed", "NotFoundError: the job's request is missing")
        except ValueError:  # a request this version cannot read must not stall the queue
            reason = ("failed", "InvalidInputError: the job's request cannot be read")
    if reason is None:
        return None
    return status.model_copy(
        update={"status": reason[0], "finished_at": jobs.utc_now(), "error": reason[1]}
    )


async def _settle(
    documents: ports.DocumentStore, kind: jobs.JobKind[Any, Any], started: Any
) -> None:
    """Give a job the runner has left a final status if it has none (no job stays pending).

    A job can stop before its own bookkeeping ran (refused before it started, its last status
    write failed): it is then ``cancelled`` if that was requested, else ``failed``. A job this
    start queued again after a passing failure (stored ``queued`` with this start's
    ``attempts``) stays queued for the next one.
    """
    job = await kind.get(documents, started.job_id)
    if job.status in jobs.FINISHED:
        return
    if job.status == "queued" and job.attempts == started.attempts:
        return
    cancelled = await documents.get(jobs.CANCELS, started.job_id) is not None
    await kind.save(
        documents,
        job.model_copy(
            update={
                "status": "cancelled" if cancelled else "failed",
                "finished_at": jobs.utc_now(),
                "error": "cancelled" if cancelled else "the job stopped without a result",
            }
        ),
    )


class JobRunner:
    """Runs queued jobs one at a time (see the module docstring).

    The polling thread owns an event loop and one open document store for its lifetime (a poll
    is a keyset scan of the status documents, not a new connection).
    """

    def __init__(self, settings_values: dict[str, Any], *, workers: int = 2) -> None:
        self._settings = TwinSettings(**settings_values)
        self._workers = workers
        self._stop = threading.Event()
        self._resumed = False
        self._settled: dict[str, str] = {}
        self._orphans: set[str] = set()  # jobs this runner left "running" (not settled)
        self._swept: dict[str, str] = {}  # where the sweep of expired exports starts
        self._next_sweep = 0.0
        self._thread = threading.Thread(target=self._main, name="job-runner", daemon=True)
        self._thread.start()

    async def _pending(
        self, documents: ports.DocumentStore, kind: jobs.JobKind[Any, Any], resume: bool
    ) -> list[Any]:
        # Every job left "running" is resumed at start; afterwards only those this runner
        # could not settle (another process, a CLI ingest, may be running the others).
        if not resume and not self._orphans:
            return await jobs.pending_jobs(documents, kind, ("queued",), self._settled)
        found = await jobs.pending_jobs(documents, kind, ("queued", "running"), self._settled)
        return [
            job for job in found
            if resume or job.status == "queued" or job.job_id in self._orphans
        ]  # fmt: skip

    def _run_cohort(self, status: schemas.CohortRunOut, request: schemas.CohortRunIn) -> None:
        cohorts.run_cohort(
            self._settings,
            request,
            queued=status,
            output=output_for(self._settings, "cohorts", status.job_id),
            workers=self._workers,
        )

    def _run_ingest(self, status: schemas.IngestJobOut, request: schemas.IngestJobIn) -> None:
        # Again at run time: a link under the root may have changed since the job was queued.
        # A refusal is the job's failure, recorded (not left queued to be tried for ever).
        try:
            check_sources(ingest_root(self._settings), list(request.paths))
        except errors.InvalidInputError as exc:
            refused = exc

            def fail(_: schemas.IngestJobOut) -> schemas.IngestJobOut:
                raise refused

            running = status.model_copy(update={"status": "running", "started_at": jobs.utc_now()})
            job_status.tracked(jobs.INGEST, self._settings, running, fail)
        job = ingest.IngestJob(
            tuple(request.paths),
            request.format,
            request.origin,
            output_for(self._settings, "ingest", status.job_id),
            job_id=status.job_id,
            care_team=request.care_team,
            enrolled_at=request.enrolled_at,
            submitted_by=status.submitted_by,
        )
        ingest.run_ingest(self._settings, job, writers=self._workers, queued=status)

    def _run_export(self, status: ExportJob, request: ExportRequest) -> None:
        fhir_export.run_export(self._settings, request, queued=status, workers=self._workers)

    async def sweep(self, documents: ports.DocumentStore, *, force: bool = False) -> int:
        """Delete expired, failed or cancelled exports' files, at most every :data:`SWEEP_S`."""
        if not force and time.monotonic() < self._next_sweep:
            return 0
        self._next_sweep = time.monotonic() + SWEEP_S
        return await sweep_exports(documents, self._swept)

    async def poll_once(self, documents: ports.DocumentStore) -> int:
        """Run every pending job (cohort runs, ingests, exports); returns how many were run."""
        resume = not self._resumed
        runners = {
            jobs.COHORT.collection: self._run_cohort,
            jobs.INGEST.collection: self._run_ingest,
            jobs.EXPORT.collection: self._run_export,
        }
        ran = 0
        for kind in jobs.KINDS:
            run = runners[kind.collection]
            for status in await self._pending(documents, kind, resume):
                ran += 1
                refusal = await _refusal(documents, kind, status)
                if refusal is not None:
                    await kind.save(documents, refusal)
                    continue
                request = await kind.request(documents, status.job_id)
                status = status.model_copy(update={"attempts": status.attempts + 1})
                try:
                    # The job drives Ray Data and its own event loops: off this loop's thread.
                    await asyncio.to_thread(run, status, request)
                except errors.TwinError as exc:  # recorded as failed in the job's document
                    _log.warning("job %s failed: %s", status.job_id, type(exc).__name__)
                except Exception:  # a bug in one job must not stop the runner
                    _log.exception("job %s failed", status.job_id)
                try:
                    await _settle(documents, kind, status)
                except Exception:
                    # Its final status could not be written: still "running", and ours to run
                    # again once the store is back (as after a restart; see _pending).
                    self._orphans.add(status.job_id)
                    raise
                self._orphans.discard(status.job_id)
        self._resumed = True  # interrupted jobs are resumed by the first poll that completes
        return ran

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                async with open_documents(self._settings) as documents:
                    while not self._stop.is_set():
                        await self.poll_once(documents)
                        await self.sweep(documents)
                        await asyncio.sleep(_POLL_S)
            except Exception:  # the store may be briefly unavailable: reopen and go on
                _log.exception("job runner poll failed")
                await asyncio.sleep(_POLL_S)

    def alive(self) -> bool:
        """The polling thread is running."""
        return self._thread.is_alive()


def ensure_runner(settings: TwinSettings, *, workers: int = 2) -> Any:
    """The cluster's job runner actor, created when missing (call after ``ray.init``)."""
    actor = ray.remote(JobRunner).options(
        name=RUNNER_NAME,
        namespace=settings.ray_namespace,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_restarts=-1,
    )
    return actor.remote(settings.for_workers(), workers=workers)
