"""The researcher SDK against the real app (in process): every route family, typed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from twin import errors, schemas
from twin.client import observation
from twin.domain import events as E
from twin.domain.specs import Scenario, ScenarioDose

#: Day 0 of the test patients: sixty days ago, so that their events lie in the past.
ENROLLED = datetime.now(UTC).replace(microsecond=0) - timedelta(days=60)


def at(day: float) -> datetime:
    """The instant of a test patient's twin day ``day``."""
    return ENROLLED + timedelta(days=day)


async def _patient(sdk, mrn: str, team: str = "team-1") -> str:
    return await sdk.create_patient(
        name="Grace Canary", birth_date="1970-01-02", mrn=mrn, care_team=team,
        enrolled_at=ENROLLED,
    )  # fmt: skip


async def test_sdk_round_trip_with_feed_scenarios_and_pagination(api_env):
    async with api_env.sdk("clinician", "dr-a", ("team-1",)) as sdk:
        pids = sorted([await _patient(sdk, f"M{i}") for i in range(5)])
        assert [p async for p in sdk.iter_patients("team-1", page_size=2)] == pids
        pid = pids[0]
        first = await sdk.add_observations(
            pid,
            [observation(E.Phq9(16), effective=at(0)), observation(E.Gad7(9), effective=at(0.1))],
        )
        await sdk.add_interventions(
            pid, [observation(E.Prescription("sertraline", 50), effective=at(1))]
        )
        await sdk.add_observations(pid, [observation(E.Phq9(12), effective=at(7))])
        assert first.last_seq == 2
        # The change feed replays from any event id, none twice, none missing.
        seqs = [e.seq async for e in sdk.events(pid)]
        assert seqs == [1, 2, 3, 4]
        tail = [e async for e in sdk.events(pid, after=2)]
        assert [e.seq for e in tail] == [3, 4]
        assert tail[0].payload == {"type": "prescription", "drug": "sertraline", "mg_per_day": 50.0}
        twin = await sdk.twin(pid)
        assert twin.last_seq == 4 and twin.severity_sd > 0
        fc = await sdk.forecast(pid, weeks=6)
        assert fc.weeks == [1, 2, 3, 4, 5, 6] and len(fc.quantile_levels) == 7
        report = await sdk.compare_scenarios(
            pid,
            title="dose up",
            weeks=8,
            scenarios=[
                Scenario(name="as now"),
                Scenario(
                    name="100 mg", doses=[ScenarioDose(day=0, drug="sertraline", mg_per_day=100)]
                ),
            ],
        )
        assert [f.scenario for f in report.forecasts] == ["as now", "100 mg"]
        assert report.contrasts[0].b == "100 mg" and len(report.contrasts[0].weeks) == 8
        again = await sdk.scenario_report(pid, report.report_id)
        assert again == report
        listed = [r async for r in sdk.iter_scenario_reports(pid)]
        assert [r["report_id"] for r in listed] == [report.report_id]
        found = await sdk.search_twins(min_severity=0.0)
        assert [t.patient_id for t in found] == [pid]  # only twins with data are indexed
        assert [t.patient_id for t in await sdk.search_twins(min_p_severe=0.0)] == [pid]
        with pytest.raises(errors.InvalidInputError):
            await sdk.search_twins(min_p_severe=1.5)
        with pytest.raises(errors.InvalidInputError):
            await sdk.add_observations(pid, [observation(E.Phq9(3), effective=at(2))])  # < day 7
        with pytest.raises(errors.NotFoundError):
            await sdk.twin("pt_0000")
    async with api_env.sdk("clinician", "dr-b", ("team-2",)) as other:
        assert await other.search_twins() == []  # scoped to the caller's patients
        with pytest.raises(errors.NotFoundError):
            await other.twin(pid)
    async with api_env.sdk("researcher", "r1") as researcher:
        rows = await researcher.research_twins()
        assert len(rows) == 1 and rows[0].pseudonym.startswith("rs_")
        assert pid not in rows[0].model_dump_json()
        with pytest.raises(errors.AuthorizationError):
            await researcher.twin(pid)
    async with api_env.sdk("auditor", "aud") as auditor:
        trail = [e async for e in auditor.iter_audit(page_size=7)]
        assert len(trail) > 20 and all(e.hash for e in trail)
        assert {"allowed", "denied"} <= {e.outcome for e in trail}
        verdict = await auditor.verify_audit(expected_head=trail[-1].hash)
        assert verdict.ok is False  # the head moved on: this very read was audited first
        assert (await auditor.verify_audit()).ok


async def test_rate_limit_answers_429_with_retry_after_and_the_sdk_backs_off(tmp_path):
    from tests.integration.conftest import api_settings, bearer, open_env

    async with open_env(api_settings(tmp_path, rate_limit_per_minute=3)) as env:
        headers = bearer("admin", "busy")
        statuses = [
            (await env.http.get("/v1/patients?care_team=t", headers=headers)).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        limited = await env.http.get("/v1/patients?care_team=t", headers=headers)
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.headers["content-type"] == "application/problem+json"
        # Another caller has their own budget.
        assert (
            await env.http.get("/v1/patients?care_team=t", headers=bearer("admin", "calm"))
        ).status_code == 200
        async with env.sdk("admin", "busy", attempts=1) as sdk:
            with pytest.raises(errors.RateLimitedError) as caught:
                [p async for p in sdk.iter_patients("t")]
            assert caught.value.retry_after_s >= 1


async def test_ingest_jobs_read_through_the_sdk(api_env):
    from twin.service import jobs

    running = schemas.IngestJobOut(
        job_id=jobs.new_job_id(), status="running", format="fhir-ndjson", sources=2,
        started_at="2026-11-29T05:00:00+00:00",
    )  # fmt: skip
    await jobs.INGEST.save(api_env.services.documents, running)
    report = schemas.IngestReportOut(
        records=10, appended=8, duplicates=0, quarantined=2, reasons={"x": 2}, patients=3,
        seconds=1.5,
    )  # fmt: skip
    done = running.model_copy(update={"status": "succeeded", "report": report})
    await jobs.INGEST.save(api_env.services.documents, done)
    async with api_env.sdk("researcher", "r1") as researcher:
        assert await researcher.ingest_job(running.job_id) == done
        assert [j.job_id async for j in researcher.iter_ingest_jobs(page_size=1)] == [
            running.job_id
        ]
        with pytest.raises(errors.NotFoundError):
            await researcher.ingest_job("20260101T000000Z-00000000")
    async with api_env.sdk("clinician", "dr-a", ("team-1",)) as clinician:
        with pytest.raises(errors.AuthorizationError):
            await clinician.ingest_job(running.job_id)


async def test_an_ingest_job_is_queued_only_for_sources_under_the_ingest_root(api_env):
    from twin.service import jobs

    root = api_env.services.ingest_root
    async with api_env.sdk("service", "etl") as etl:
        queued = await etl.submit_ingest_job(
            [f"{root}/day1.ndjson"], format="fhir-ndjson", origin="2024-01-01T00:00:00Z"
        )
        assert queued.status == "queued" and queued.sources == 1 and queued.started_at is None
        assert (await etl.ingest_job(queued.job_id)).status == "queued"
        request = await jobs.INGEST.request(api_env.services.documents, queued.job_id)
        assert request.paths == [f"{root}/day1.ndjson"]
        for paths in (["/etc/passwd"], ["relative.ndjson"], ["s3://other/x.csv"]):
            with pytest.raises(errors.InvalidInputError, match="under"):
                await etl.submit_ingest_job(paths, format="csv", origin="2024-01-01T00:00:00Z")
    from tests.integration.conftest import bearer

    for bad in (
        {"paths": [f"{root}/a.csv"], "format": "csv", "origin": "2024-01-01T00:00:00"},  # no UTC
        {"paths": [f"{root}/../x"], "format": "csv", "origin": "2024-01-01T00:00:00Z"},
        {"paths": [f"{root}/a.csv"], "format": "xml", "origin": "2024-01-01T00:00:00Z"},
    ):
        response = await api_env.http.post(
            "/v1/ingest/jobs", json=bad, headers=bearer("service", "etl")
        )
        assert response.status_code == 422


async def test_an_ingest_job_follows_the_fhir_bulk_data_async_pattern(api_env):
    from tests.integration.conftest import bearer
    from twin.service import jobs

    root, etl = api_env.services.ingest_root, bearer("service", "etl")
    kickoff = await api_env.http.post(
        "/v1/ingest/jobs",
        json={"paths": [f"{root}/export"], "format": "fhir-ndjson", "care_team": "team-1"},
        headers={**etl, "Prefer": "respond-async"},
    )
    assert kickoff.status_code == 202
    status_url = kickoff.headers["Content-Location"]
    job_id = kickoff.json()["job_id"]
    assert status_url == f"/v1/ingest/jobs/{job_id}/status"  # relative: no internal host
    polled = await api_env.http.get(status_url, headers=etl)
    assert polled.status_code == 202 and polled.headers["X-Progress"] == "queued"
    assert int(polled.headers["Retry-After"]) > 0
    queued = jobs.INGEST.load(await api_env.services.documents.get(jobs.INGEST.collection, job_id))
    running = queued.model_copy(
        update={"status": "running", "records_read": 40, "records_done": 10}
    )
    await jobs.INGEST.save(api_env.services.documents, running)
    polled = await api_env.http.get(status_url, headers=etl)
    assert (polled.status_code, polled.headers["X-Progress"]) == (
        202, "running: 10 of 40 records"
    )  # fmt: skip
    report = schemas.IngestReportOut(
        records=40, appended=30, duplicates=0, quarantined=10, reasons={"code 1-1: x": 10},
        patients=3, registered=3, seconds=2.0,
    )  # fmt: skip
    done = running.model_copy(update={"status": "succeeded", "report": report})
    await jobs.INGEST.save(api_env.services.documents, done)
    final = await api_env.http.get(status_url, headers=etl)
    assert final.status_code == 200 and "Retry-After" not in final.headers
    assert schemas.IngestJobOut.model_validate(final.json()).report == report
    # DELETE on the status URL cancels a job (Bulk Data's cancellation).
    other = await api_env.http.post(
        "/v1/ingest/jobs", json={"paths": [f"{root}/x.ndjson"], "format": "fhir-ndjson"},
        headers=etl,
    )  # fmt: skip
    cancelled = await api_env.http.delete(other.headers["Content-Location"], headers=etl)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert (
        await api_env.http.get(other.headers["Content-Location"], headers=etl)
    ).status_code == 200


async def test_a_patient_is_registered_with_an_enrolment_and_identifiers_one_person_each(api_env):
    mrn = ("http://clinic.example.org/mrn", "M-enrol-1")
    async with api_env.sdk("clinician", "dr-a", ("team-1",)) as sdk:
        pid = await sdk.create_patient(
            name="Enid Canary", birth_date="1975-03-04", mrn="M-enrol-1", care_team="team-1",
            enrolled_at="2024-01-15T08:00:00+01:00", identifiers=[mrn],
        )  # fmt: skip
        seen = await sdk.patient(pid)
        assert seen.enrolled_at == "2024-01-15T08:00:00+01:00"
        assert [(i.system, i.value) for i in seen.identifiers] == [mrn]
        # The identifier names one patient: a second registration with it stores nobody.
        before = [p async for p in sdk.iter_patients("team-1")]
        with pytest.raises(errors.InvalidInputError, match="identifier already names"):
            await sdk.create_patient(
                name="Other", birth_date="1980-01-01", mrn="M-2", care_team="team-1",
                identifiers=[(mrn[0], f" {mrn[1]} ")],  # the same identifier, spaced
            )  # fmt: skip
        assert [p async for p in sdk.iter_patients("team-1")] == before
        for when in ("2999-01-01T00:00:00Z", "1850-01-01T00:00:00Z", "2024-01-15T08:00:00"):
            with pytest.raises(ValueError, match="enrolled_at"):  # refused before it is sent
                await sdk.create_patient(
                    name="Late", birth_date="1980-01-01", mrn="M-3", care_team="team-1",
                    enrolled_at=when,
                )  # fmt: skip


async def test_sdk_sends_datetimes_and_reads_instants_back(api_env):
    frames = pytest.importorskip("twin.client.frames")
    async with api_env.sdk("clinician", "dr-a", ("team-1",)) as sdk:
        pid = await _patient(sdk, "M-time")
        # Three time zones; each instant lands on its twin day from the enrolment.
        tokyo, new_york = timezone(timedelta(hours=9)), timezone(timedelta(hours=-5))
        sent = [at(1.25).astimezone(tokyo), at(3.5).astimezone(new_york), at(6.75)]
        out = await sdk.add_observations(
            pid, [observation(E.Phq9(15 - i), effective=when) for i, when in enumerate(sent)]
        )
        assert [a.day for a in out.acknowledged] == [1.25, 3.5, 6.75]
        assert [a.effective for a in out.acknowledged] == sent  # the same instants, in UTC
        assert all(a.effective.utcoffset() == timedelta(0) for a in out.acknowledged)
        twin = await sdk.twin(pid)
        assert twin.as_of == at(twin.day)
        fc = await sdk.forecast(pid, weeks=2)
        assert fc.as_of == at(fc.as_of_day)
        assert fc.times == [at(fc.as_of_day + 7 * w) for w in (1, 2)]
        feed = [e async for e in sdk.events(pid)]
        assert [e.effective for e in feed] == sent and [e.day for e in feed] == [1.25, 3.5, 6.75]
        table = frames.events_frame(feed)
        assert list(table["effective"]) == sent
        assert frames.forecast_frame(fc)["time"].iloc[-1] == at(fc.as_of_day + 14)
        # The deprecated float day still works, with a warning.
        with pytest.warns(DeprecationWarning, match="effective"):
            late = observation(E.Phq9(9), day=8.0)
        acked = (await sdk.add_observations(pid, [late])).acknowledged[0]
        assert acked.day == 8.0 and acked.effective == at(8)
        with pytest.raises(errors.InvalidInputError, match="before the patient's enrolment"):
            await sdk.add_observations(pid, [observation(E.Phq9(9), effective=at(-1))])


async def test_sdk_registers_covariates_and_runs_care_scenarios(api_env):
    async with api_env.sdk("clinician", "dr-a", ("team-1",)) as sdk:
        pid = await sdk.create_patient(
            name="Grace Canary", birth_date="1970-01-02", mrn="M-cov", care_team="team-1",
            covariates=schemas.CovariatesIn(episode_weeks=60.0, prior_episodes=2),
            enrolled_at=ENROLLED,
        )  # fmt: skip
        await sdk.add_observations(pid, [observation(E.Phq9(17), effective=at(0.5))])
        assert (await sdk.twin(pid)).last_seq == 2
        report = await sdk.compare_scenarios(
            pid, title="care", weeks=8, scenarios=[Scenario(name="u", care="usual"),
                                                   Scenario(name="t", care="trial")],
        )  # fmt: skip
        assert [f.scenario for f in report.forecasts] == ["u", "t"]
        with pytest.raises(ValueError, match="age_years"):
            schemas.CovariatesIn(age_years=12.0)


async def test_a_link_under_the_ingest_root_that_leads_outside_is_refused(api_env, tmp_path):
    import os

    root = api_env.services.ingest_root
    os.makedirs(root, exist_ok=True)
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    (secret / "notes.csv").write_text("patient_id,code,value\n")
    os.symlink(secret / "notes.csv", f"{root}/linked.csv")
    os.symlink(secret, f"{root}/linked-folder")
    folder = f"{root}/batch"
    os.makedirs(folder)
    os.symlink(secret / "notes.csv", f"{folder}/inside.csv")
    # A chain: a folder link that stays under the root, into a folder with a link outside.
    chain, other = f"{root}/chain", f"{root}/other"
    os.makedirs(chain)
    os.makedirs(other)
    os.symlink(secret / "notes.csv", f"{other}/x.csv")
    os.symlink(other, f"{chain}/inner")
    async with api_env.sdk("service", "etl") as etl:
        for path in (f"{root}/linked.csv", f"{root}/linked-folder", folder, chain):
            with pytest.raises(errors.InvalidInputError, match="under"):
                await etl.submit_ingest_job([path], format="csv", origin="2024-01-01T00:00:00Z")
