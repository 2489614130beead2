"""FHIR Bulk Data ``$export`` end to end: kick-off, the job runner, files, and the round trip.

Patients and their events are registered through the API; ``GET /fhir/Group/{team}/$export``
is followed through the asynchronous pattern to its manifest while the cluster's job runner (a
Ray actor, as in production) runs it; the NDJSON files are downloaded with the same token and
bulk-ingested into a fresh environment by our own ingest pipeline, whose patients must hold the
same events on the same days. Then the files' lifetime: erasure, deletion, expiry.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.api.auth import mint_token
from deployments.bootstrap import jwt_secret
from deployments.pipelines.ingest import IngestJob, run_ingest
from deployments.stores import open_audit_log, open_documents, open_event_writer
from tests.integration.conftest import ApiEnv, open_env
from twin import ports
from twin.domain import events as E
from twin.fhir_out.export import PARTS, ExportJob, ExportRequest, part_id
from twin.ingest.fhir import MODEL_DERIVED_REASON
from twin.service import jobs
from twin.service.fhir import sweep_exports
from twin.settings import TwinSettings

TEAM = "clinic-a"
ENROLLED = ["2024-01-01T09:00:00+00:00", "2024-02-10T18:30:00-05:00", "2024-03-05T00:00:00Z"]


def _headers(settings: TwinSettings, sub: str = "doc", team: str = TEAM) -> dict[str, str]:
    token = mint_token(
        jwt_secret(settings), subject=sub, role="clinician", issuer=settings.jwt_issuer,
        audience=settings.jwt_audience, care_team=(team,),
    )  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


def _events(n: int) -> list[dict[str, Any]]:
    """A course of care: questionnaires, a wearable, a drug started, changed and stopped."""
    payloads: list[tuple[float, dict[str, Any]]] = [
        (0.25, {"type": "phq9", "total": 17 + n}),
        (0.5, {"type": "gad7", "total": 11}),
        (1.0, {"type": "sleep_duration", "hours": 6.25, "wear_hours": 3.5}),
        (1.0, {"type": "steps", "count": 4200 + n, "wear_hours": 15.0}),
        (1.5, {"type": "resting_hr", "bpm": 64.5}),
        (0.0, {"type": "covariates", "episode_weeks": 8.0, "prior_episodes": 1}),
        (0.1, {"type": "care_status", "active": True, "setting": "collaborative"}),
        (2.0, {"type": "ema_affect", "rating": 5}),
        (2.5, {"type": "ln_rmssd", "value": 3.4}),
        (6.0, {"type": "therapy_session", "kind": "psychotherapy"}),
    ]
    if n != 1:  # one patient without a drug
        payloads += [
            (3.0, {"type": "prescription", "drug": "sertraline", "mg_per_day": 50.0}),
            (4.0, {"type": "dose_taken", "drug": "sertraline", "taken": True}),
            (5.0, {"type": "dose_taken", "drug": "sertraline", "taken": False}),
            (17.0, {"type": "prescription", "drug": "sertraline", "mg_per_day": 100.0}),
        ]
    payloads += [
        (7.0, {"type": "phq9", "total": 14, "items": [2, 2, 2, 2, 2, 1, 1, 1, 1]}),
        (7.1, {"type": "phq9_item9", "answer": 1}),
        (14.0, {"type": "phq9", "total": 12 - n}),
        (21.0, {"type": "phq9", "total": 10}),
    ]
    if n == 2:
        payloads.append((30.0, {"type": "prescription", "drug": "sertraline", "mg_per_day": 0.0}))
    payloads.sort(key=lambda p: p[0])
    return [
        {"idempotency_key": f"e{i}", "day": day, "payload": payload}
        for i, (day, payload) in enumerate(payloads)
    ]


def _kind(item: dict[str, Any]) -> str:
    interventions = {"prescription", "dose_taken", "therapy_session", "care_status"}
    return "interventions" if item["payload"]["type"] in interventions else "observations"


async def _post_in_time_order(env: ApiEnv, settings: TwinSettings) -> dict[str, str]:
    """Register, then append each patient's events in one time-ordered stream (both routes)."""
    out = {}
    for n, enrolled in enumerate(ENROLLED):
        mrn = f"MRN-{n}"
        body = {
            "name": f"Patient {n}", "birth_date": f"198{n}-0{n + 1}-1{n}", "mrn": mrn,
            "care_team": TEAM, "enrolled_at": enrolled,
            "identifiers": [{"system": "urn:hospital:mrn", "value": mrn}],
        }  # fmt: skip
        created = await env.http.post("/v1/patients", json=body, headers=_headers(settings))
        assert created.status_code == 201, created.text
        pid = created.json()["patient_id"]
        for item in _events(n):  # one at a time: the log refuses an event older than its newest
            sent = await env.http.post(
                f"/v1/patients/{pid}/{_kind(item)}", json={"items": [item]},
                headers=_headers(settings),
            )  # fmt: skip
            assert sent.status_code == 200, sent.text
        out[mrn] = pid
    other = {"name": "Elsewhere", "birth_date": "1970-01-01", "mrn": "X", "care_team": "clinic-b"}
    response = await env.http.post(
        "/v1/patients", json=other, headers=_headers(settings, team="clinic-b")
    )
    assert response.status_code == 201
    return out


def _comparable(log: list[tuple[float, E.Payload]]) -> list[tuple[float, E.Payload]]:
    """A log in the form an export comes back in: dose changes as stop + start, covariates split.

    A dose change comes back as a stop and a start at the same instant (the MedicationStatement
    of the old dose ends where the new one starts); covariates one per event (each its own
    resource: a Condition, an Observation).
    """
    out: list[tuple[float, E.Payload]] = []
    given: dict[str, float] = {}
    for day, payload in log:
        if isinstance(payload, E.Prescription):
            if given.get(payload.drug, 0.0) > 0 and payload.mg_per_day > 0:
                out.append((day, E.Prescription(payload.drug, 0.0)))
            given[payload.drug] = payload.mg_per_day
        if isinstance(payload, E.Covariates):
            fields = ("episode_weeks", "prior_episodes", "anxiety_comorbid", "age_years")
            out += [
                (day, E.Covariates(**{name: getattr(payload, name)}))
                for name in fields
                if getattr(payload, name) is not None
            ]
            continue
        out.append((day, payload))
    return out


def _in_order(log: list[tuple[float, E.Payload]]) -> list[tuple[float, E.Payload]]:
    def key(item: tuple[float, E.Payload]) -> tuple[float, bool, str]:
        day, payload = item
        stop = isinstance(payload, E.Prescription) and payload.mg_per_day == 0
        return round(day, 6), not stop, repr(payload)

    return sorted(log, key=key)


async def _logs_by_mrn(settings: TwinSettings) -> dict[str, list[tuple[float, E.Payload]]]:
    async with open_event_writer(settings) as (events, registry):
        pids = await registry.list_for_team(TEAM, limit=100)
        return {
            (await registry.identifiers(pid)).mrn: [
                (e.day, e.payload) for e in await events.read(pid)
            ]
            for pid in pids
        }


async def _poll(env: ApiEnv, url: str, headers: dict[str, str], timeout_s: float) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await env.http.get(url, headers=headers)
        if response.status_code != 202:
            return response
        assert response.headers["retry-after"] == "5"
        assert response.headers["x-progress"].split(":")[0] in ("queued", "running")
        assert time.monotonic() < deadline, response.headers["x-progress"]
        await asyncio.sleep(0.5)


@pytest.fixture
def runner(ray_cluster: None, settings: TwinSettings) -> Iterator[None]:
    import ray

    from deployments.pipelines.job_runner import ensure_runner

    actor = ensure_runner(settings, workers=2)
    yield
    ray.kill(actor, no_restart=True)


async def _scenario(settings: TwinSettings, fresh: TwinSettings, tmp_path: Path) -> None:
    async with open_env(settings) as env:
        pids = await _post_in_time_order(env, settings)
        headers = _headers(settings)
        kickoff = await env.http.get(
            f"/fhir/Group/{TEAM}/$export",
            headers={**headers, "Prefer": "respond-async", "Accept": "application/fhir+json"},
        )
        assert kickoff.status_code == 202, kickoff.text
        status_url = kickoff.headers["content-location"]
        done = await _poll(env, status_url, headers, timeout_s=240)
        assert done.status_code == 200, done.text
        assert done.headers["content-type"] == "application/json"
        assert "expires" in done.headers
        manifest = done.json()
        assert manifest["requiresAccessToken"] is True and manifest["error"] == []
        assert manifest["request"] == f"http://novamind/fhir/Group/{TEAM}/$export"
        assert datetime.fromisoformat(manifest["transactionTime"]) <= datetime.now(UTC)
        counts = {out["type"]: out["count"] for out in manifest["output"]}
        assert counts["Patient"] == 3  # the other team's patient is not in the Group
        assert counts["RiskAssessment"] == 3
        assert counts["MedicationStatement"] == 4  # two patients: a dose and its change each
        assert counts["Procedure"] == 3 and counts["Condition"] == 3
        # Every file, with the same token; its lines are the resources it counts.
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        for out in manifest["output"]:
            assert (await env.http.get(out["url"])).status_code == 401
            other = _headers(settings, sub="someone-else")
            assert (await env.http.get(out["url"], headers=other)).status_code == 404
            response = await env.http.get(out["url"], headers=headers)
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/fhir+ndjson"
            lines = response.text.splitlines()
            assert len(lines) == out["count"]
            assert {json.loads(line)["resourceType"] for line in lines} == {out["type"]}
            (inbox / f"{out['type']}.ndjson").write_text(response.text)

        # The parts at rest are sealed: no name, MRN or birth date in the stored bodies.
        async with open_documents(settings) as documents:
            stored = await documents.list(PARTS, limit=1000)
        assert stored and all(doc.body.startswith(b"NMS1") for doc in stored)
        for secret in (b"Patient 0", b"MRN-1", b"1982-03-12", b"44261-6"):
            assert all(secret not in doc.body for doc in stored)
        # Every exported patient's read is audited under the export; every download too.
        async with open_audit_log(settings) as audit:
            entries = [e.record for e in await audit.entries()]
        job_id = status_url.rsplit("/", 1)[1]
        read = {r.patient_id for r in entries if r.action == "fhir.export.read"}
        assert read == set(pids.values())
        assert all(r.request_id == job_id for r in entries if r.action == "fhir.export.read")
        assert sum(r.action == "fhir.export.file.disclose" for r in entries) == len(counts)

        # The round trip: our own bulk ingest into a fresh environment.
        report = await asyncio.to_thread(
            run_ingest,
            fresh,
            IngestJob((str(inbox),), "fhir-ndjson", None, str(tmp_path / "ingest"),
                      care_team=TEAM),
        )  # fmt: skip
        assert report.registered == 3
        # Only the twin's own output is refused: 3 severity Observations, 3 risk assessments.
        assert report.reasons == {MODEL_DERIVED_REASON: 6}
        before = await _logs_by_mrn(settings)
        after = await _logs_by_mrn(fresh)
        assert set(after) == set(before) == set(pids)
        for mrn, log in before.items():
            # In time order; events of one instant in ingest's order (a drug's stop first, the
            # rest by their keys), which is not the order the API received them in.
            want, got = _in_order(_comparable(log)), _in_order(after[mrn])
            assert [p for _, p in got] == [p for _, p in want], mrn
            assert all(abs(a - b) < 1e-9 for (a, _), (b, _) in zip(got, want, strict=True)), mrn
        async with open_event_writer(fresh) as (_, registry):
            for pid in await registry.list_for_team(TEAM, limit=10):
                enrolled = (await registry.identifiers(pid)).enrolment()
                assert enrolled is not None
                assert enrolled.isoformat() in {
                    datetime.fromisoformat(e).astimezone(UTC).isoformat() for e in ENROLLED
                }

        # Erasing a patient removes their lines from the files.
        erased = pids["MRN-0"]
        admin_token = mint_token(
            jwt_secret(settings), subject="admin", role="admin", issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )  # fmt: skip
        admin = {"Authorization": f"Bearer {admin_token}"}
        assert (await env.http.delete(f"/v1/patients/{erased}", headers=admin)).status_code == 200
        patients_url = next(o["url"] for o in manifest["output"] if o["type"] == "Patient")
        left = (await env.http.get(patients_url, headers=headers)).text.splitlines()
        assert len(left) == 2 and erased.replace("_", ".") not in "".join(left)

        # Deleted on request: the status and the files are gone, and so are the parts.
        assert (await env.http.delete(status_url, headers=headers)).status_code == 202
        assert (await env.http.get(status_url, headers=headers)).status_code == 404
        assert (await env.http.get(patients_url, headers=headers)).status_code == 404
        async with open_documents(settings) as documents:
            assert await documents.list(PARTS, limit=10) == []


def test_export_round_trips_through_bulk_ingest(runner, settings, tmp_path):
    fresh = TwinSettings(data_dir=tmp_path / "fresh", particles=200)
    asyncio.run(_scenario(settings, fresh, tmp_path))


async def _expiry(settings: TwinSettings) -> None:
    async with open_env(settings) as env:
        await _post_in_time_order(env, settings)
        headers = _headers(settings)
        kickoff = await env.http.get(
            f"/fhir/Group/{TEAM}/$export",
            params={"_type": "Patient"},
            headers={**headers, "Prefer": "respond-async"},
        )
        status_url = kickoff.headers["content-location"]
        done = await _poll(env, status_url, headers, timeout_s=240)
        assert [o["type"] for o in done.json()["output"]] == ["Patient"]
        expires = datetime.strptime(done.headers["expires"], "%a, %d %b %Y %H:%M:%S GMT")
        lifetime = expires.replace(tzinfo=UTC) - datetime.now(UTC)
        assert timedelta(hours=23) < lifetime <= timedelta(hours=24)
        async with open_documents(settings) as documents:
            assert len(await documents.list(PARTS, limit=10)) == 3
            cursor: dict[str, str] = {}
            assert await sweep_exports(documents, cursor) == 0  # not yet expired
            later = datetime.now(UTC) + timedelta(hours=25)
            assert await sweep_exports(documents, cursor, now=later) == 1
            assert await documents.list(PARTS, limit=10) == []
        assert (await env.http.get(status_url, headers=headers)).status_code == 404


def test_an_export_expires_and_its_parts_are_swept(runner, settings):
    asyncio.run(_expiry(settings))


async def _interrupted(settings: TwinSettings) -> str:
    """An export the runner was running when it stopped: ``running``, a part of it written."""
    async with open_env(settings) as env:
        await _post_in_time_order(env, settings)
    request = ExportRequest(
        care_team=TEAM, types=["Patient"], request_url="http://x/fhir", submitted_role="clinician"
    )
    async with open_documents(settings) as documents:
        queued = await jobs.enqueue_export(documents, request, "doc")
        running = queued.model_copy(update={"status": "running", "attempts": 1})
        await jobs.EXPORT.save(documents, running)
        stale = ports.Document(PARTS, part_id(queued.job_id, "Patient", 9), None, b"x", 0.0)
        await documents.put(stale)
    return queued.job_id


async def _export_job(settings: TwinSettings, job_id: str) -> ExportJob:
    async with open_documents(settings) as documents:
        job: ExportJob = await jobs.EXPORT.get(documents, job_id)
        return job


def test_an_interrupted_export_is_run_again_from_the_start(ray_cluster, settings, settle):
    import ray

    from deployments.pipelines.job_runner import ensure_runner

    job_id = asyncio.run(_interrupted(settings))
    actor = ensure_runner(settings, workers=1)  # a runner (re)starting finds it "running"
    try:
        done = settle(lambda: asyncio.run(_export_job(settings, job_id)), 240)
    finally:
        ray.kill(actor, no_restart=True)
    assert done.status == "succeeded" and done.attempts == 2
    assert [(o.type, o.count) for o in done.outputs] == [("Patient", 3)]

    async def parts() -> list[str]:
        async with open_documents(settings) as documents:
            return [d.doc_id for d in await documents.list(PARTS, limit=10)]

    # The earlier attempt's part is gone; the three written again are this attempt's.
    assert asyncio.run(parts()) == [part_id(job_id, "Patient", i) for i in range(3)]
