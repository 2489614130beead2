"""Traces of the plain-ASGI app (``deployments.asgi.build_app``, twins in an in-process host).

The spans go to the SDK's InMemorySpanExporter (``tests/spans.py``). One ingest is one trace,
continuing the caller's ``traceparent``: the request's server span, then the access checks and
the twin operation, the host's flush and kernel, and every store call under them. No span of
any request (ingest, twin read, scenarios, emergency access, searches, the caseload, refusals)
carries a name, a birth date, an MRN, a contact, a patient id, an idempotency key, free text, a
query value or a token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from deployments.asgi import build_app
from tests.integration.conftest import api_settings, bearer
from tests.spans import capturing, install, texts, tree

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"
ADMIN = bearer("admin", "root")
SERVICE = bearer("service", "etl")
CLINICIAN = bearer("clinician", "dr-a", ("team-1",))
OUTSIDER = bearer("clinician", "dr-b", ("team-2",))


@asynccontextmanager
async def served(data: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app as ``uvicorn --factory deployments.asgi:build_app`` runs it, lifespan and all."""
    install()  # a process that traces: the stores are wrapped when they open
    app = build_app(api_settings(data, particles=100))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://novamind") as http:
            assert (await http.get("/health/readiness")).status_code == 200
            yield http


def _hex(span_id: int) -> str:
    return format(span_id, "016x")


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


async def test_one_ingest_is_one_trace_from_the_ingress_to_the_stores(tmp_path):
    async with served(tmp_path) as http:
        created = await http.post(
            "/v1/patients",
            json={"name": "T", "birth_date": "1980-01-01", "mrn": "T1", "care_team": "team-1"},
            headers=ADMIN,
        )
        pid = created.json()["patient_id"]
        items = [{"idempotency_key": "k1", "day": 0.5, "payload": {"type": "phq9", "total": 14}}]
        with capturing() as exporter:
            answer = await http.post(
                f"/v1/patients/{pid}/observations",
                json={"items": items},
                headers={**CLINICIAN, "traceparent": TRACEPARENT},
            )
        spans = list(exporter.get_finished_spans())
    assert answer.status_code == 200, answer.text
    # The request's spans are the caller's trace (background work of the app, if it ran
    # meanwhile, is traces of its own).
    ours = [s for s in spans if format(s.context.trace_id, "032x") == TRACE_ID]
    children = tree(ours)
    (root,) = [s for s in ours if s.parent is not None and _hex(s.parent.span_id) == CLIENT_SPAN_ID]
    assert root.parent is not None and root.parent.is_remote
    assert root.kind is SpanKind.SERVER
    assert root.name == "POST /v1/patients/{patient_id}/observations"
    assert root.attributes is not None
    assert root.attributes["http.route"] == "/v1/patients/{patient_id}/observations"
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["novamind.request_id"] == answer.headers["x-request-id"]
    # One tree: every span of the trace reaches the server span through its parents.
    by_id = {s.context.span_id: s for s in ours}
    for span in ours:
        node = span
        while node is not root:
            assert node.parent is not None and node.parent.span_id in by_id, span.name
            node = by_id[node.parent.span_id]
    under_root = [s.name for s in children[root.context.span_id]]
    assert {"registry.care_team", "audit_log.append_many", "twin.ingest"} <= set(under_root)
    ingest = _one(ours, "twin.ingest")
    assert ingest.attributes == {"novamind.events": 1, "novamind.wait": True}
    under_ingest = children[ingest.context.span_id]
    append = _one(under_ingest, "event_store.append")
    assert append.kind is SpanKind.CLIENT
    assert append.attributes == {"novamind.store": "event_store", "novamind.backend": "sqlite"}
    flush = _one(under_ingest, "twin.flush")
    assert flush.attributes == {"novamind.twins": 1}
    under_flush = children[flush.context.span_id]
    kernel = _one(under_flush, "twin.kernel")
    assert kernel.attributes == {"novamind.twins": 1, "novamind.events": 1}
    assert kernel.end_time is not None and kernel.start_time is not None
    assert {"event_store.read", "twin_index.upsert", "twin.activate"} <= {
        s.name for s in under_flush
    }
    activation = _one(under_flush, "twin.activate")
    assert "checkpoints.latest" in [s.name for s in children[activation.context.span_id]]
    # The kernel ran after the append had committed (append, then apply).
    assert append.end_time is not None and kernel.start_time >= append.end_time
    assert all(s.status.status_code is not StatusCode.ERROR for s in ours)


async def test_no_span_of_any_request_carries_phi(tmp_path):
    canaries = [
        "Zelda", "Canarynova", "1966-06-16", "MRN-ZZ-CANARY", "zelda.canary@example.org",
        "IDEM-CANARY-7", "Xylophone canary report", "quetzalcoatl canary reason",
        "canary_alert_q", "pt_canary404", "canary-path", "bearer-canary-token",
    ]  # fmt: skip
    tokens = [h["Authorization"].split()[1] for h in (ADMIN, SERVICE, CLINICIAN, OUTSIDER)]
    async with served(tmp_path) as http:
        with capturing() as exporter:
            body = {"name": "Zelda Canarynova", "birth_date": "1966-06-16", "mrn": "MRN-ZZ-CANARY",
                    "contact": "zelda.canary@example.org", "care_team": "team-1"}  # fmt: skip
            created = await http.post("/v1/patients", json=body, headers=ADMIN)
            pid = created.json()["patient_id"]
            fid = pid.replace("_", ".")  # the patient's FHIR id
            items = [{"idempotency_key": "IDEM-CANARY-7", "day": 0.5,
                      "payload": {"type": "phq9", "total": 18,
                                  "items": [3, 3, 3, 2, 2, 2, 1, 1, 1]}}]  # fmt: skip
            statuses = [
                created.status_code,
                (
                    await http.post(
                        f"/v1/patients/{pid}/observations", json={"items": items}, headers=SERVICE
                    )
                ).status_code,
                (await http.get(f"/v1/patients/{pid}", headers=CLINICIAN)).status_code,
                (await http.get(f"/v1/patients/{pid}/twin", headers=CLINICIAN)).status_code,
                (
                    await http.post(
                        f"/v1/patients/{pid}/forecast", json={"weeks": 2}, headers=CLINICIAN
                    )
                ).status_code,
                (
                    await http.post(
                        f"/v1/patients/{pid}/scenarios",
                        json={
                            "title": "Xylophone canary report",
                            "weeks": 2,
                            "scenarios": [{}, {"name": "b", "care": True}],
                        },
                        headers=CLINICIAN,
                    )
                ).status_code,
                (
                    await http.post(
                        f"/v1/patients/{pid}/break-glass",
                        json={"reason": "quetzalcoatl canary reason, unconscious"},
                        headers=OUTSIDER,
                    )
                ).status_code,
                (await http.get("/v1/twins?alert=canary_alert_q", headers=CLINICIAN)).status_code,
                # The caseload answers with names and MRNs: its spans may not.
                (await http.get("/v1/caseload?care_team=team-1", headers=CLINICIAN)).status_code,
                # FHIR: the Patient resource, and searches that name the patient in the query.
                (await http.get(f"/fhir/Patient/{fid}", headers=CLINICIAN)).status_code,
                (
                    await http.get(f"/fhir/Observation?subject=Patient/{fid}", headers=CLINICIAN)
                ).status_code,
                (
                    await http.get(f"/fhir/RiskAssessment?patient={fid}", headers=CLINICIAN)
                ).status_code,
                # Refusals: an unknown patient, a value out of range, a bad token, no route.
                (await http.get("/v1/patients/pt_canary404/twin", headers=CLINICIAN)).status_code,
                (
                    await http.post(
                        f"/v1/patients/{pid}/observations",
                        json={"items": [{**items[0], "payload": {"type": "phq9", "total": 99}}]},
                        headers=SERVICE,
                    )
                ).status_code,
                (
                    await http.get(
                        f"/v1/patients/{pid}",
                        headers={"Authorization": "Bearer bearer-canary-token"},
                    )
                ).status_code,
                (await http.get("/v1/canary-path", headers=ADMIN)).status_code,
            ]
        spans = list(exporter.get_finished_spans())
    assert statuses == [201, 200, 200, 200, 200, 201, 201, 200, 200, 200, 200, 200, 404, 422, 401,
                        404]  # fmt: skip
    names = {s.name for s in spans}
    # Every kind of request was traced: ingest, reads, forecasts, scenarios, refusals.
    assert {
        "POST /v1/patients",
        "POST /v1/patients/{patient_id}/observations",
        "GET /v1/patients/{patient_id}/twin",
        "POST /v1/patients/{patient_id}/scenarios",
        "POST /v1/patients/{patient_id}/break-glass",
        "GET /v1/twins",
        "GET /v1/caseload",
        "GET /fhir/Patient/{fhir_id}",
        "GET /fhir/Observation",
        "GET /fhir/RiskAssessment",
        "GET",  # no route matched: the method alone
        "twin.ingest",
        "twin.summary",
        "twin.forecast",
        "twin.compare",
        "twin.kernel",
        "documents.put",
        "registry.create",
    } <= names, names
    refused = [
        s for s in spans
        if s.kind is SpanKind.SERVER and s.attributes
        and int(str(s.attributes["http.response.status_code"])) >= 400
    ]  # fmt: skip
    assert sorted(int(str(s.attributes["http.response.status_code"])) for s in refused) == [
        401, 404, 404, 422
    ]  # fmt: skip
    exported = "\n".join(text for s in spans for text in texts(s))
    assert pid not in exported and fid not in exported
    for canary in [*canaries, *tokens]:
        assert canary not in exported, canary
    # Nothing but fixed labels, counts and flags as attributes.
    keys = {k for s in spans for k in (s.attributes or {})}
    assert keys <= {
        "http.request.method", "http.route", "http.response.status_code", "novamind.request_id",
        "novamind.store", "novamind.backend", "novamind.events", "novamind.wait",
        "novamind.twins", "novamind.scenarios", "novamind.weeks", "error.type",
    }, keys  # fmt: skip
    assert all(not s.events for s in spans)  # no exception events (their messages quote input)
