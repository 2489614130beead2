"""The job runner's queue scan: pending jobs in submission order, finished history skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from twin import schemas
from twin.service import jobs
from twin.service.jobs import pending_jobs
from twin.testing import fakes

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _job(minutes_ago: float, status: str) -> schemas.IngestJobOut:
    return schemas.IngestJobOut(
        job_id=jobs.new_job_id(NOW - timedelta(minutes=minutes_ago)),
        status=status,  # type: ignore[arg-type]
        format="csv",
        sources=1,
    )


async def test_pending_jobs_come_in_order_and_old_finished_ones_are_not_rescanned():
    documents = fakes.MemoryDocumentStore()
    history = [_job(600 - i, "succeeded") for i in range(450)]  # older than the settle time
    stuck = _job(30, "running")
    recent_done = _job(5, "failed")  # finished, but within the settle time (clock skew)
    queued = [_job(2, "queued"), _job(1, "queued")]
    for job in [*history, stuck, recent_done, *queued]:
        await jobs.INGEST.save(documents, job)
    settled: dict[str, str] = {}
    first = await pending_jobs(documents, jobs.INGEST, ("queued", "running"), settled, now=NOW)
    assert [j.job_id for j in first] == [stuck.job_id] + [j.job_id for j in queued]
    assert settled[jobs.INGEST.collection] == history[-1].job_id
    # The next scan starts after the settled history and still sees every pending job.
    late = _job(0, "queued")
    await jobs.INGEST.save(documents, late)
    again = await pending_jobs(documents, jobs.INGEST, ("queued",), settled, now=NOW)
    assert [j.job_id for j in again] == [j.job_id for j in [*queued, late]]
