"""The authorization matrix: every route × every role × owner or not, and the audit of each.

The route inventory is read from the app: a route added without a row here fails the test.
Expected: 2xx allowed; 401 no credentials; 403 role not allowed; 404 a clinician outside the
patient's care team (the patient's existence is not revealed).
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import bearer
from twin import ports, schemas
from twin.domain.audit import verify_chain
from twin.fhir_out.export import ExportOutput, ExportRequest
from twin.service import jobs

ROLES = {
    "anonymous": {},
    "owner": bearer("clinician", "dr-own", ("team-1",)),
    "other": bearer("clinician", "dr-other", ("team-2",)),
    "researcher": bearer("researcher", "res"),
    "admin": bearer("admin", "adm"),
    "service": bearer("service", "etl"),
    "auditor": bearer("auditor", "aud"),
}
ORDER = ("anonymous", "owner", "other", "researcher", "service", "auditor", "admin")
NEW = {"name": "Matrix Canary", "birth_date": "1990-01-01", "mrn": "MX-1", "care_team": "team-1"}
OBS = {"items": [{"idempotency_key": "k", "day": 1, "payload": {"type": "gad7", "total": 5}}]}
RX = {
    "items": [
        {
            "idempotency_key": "r",
            "day": 1,
            "payload": {"type": "therapy_session", "kind": "psychotherapy"},
        }
    ]
}
COMPARE = {"title": "t", "weeks": 1, "scenarios": [{}, {"care": True}]}
BG = {"reason": "emergency department, unconscious", "minutes": 5}

_PATIENT = {
    "owner": 200,
    "other": 404,
    "researcher": 403,
    "admin": 200,
    "service": 403,
    "auditor": 403,
}
_INGEST = {**_PATIENT, "service": 200}
_CREATED = {k: (201 if v == 200 else v) for k, v in _PATIENT.items()}
_ONLY = dict.fromkeys(("owner", "other", "researcher", "admin", "service", "auditor"), 403)
_JOBS = {**_ONLY, "researcher": 200, "service": 200, "admin": 200}
_RUNS = {**_ONLY, "researcher": 200, "admin": 200}
COHORT = {"synthetic": {"n_patients": 2, "days": 0}, "scenarios": [{}], "weeks": 1}
# An export is followed by the one who asked (the owner here): 404 for anyone else.
_EXPORT = {**_ONLY, "owner": 202, "other": 404, "admin": 404, "service": 404}

# (method, route template, body, expected status per role)
MATRIX = [
    ("POST", "/v1/patients", NEW, {**_ONLY, "owner": 201, "admin": 201}),
    ("GET", "/v1/patients", None, {**_ONLY, "owner": 200, "admin": 200}),
    ("GET", "/v1/patients/{patient_id}", None, _PATIENT),
    ("DELETE", "/v1/patients/{patient_id}", None, {**_ONLY, "admin": 200}),
    ("POST", "/v1/patients/{patient_id}/break-glass", BG, {**_ONLY, "owner": 201, "other": 201}),
    ("POST", "/v1/patients/{patient_id}/observations", OBS, _INGEST),
    ("POST", "/v1/patients/{patient_id}/interventions", RX, _INGEST),
    ("GET", "/v1/patients/{patient_id}/twin", None, _PATIENT),
    ("POST", "/v1/patients/{patient_id}/forecast", {"weeks": 1}, _PATIENT),
    ("POST", "/v1/patients/{patient_id}/scenarios", COMPARE, _CREATED),
    ("GET", "/v1/patients/{patient_id}/scenarios", None, _PATIENT),
    ("GET", "/v1/patients/{patient_id}/scenarios/{report_id}", None, _PATIENT),
    ("GET", "/v1/patients/{patient_id}/events", None, _PATIENT),
    ("GET", "/v1/twins", None, {**_ONLY, "owner": 200, "other": 200, "admin": 200}),
    # An admin names the care team (an admin without one is refused).
    ("GET", "/v1/caseload", None, {**_ONLY, "owner": 200, "other": 200}),
    ("GET", "/v1/research/twins", None, {**_ONLY, "researcher": 200}),
    ("GET", "/v1/audit", None, {**_ONLY, "auditor": 200}),
    ("GET", "/v1/ingest/jobs", None, _JOBS),
    ("POST", "/v1/ingest/jobs", "INGEST", {**_ONLY, "service": 202, "admin": 202}),
    ("GET", "/v1/ingest/jobs/{job_id}", None, _JOBS),
    # The job is running: its status URL answers 202 (Bulk Data polling).
    (
        "GET",
        "/v1/ingest/jobs/{job_id}/status",
        None,
        {k: 202 if v == 200 else v for k, v in _JOBS.items()},
    ),
    ("DELETE", "/v1/ingest/jobs/{job_id}/status", None, {**_ONLY, "service": 202, "admin": 202}),
    ("GET", "/v1/audit/verify", None, {**_ONLY, "auditor": 200}),
    ("POST", "/v1/cohorts/runs", COHORT, {**_ONLY, "researcher": 202}),
    ("GET", "/v1/cohorts/runs", None, _RUNS),
    ("GET", "/v1/cohorts/runs/{job_id}", None, _RUNS),
    ("GET", "/v1/cohorts/runs/{job_id}/patients", None, _RUNS),
    ("POST", "/v1/cohorts/runs/{job_id}/cancel", None, {**_ONLY, "researcher": 202, "admin": 202}),
    ("POST", "/v1/ingest/jobs/{job_id}/cancel", None, {**_ONLY, "service": 202, "admin": 202}),
    # FHIR: the same patient scope; a Bulk Data export only for the caller who asked for it.
    ("GET", "/fhir/Patient/{fhir_id}", None, _PATIENT),
    ("GET", "/fhir/Observation", None, _PATIENT),
    ("GET", "/fhir/RiskAssessment", None, _PATIENT),
    ("GET", "/fhir/Group/{care_team}/$export", None,
     {**_ONLY, "owner": 202, "admin": 202, "service": 202}),
    ("GET", "/fhir/$export-status/{job_id}", None, _EXPORT),
    ("DELETE", "/fhir/$export-status/{job_id}", None, _EXPORT),
    ("GET", "/fhir/$export-file/{job_id}/{file_name}", None, {**_EXPORT, "owner": 200}),
]  # fmt: skip
OPEN = {("GET", "/health/liveness"), ("GET", "/health/readiness"), ("GET", "/fhir/metadata")}
#: The patient a FHIR search names, by route.
_SEARCH = ("/fhir/Observation", "/fhir/RiskAssessment")


def test_every_route_has_a_row(api_env):
    # The OpenAPI document is the route inventory (it is generated from the mounted routes).
    paths = api_env.app.openapi()["paths"]
    mounted = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert mounted == {(m, p) for m, p, _, _ in MATRIX} | OPEN


@pytest.mark.parametrize(("method", "template", "body", "expected"), MATRIX, ids=lambda v: str(v))
async def test_route_role_owner_matrix(api_env, method, template, body, expected):
    http = api_env.http
    admin = ROLES["admin"]
    pid = (await http.post("/v1/patients", json=NEW, headers=admin)).json()["patient_id"]
    created = await http.post(f"/v1/patients/{pid}/scenarios", json=COMPARE, headers=admin)
    report_id = created.json()["report_id"]
    job = schemas.IngestJobOut(
        job_id=jobs.new_job_id(), status="running", format="csv", sources=1,
        started_at="2026-01-01T00:00:00+00:00",
    )  # fmt: skip
    await jobs.INGEST.save(api_env.services.documents, job)
    run = await finished_cohort_run(api_env.services.documents)
    job_id = run.job_id if template.startswith("/v1/cohorts") else job.job_id
    if template.startswith("/fhir/$export"):
        queued, finished = await owners_exports(api_env.services.documents)
        job_id = finished.job_id if "file" in template else queued.job_id
    path = template.format(
        patient_id=pid, report_id=report_id, job_id=job_id, fhir_id=pid.replace("_", "."),
        care_team="team-1", file_name="Patient.ndjson",
    )  # fmt: skip
    params: dict[str, str] | None = None
    if template == "/v1/patients" and method == "GET":
        params = {"care_team": "team-1"}
    elif template in _SEARCH:
        params = {"subject": f"Patient/{pid.replace('_', '.')}"}
    extra = {"Prefer": "respond-async"} if template.endswith("$export") else {}
    before = len(await api_env.services.audit.entries())
    seen = {}
    if body == "INGEST":  # a source under the service's ingest root
        root = api_env.services.ingest_root
        body = {
            "paths": [f"{root}/a.ndjson"],
            "format": "fhir-ndjson",
            "origin": "2024-01-01T00:00:00Z",
        }
    errors = "application/fhir+json" if path.startswith("/fhir") else "application/problem+json"
    for role in ORDER:
        headers = {**ROLES[role], **extra}
        response = await http.request(method, path, json=body, headers=headers, params=params)
        seen[role] = response.status_code
        if response.status_code >= 400:
            assert response.headers["content-type"] == errors
            assert "Matrix Canary" not in response.text and "MX-1" not in response.text
    assert seen == {"anonymous": 401, **expected}
    # Audit completeness: one entry per request (denials and failed authentication included).
    # A listing's disclosure of the patients it showed is an entry of its own (after the
    # decision's), whatever the role: left out of the count of decisions.
    chain = await api_env.services.audit.entries()
    new = [e for e in chain[before:] if not e.record.action.endswith(".disclose")]
    assert len(new) == len(ORDER), [e.record.action for e in chain[before:]]
    assert [e.record.outcome == "allowed" for e in new] == [
        200 <= seen[role] < 300 for role in ORDER
    ]
    assert verify_chain(chain).ok


async def finished_cohort_run(documents):
    """A succeeded cohort run with one result page, as the job runner leaves it."""
    queued = await jobs.enqueue_cohort(
        documents, schemas.CohortRunIn.model_validate(COHORT), by="res"
    )
    done = queued.model_copy(update={"status": "succeeded", "result_pages": 1, "aggregate": []})
    await jobs.COHORT.save(documents, done)
    page = ports.Document(jobs.COHORT_RESULTS, f"{done.job_id}.000000", None, b"[]", 0.0)
    await documents.put(page)
    return done


async def owners_exports(documents):
    """An export of the owner's team queued, and one finished (its Patient file empty)."""
    request = ExportRequest(care_team="team-1", request_url="http://x/fhir", submitted_role="c")
    queued = await jobs.enqueue_export(documents, request, by="dr-own")
    done = await jobs.enqueue_export(documents, request, by="dr-own")
    finished = done.model_copy(
        update={"status": "succeeded", "outputs": [ExportOutput(type="Patient", count=0)],
                "expires_at": "2999-01-01T00:00:00+00:00"}
    )  # fmt: skip
    await jobs.EXPORT.save(documents, finished)
    return queued, finished


async def test_bad_tokens_get_401_with_a_generic_problem(api_env):
    from tests.integration.conftest import AUDIENCE, ISSUER, SECRET
    from tests.jwt_corpus import bad_tokens

    corpus = bad_tokens(SECRET, ISSUER, AUDIENCE)
    assert len(corpus) >= 15
    for name, token in corpus.items():
        response = await api_env.http.get("/v1/twins", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"] in ("invalid bearer token", "a bearer token is required")


async def test_failed_authentications_are_budgeted_per_source_and_never_block_valid_tokens(
    tmp_path,
):
    from tests.integration.conftest import api_settings, bearer, open_env

    async with open_env(api_settings(tmp_path, auth_failures_per_minute=3)) as env:
        bad = {"Authorization": "Bearer not-a-token"}
        codes = [(await env.http.get("/v1/twins", headers=bad)).status_code for _ in range(6)]
        assert codes == [401, 401, 401, 429, 429, 429]
        # The source's budget is spent; a valid token from it is still served.
        ok = await env.http.get("/v1/twins", headers=bearer("admin", "ops"))
        assert ok.status_code == 200
        entries = await env.services.audit.entries()
        assert sum(e.record.actor == "anonymous" for e in entries) == 3  # refused ones only
