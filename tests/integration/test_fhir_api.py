"""FHIR over HTTP: metadata, reads and searches, scope and audit, OperationOutcomes, kick-offs.

The app, its stores and a twin host are the real ones (``conftest.open_env``). An export's run
needs the job runner on Ray: ``tests/ray/test_fhir_export.py`` follows it to its files.
"""

from __future__ import annotations

from typing import Any

import httpx
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient

from tests.integration.conftest import ApiEnv, bearer
from twin.domain.audit import verify_chain

FHIR_JSON = "application/fhir+json"
TEAM = "t1"
DOC = bearer("clinician", "doc", (TEAM,))
OTHER = bearer("clinician", "other-doc", ("t2",))


async def _patient(env: ApiEnv, phq9: list[int], *, team: str = TEAM) -> tuple[str, str]:
    body = {
        "name": "Ann Lee", "birth_date": "1980-02-03", "mrn": "M1", "care_team": team,
        "enrolled_at": "2024-01-01T09:00:00Z",
        "identifiers": [{"system": "urn:mrn", "value": f"M-{len(phq9)}-{team}"}],
    }  # fmt: skip
    headers = bearer("clinician", "doc", (team,))
    created = await env.http.post("/v1/patients", json=body, headers=headers)
    assert created.status_code == 201, created.text
    pid = created.json()["patient_id"]
    if phq9:
        items = [
            {"idempotency_key": f"k{i}", "day": 7.0 * i, "payload": {"type": "phq9", "total": t}}
            for i, t in enumerate(phq9)
        ]
        sent = await env.http.post(
            f"/v1/patients/{pid}/observations", json={"items": items}, headers=headers
        )
        assert sent.status_code == 200, sent.text
    return pid, pid.replace("_", ".")


def _outcome(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == FHIR_JSON
    body = response.json()
    OperationOutcome.model_validate(body)
    return body["issue"][0]


async def test_metadata_is_public_and_a_capability_statement(api_env):
    response = await api_env.http.get("/fhir/metadata")
    assert response.status_code == 200 and response.headers["content-type"] == FHIR_JSON
    statement = CapabilityStatement.model_validate(response.json())
    assert statement.fhirVersion == "4.0.1"
    assert statement.implementation.url == "http://novamind/fhir"


async def test_patient_read_within_scope_audited_and_refused_outside(api_env):
    pid, fid = await _patient(api_env, [14])
    response = await api_env.http.get(f"/fhir/Patient/{fid}", headers=DOC)
    assert response.status_code == 200 and response.headers["content-type"] == FHIR_JSON
    patient = Patient.model_validate(response.json())
    assert patient.id == fid and patient.birthDate.isoformat() == "1980-02-03"
    # Outside the care team: not found (existence is not revealed), as on /v1.
    issue = _outcome(await api_env.http.get(f"/fhir/Patient/{fid}", headers=OTHER), 404)
    assert issue["code"] == "not-found"
    researcher = bearer("researcher", "r1")
    issue = _outcome(await api_env.http.get(f"/fhir/Patient/{fid}", headers=researcher), 403)
    assert issue["code"] == "forbidden"
    response = await api_env.http.get(f"/fhir/Patient/{fid}")
    assert _outcome(response, 401)["code"] == "login"
    assert response.headers["www-authenticate"] == "Bearer"
    assert _outcome(await api_env.http.get("/fhir/Patient/pt.nobody", headers=DOC), 404)
    entries = await api_env.services.audit.entries()
    assert verify_chain(entries).ok
    reads = [(e.record.actor, e.record.outcome) for e in entries
             if e.record.action == "fhir.patient.read" and e.record.patient_id == pid]  # fmt: skip
    assert reads == [("doc", "allowed"), ("other-doc", "denied"), ("r1", "denied")]


async def test_observation_search_pages_the_twin_first_then_the_record(api_env):
    _, fid = await _patient(api_env, [18, 16, 15, 12, 11])
    first = await api_env.http.get(
        "/fhir/Observation", params={"subject": f"Patient/{fid}", "_count": 2}, headers=DOC
    )
    assert first.status_code == 200 and first.headers["content-type"] == FHIR_JSON
    bundle = first.json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset" and bundle["total"] == 6
    resources = [e["resource"] for e in bundle["entry"]]
    assert [r["code"]["coding"][0]["code"] for r in resources] == ["latent-severity", "44261-6"]
    assert resources[0]["meta"]["tag"][0]["code"] == "model-derived"
    assert resources[1]["effectiveDateTime"] == "2024-01-01T09:00:00Z"
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert links["next"].startswith("http://novamind/fhir/Observation?")
    seen = [r["id"] for r in resources]
    url: str | None = links["next"]
    while url is not None:
        page = (await api_env.http.get(url, headers=DOC)).json()
        seen += [e["resource"]["id"] for e in page["entry"]]
        url = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)
    assert seen == [f"{fid}-severity-5"] + [f"{fid}-{seq}" for seq in range(1, 6)]
    # The same search by the patient parameter.
    by_patient = await api_env.http.get(
        "/fhir/Observation", params={"patient": fid, "_count": 100}, headers=DOC
    )
    assert [e["resource"]["id"] for e in by_patient.json()["entry"]] == seen
    days = [e["resource"]["effectiveDateTime"] for e in by_patient.json()["entry"][1:]]
    assert days == [f"2024-01-{1 + 7 * i:02d}T09:00:00Z" for i in range(5)]


async def test_a_patient_without_events_has_no_observations_or_risks(api_env):
    _, fid = await _patient(api_env, [], team=TEAM)
    for kind in ("Observation", "RiskAssessment"):
        response = await api_env.http.get(f"/fhir/{kind}", params={"patient": fid}, headers=DOC)
        bundle = response.json()
        Bundle.model_validate(bundle)
        assert bundle["total"] == 0 and bundle["entry"] == []


async def test_risk_assessment_search(api_env):
    pid, fid = await _patient(api_env, [18, 17, 19])
    response = await api_env.http.get(
        "/fhir/RiskAssessment", params={"subject": f"http://novamind/fhir/Patient/{fid}"},
        headers=DOC,
    )  # fmt: skip
    assert response.status_code == 200 and response.headers["content-type"] == FHIR_JSON
    bundle = response.json()
    Bundle.model_validate(bundle)
    (entry,) = bundle["entry"]
    risk = entry["resource"]
    assert risk["subject"] == {"reference": f"Patient/{fid}"}
    outcomes = sorted({p["outcome"]["coding"][0]["code"] for p in risk["prediction"]})
    assert outcomes == ["deterioration", "episode", "remission", "response", "severe"]
    assert risk["basis"][0]["reference"] == f"Observation/{fid}-severity-3"
    # The same posterior as /v1: P(severe) agrees with the twin's summary.
    summary = (await api_env.http.get(f"/v1/patients/{pid}/twin", headers=DOC)).json()
    (severe,) = [p for p in risk["prediction"] if p["outcome"]["coding"][0]["code"] == "severe"]
    assert severe["probabilityDecimal"] == round(summary["p_severe"], 4)
    assert _outcome(
        await api_env.http.get("/fhir/RiskAssessment", params={"patient": fid}, headers=OTHER),
        404,
    )


async def test_bad_searches_are_400_operation_outcomes_that_echo_no_values(api_env):
    _, fid = await _patient(api_env, [10])
    for params in (
        {"subject": f"Patient/{fid}", "code": "http://loinc.org|44261-6"},  # not supported
        {},  # no patient
        {"subject": f"Group/{fid}"},
        {"subject": f"Patient/{fid}", "patient": "pt.someone-else"},
        {"subject": f"Patient/{fid}", "_count": "5000"},
        {"subject": f"Patient/{fid}", "_format": "xml"},
    ):
        response = await api_env.http.get("/fhir/Observation", params=params, headers=DOC)
        issue = _outcome(response, 400)
        assert issue["code"] == "invalid"
        assert "someone-else" not in issue.get("diagnostics", "")
        assert "44261-6" not in issue.get("diagnostics", "")
    # An unknown path under /fhir is an OperationOutcome too; /v1 keeps problem+json.
    assert _outcome(await api_env.http.get("/fhir/Encounter", headers=DOC), 404)
    v1 = await api_env.http.get("/v1/patients/pt_nobody/twin", headers=DOC)
    assert v1.headers["content-type"] == "application/problem+json"


async def test_export_kickoff_status_cancel_and_scope(api_env):
    kickoff = f"/fhir/Group/{TEAM}/$export"
    asynchronous = {**DOC, "Prefer": "respond-async", "Accept": FHIR_JSON}
    assert (
        "respond-async"
        in _outcome(await api_env.http.get(kickoff, headers=DOC), 400)["diagnostics"]
    )
    assert "_since" in _outcome(
        await api_env.http.get(kickoff, params={"_since": "2024-01-01T00:00:00Z"},
                               headers=asynchronous), 400,
    )["diagnostics"]  # fmt: skip
    assert _outcome(
        await api_env.http.get(kickoff, params={"_type": "Encounter"}, headers=asynchronous), 400
    )
    other = {**OTHER, "Prefer": "respond-async"}
    assert _outcome(await api_env.http.get(kickoff, headers=other), 403)["code"] == "forbidden"
    researcher = {**bearer("researcher", "r1"), "Prefer": "respond-async"}
    assert _outcome(await api_env.http.get(kickoff, headers=researcher), 403)

    accepted = await api_env.http.get(
        kickoff, params={"_type": "Patient,Observation"}, headers=asynchronous
    )
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.headers["content-location"]
    assert status_url.startswith("http://novamind/fhir/$export-status/")
    polled = await api_env.http.get(status_url, headers=DOC)
    assert polled.status_code == 202
    assert polled.headers["retry-after"] == "5" and polled.headers["x-progress"] == "queued"
    # Only the caller who asked follows it.
    assert _outcome(
        await api_env.http.get(status_url, headers=bearer("clinician", "x", (TEAM,))), 404
    )
    job_id = status_url.rsplit("/", 1)[1]
    file_url = f"http://novamind/fhir/$export-file/{job_id}/Patient.ndjson"
    assert _outcome(await api_env.http.get(file_url, headers=DOC), 404)  # not finished
    deleted = await api_env.http.delete(status_url, headers=DOC)
    assert deleted.status_code == 202 and deleted.headers["content-type"] == FHIR_JSON
    assert _outcome(await api_env.http.get(status_url, headers=DOC), 404)
    actions = [(e.record.action, e.record.outcome) for e in await api_env.services.audit.entries()]
    assert ("fhir.export.submit", "allowed") in actions
    assert ("fhir.export.submit", "denied") in actions


async def test_exports_count_against_the_callers_job_limit(api_env):
    kickoff = f"/fhir/Group/{TEAM}/$export"
    headers = {**DOC, "Prefer": "respond-async"}
    for _ in range(api_env.settings.jobs_per_caller):
        assert (await api_env.http.get(kickoff, headers=headers)).status_code == 202
    response = await api_env.http.get(kickoff, headers=headers)
    assert _outcome(response, 429)["code"] == "throttled"
    assert "retry-after" in response.headers


async def test_an_export_deleted_while_it_runs_stays_gone_whatever_the_runner_writes(api_env):
    from twin.service import jobs

    kickoff = f"/fhir/Group/{TEAM}/$export"
    accepted = await api_env.http.get(kickoff, headers={**DOC, "Prefer": "respond-async"})
    status_url = accepted.headers["content-location"]
    job_id = status_url.rsplit("/", 1)[1]
    documents = api_env.services.documents
    job = await jobs.EXPORT.get(documents, job_id)
    await jobs.EXPORT.save(documents, job.model_copy(update={"status": "running"}))
    deleted = await api_env.http.delete(status_url, headers=DOC)
    assert deleted.status_code == 202
    assert _outcome(await api_env.http.get(status_url, headers=DOC), 404)
    # The runner finished before it saw the cancellation: still gone, files included.
    done = job.model_copy(update={"status": "succeeded", "finished_at": jobs.utc_now()})
    await jobs.EXPORT.save(documents, done)
    assert _outcome(await api_env.http.get(status_url, headers=DOC), 404)
    file_url = f"http://novamind/fhir/$export-file/{job_id}/Patient.ndjson"
    assert _outcome(await api_env.http.get(file_url, headers=DOC), 404)
    assert _outcome(await api_env.http.delete(status_url, headers=DOC), 404)


async def test_a_kickoff_with_too_many_parameters_is_a_400_not_a_500(api_env):
    kickoff = f"/fhir/Group/{TEAM}/$export"
    params = [("_type", "Patient")] * 320
    answer = await api_env.http.get(
        kickoff, params=params, headers={**DOC, "Prefer": "respond-async"}
    )
    assert "query parameters" in _outcome(answer, 400)["diagnostics"]


async def test_a_repeated_or_foreign_subject_is_a_400_not_another_question(api_env):
    for params in (
        [("subject", "Patient/a"), ("subject", "Patient/b")],
        [("_count", "-1"), ("_count", "2"), ("subject", "Patient/a")],
        [("subject", "Group/Patient/a")],
        [("subject", "Patient/")],
    ):
        answer = await api_env.http.get("/fhir/Observation", params=params, headers=DOC)
        assert _outcome(answer, 400), params


async def test_a_kickoff_reads_prefer_as_rfc_7240_does(api_env):
    kickoff = f"/fhir/Group/{TEAM}/$export"
    for prefer in ("respond-async; wait=10", "RESPOND-ASYNC", "handling=lenient, respond-async"):
        answer = await api_env.http.get(kickoff, headers={**DOC, "Prefer": prefer})
        assert answer.status_code == 202, (prefer, answer.text)
        await api_env.http.delete(answer.headers["content-location"], headers=DOC)
    refused = await api_env.http.get(kickoff, headers={**DOC, "Prefer": "respond-asynchronously"})
    assert _outcome(refused, 400)
