"""Limits per caller: unfinished jobs, run budgets, open event streams; cancellation; re-checks.

One researcher cannot stall the single job runner (a job limit per caller, a budget per run, a
job interrupted twice is not run again), one clinician cannot fill every replica with event
streams, and an open stream ends when its caller's access does. Request budgets hold over HTTP
while their shared store (Redis) goes down and comes back.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis

from deployments.api.auth import mint_token
from deployments.api.limiter import SHARED_RETRY_S
from deployments.asgi import build_app
from deployments.pipelines import job_status
from deployments.pipelines.job_runner import _refusal, _settle
from tests.integration.conftest import AUDIENCE, ISSUER, SECRET, api_settings, bearer, open_env
from tests.servers import RedisServer, UvicornServer
from twin import errors, ports, schemas
from twin.service import jobs
from twin.testing import fakes

RUN = {"synthetic": {"n_patients": 2, "days": 0}, "scenarios": [{}], "weeks": 1}
NEW = {"name": "Limit Canary", "birth_date": "1980-02-02", "mrn": "LM-1", "care_team": "team-1"}


async def test_a_caller_holds_a_bounded_number_of_jobs_sees_and_cancels_only_its_own(tmp_path):
    async with open_env(api_settings(tmp_path, jobs_per_caller=2)) as env:
        http, a, b = env.http, bearer("researcher", "res-a"), bearer("researcher", "res-b")
        first = (await http.post("/v1/cohorts/runs", json=RUN, headers=a)).json()
        assert (await http.post("/v1/cohorts/runs", json=RUN, headers=a)).status_code == 202
        over = await http.post("/v1/cohorts/runs", json=RUN, headers=a)
        assert over.status_code == 429 and int(over.headers["Retry-After"]) > 0
        assert "at most 2 queued or running jobs" in over.json()["detail"]
        b_run = await http.post("/v1/cohorts/runs", json=RUN, headers=b)
        assert b_run.status_code == 202
        # Researchers see their own runs; admins see every run.
        assert (await http.get(f"/v1/cohorts/runs/{first['job_id']}", headers=b)).status_code == 404
        mine = (await http.get("/v1/cohorts/runs", headers=b)).json()["items"]
        assert [r["submitted_by"] for r in mine] == ["res-b"]
        every = (await http.get("/v1/cohorts/runs", headers=bearer("admin", "adm"))).json()
        assert len(every["items"]) == 3
        # Only the submitter (or an admin) cancels; a queued run is cancelled at once.
        path = f"/v1/cohorts/runs/{first['job_id']}/cancel"
        assert (await http.post(path, headers=b)).status_code == 404
        cancelled = await http.post(path, headers=a)
        assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
        assert await env.services.documents.get(jobs.CANCELS, first["job_id"]) is not None
        assert (await http.post("/v1/cohorts/runs", json=RUN, headers=a)).status_code == 202
        # The SDK names the limit and does not retry into it; it cancels a run of its caller.
        async with env.sdk("researcher", "res-b") as sdk:
            await sdk.submit_cohort_run(schemas.CohortRunIn.model_validate(RUN))
            with pytest.raises(errors.ConcurrencyLimitError, match="at most 2 queued"):
                await sdk.submit_cohort_run(schemas.CohortRunIn.model_validate(RUN))
            cancelled_b = await sdk.cancel_cohort_run(b_run.json()["job_id"])
            assert cancelled_b.status == "cancelled"


async def test_runs_over_the_budget_are_refused_before_anything_is_queued(tmp_path):
    async with open_env(api_settings(tmp_path)) as env:
        researcher = bearer("researcher", "res")
        huge = {**RUN, "synthetic": {"n_patients": 2_000_000, "days": 3650}, "particles": 20000}
        response = await env.http.post("/v1/cohorts/runs", json=huge, headers=researcher)
        assert response.status_code == 422 and "particle-days" in response.json()["detail"]
        wide = {"filter": {"limit": 1_000_000}, "scenarios": [{"name": f"s{i}"} for i in range(8)]}
        response = await env.http.post("/v1/cohorts/runs", json=wide, headers=researcher)
        assert response.status_code == 422
        assert await env.services.documents.list(jobs.COHORT.collection, limit=10) == []


def _run(status: str, attempts: int) -> schemas.CohortRunOut:
    return schemas.CohortRunOut(
        job_id=jobs.new_job_id(), status=status, selection="synthetic",  # type: ignore[arg-type]
        scenarios=["a"], weeks=1, seed=0, submitted_at=jobs.utc_now(), attempts=attempts,
    )  # fmt: skip


async def test_the_runner_does_not_restart_a_job_that_killed_it_twice_nor_a_cancelled_one():
    documents = fakes.MemoryDocumentStore()
    request = schemas.CohortRunIn.model_validate(RUN)
    for job in (
        killed := _run("running", 2),
        again := _run("running", 1),
        gone := _run("queued", 0),
    ):
        await jobs.COHORT.enqueue(documents, request, job)
    refused = await _refusal(documents, jobs.COHORT, killed)
    assert refused.status == "failed" and refused.error.startswith("ResourceExhausted")
    assert await _refusal(documents, jobs.COHORT, again) is None  # interrupted once: re-run
    await jobs.cancel(documents, jobs.COHORT, gone.job_id, "res")
    assert (await _refusal(documents, jobs.COHORT, gone)).status == "cancelled"


def test_a_running_job_stops_at_its_next_progress_update_once_cancelled(tmp_path):
    settings = api_settings(tmp_path)
    running = _run("running", 1)
    steps: list[int] = []

    def work(status: schemas.CohortRunOut) -> schemas.CohortRunOut:
        with job_status.progress(jobs.COHORT, settings) as save:
            for step in range(100):
                if step == 3:  # the API's cancellation, written apart from the status
                    asyncio.run(_put_cancel(settings, running.job_id))
                save(status.model_copy(update={"patients_done": step}))
                steps.append(step)
        return status.model_copy(update={"status": "succeeded"})

    with pytest.raises(errors.JobCancelledError):
        job_status.tracked(jobs.COHORT, settings, running, work)
    assert steps == [0, 1, 2]
    final = asyncio.run(_status(settings, running.job_id))
    assert final.status == "cancelled" and final.finished_at is not None


@pytest.mark.parametrize(
    ("attempts", "failure", "expected"),
    [(1, errors.StorageUnavailableError("PostgreSQL unavailable"), "queued"),
     (1, errors.HostUnavailableError("restarting"), "queued"),
     (2, errors.StorageUnavailableError("PostgreSQL unavailable"), "failed"),  # its last
     (0, errors.StorageUnavailableError("PostgreSQL unavailable"), "failed"),  # not queued
     (1, errors.InvalidInputError("bad file"), "failed")],  # does not pass by trying again
)  # fmt: skip
def test_a_job_a_passing_failure_stopped_is_queued_again_while_it_has_attempts(
    tmp_path, attempts, failure, expected
):
    settings = api_settings(tmp_path)
    running = _run("running", attempts)

    def work(status: schemas.CohortRunOut) -> schemas.CohortRunOut:
        raise failure

    with pytest.raises(type(failure)):
        job_status.tracked(jobs.COHORT, settings, running, work)
    after = asyncio.run(_status(settings, running.job_id))
    assert after.status == expected and after.attempts == attempts
    assert (after.finished_at is None) is (expected == "queued")
    assert after.error is not None and type(failure).__name__ in after.error


async def _put_cancel(settings, job_id: str) -> None:
    from deployments.stores import open_documents

    async with open_documents(settings) as documents:
        await documents.put(ports.Document(jobs.CANCELS, job_id, None, b"{}", time.time()))


async def _status(settings, job_id: str) -> schemas.CohortRunOut:
    from deployments.stores import open_documents

    async with open_documents(settings) as documents:
        return await jobs.COHORT.get(documents, job_id)


def _token(sub: str, team: tuple[str, ...], ttl_s: int = 3600) -> dict[str, str]:
    token = mint_token(
        SECRET, subject=sub, role="clinician", issuer=ISSUER, audience=AUDIENCE,
        care_team=team, ttl_s=ttl_s,
    )  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


async def _patient(env) -> str:
    created = await env.http.post("/v1/patients", json=NEW, headers=bearer("admin", "adm"))
    return str(created.json()["patient_id"])


async def test_a_caller_holds_a_bounded_number_of_open_streams(tmp_path):
    async with open_env(api_settings(tmp_path, streams_per_caller=1)) as env:
        pid = await _patient(env)
        me = _token("dr-a", ("team-1",))
        feed = f"/v1/patients/{pid}/events?follow=true&max_s=2"
        first = asyncio.create_task(env.http.get(feed, headers=me))
        await asyncio.sleep(0.5)
        second = await env.http.get(feed, headers=me)
        assert second.status_code == 429, second.text
        other = await env.http.get(
            f"/v1/patients/{pid}/events", headers=_token("dr-b", ("team-1",))
        )
        assert other.status_code == 200  # another caller has its own streams
        assert (await first).status_code == 200
        assert env.services.open_streams == {}  # the slot came back when the stream ended
        assert (
            await env.http.get(feed.replace("max_s=2", "max_s=0.5"), headers=me)
        ).status_code == 200


async def test_an_open_stream_ends_when_the_token_expires_or_access_is_withdrawn(tmp_path):
    async with open_env(api_settings(tmp_path, stream_recheck_s=0.5)) as env:
        pid = await _patient(env)
        feed = f"/v1/patients/{pid}/events?follow=true&max_s=60"
        started = time.monotonic()
        response = await env.http.get(feed, headers=_token("dr-a", ("team-1",), ttl_s=2))
        assert response.status_code == 200 and time.monotonic() - started < 10
        # Emergency access, then the patient is erased: the stream's next re-check ends it.
        other = _token("dr-x", ("team-9",))
        grant = {"reason": "emergency department, unconscious", "minutes": 5}
        assert (
            await env.http.post(f"/v1/patients/{pid}/break-glass", json=grant, headers=other)
        ).status_code == 201
        started = time.monotonic()
        stream = asyncio.create_task(env.http.get(feed, headers=other))
        await asyncio.sleep(1.0)
        assert not stream.done()
        erased = await env.http.delete(f"/v1/patients/{pid}", headers=bearer("admin", "adm"))
        assert erased.status_code == 200
        assert (await stream).status_code == 200 and time.monotonic() - started < 10
        actions = [e.record.action for e in await env.services.audit.entries()]
        assert "events.follow" in actions  # every re-check is audited


PER_MINUTE = 3


def _fallbacks(http: httpx.Client) -> float:
    """``novamind_rate_limit_fallbacks_total`` as the server exports it."""
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("novamind_rate_limit_fallbacks_total "):
            return float(line.split()[1])
    raise AssertionError("no rate-limit fallback metric")


def _spend(http: httpx.Client, pid: str, subject: str) -> list[httpx.Response]:
    """One more request than a clinician's budget allows, all reads of one patient."""
    me = bearer("clinician", subject, ("team-1",))
    return [http.get(f"/v1/patients/{pid}", headers=me) for _ in range(PER_MINUTE + 1)]


def _limited(responses: list[httpx.Response]) -> None:
    """Served up to the budget, then 429 problem+json with a Retry-After within the window."""
    assert [r.status_code for r in responses] == [200] * PER_MINUTE + [429]
    refused = responses[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


@pytest.mark.integration
def test_request_budgets_fall_back_to_the_replica_while_redis_is_down_over_http(tmp_path):
    store = RedisServer()
    store.start()
    settings = api_settings(tmp_path, redis_url=store.url, rate_limit_per_minute=PER_MINUTE)
    server = UvicornServer(build_app(settings))
    server.start()
    try:
        with (
            httpx.Client(base_url=server.url, timeout=10.0) as http,
            redis.Redis.from_url(store.url, socket_timeout=5.0) as shared,
        ):
            created = http.post("/v1/patients", json=NEW, headers=bearer("admin", "adm"))
            pid = created.json()["patient_id"]

            # Redis up: the budget is the shared one, kept in Redis.
            _limited(_spend(http, pid, "dr-a"))
            assert shared.keys("*dr-a*") and _fallbacks(http) == 0

            # Redis down: still served, never a 500, and each caller still limited, on the
            # replica's own budget; every such request is counted.
            store.stop()
            _limited(_spend(http, pid, "dr-b"))
            assert _fallbacks(http) == PER_MINUTE + 1
            # Clinical ingest goes on (the change feed on Redis is best effort too).
            me = bearer("clinician", "dr-ingest", ("team-1",))
            item = {"idempotency_key": "k1", "day": 0.5, "loinc": {"code": "70274-6", "value": 9}}
            ingested = http.post(
                f"/v1/patients/{pid}/observations", json={"items": [item]}, headers=me
            )
            assert ingested.status_code == 200, ingested.text

            # Redis back: once the limiter tries it again, the shared budget is used again.
            store.start()
            time.sleep(SHARED_RETRY_S)
            counted = _fallbacks(http)
            _limited(_spend(http, pid, "dr-c"))
            assert shared.keys("*dr-c*") and _fallbacks(http) == counted

            # Redis hanging (no answer at all): one request waits out the 1 s socket timeout,
            # the others go straight to the local budget rather than each waiting too.
            store.pause()
            started = time.monotonic()
            _limited(_spend(http, pid, "dr-d"))
            assert time.monotonic() - started < 1.0 + 1.5
            assert _fallbacks(http) == counted + PER_MINUTE + 1
            store.resume()
    finally:
        server.stop()
        store.stop()


async def test_the_runner_leaves_queued_only_a_job_this_start_queued_again():
    documents = fakes.MemoryDocumentStore()
    request = schemas.CohortRunIn.model_validate(RUN)
    requeued, never_started = _run("queued", 1), _run("queued", 0)
    for job in (requeued, never_started):
        await jobs.COHORT.enqueue(documents, request, job)
    # This start was attempt 1: the first job was queued again by it, the second failed
    # before it was ever marked running (it would otherwise be run again every poll).
    await _settle(documents, jobs.COHORT, requeued.model_copy(update={"attempts": 1}))
    await _settle(documents, jobs.COHORT, never_started.model_copy(update={"attempts": 1}))
    assert (await jobs.COHORT.get(documents, requeued.job_id)).status == "queued"
    failed = await jobs.COHORT.get(documents, never_started.job_id)
    assert failed.status == "failed" and failed.finished_at is not None


class _RayWrappedError(Exception):
    """What a Ray task's error looks like on the driver: the error itself as ``cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"ray::map_batches() (pid=1234, ip=10.0.0.7) failed: {cause!r}")
        self.cause = cause


@pytest.mark.parametrize(
    ("failure", "expected", "shown"),
    [(_RayWrappedError(errors.StorageUnavailableError("PostgreSQL unavailable")), "queued",
      "StorageUnavailableError: PostgreSQL unavailable"),
     (_RayWrappedError(ValueError("input_value='Ada Canary'")), "failed", "ValueError (details")],
)  # fmt: skip
def test_a_job_is_judged_by_the_error_under_rays_wrapping_and_shows_no_data(
    tmp_path, failure, expected, shown
):
    settings = api_settings(tmp_path)
    running = _run("running", 1)

    def work(status: schemas.CohortRunOut) -> schemas.CohortRunOut:
        raise failure

    with pytest.raises(_RayWrappedError):
        job_status.tracked(jobs.COHORT, settings, running, work)
    after = asyncio.run(_status(settings, running.job_id))
    assert after.status == expected and after.error is not None
    assert after.error.startswith(shown)
    assert "Ada" not in after.error and "10.0.0.7" not in after.error
