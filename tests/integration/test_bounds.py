"""Every input the API reads has a bound, and every value past it is refused with nothing stored.

The cases are generated from the service's own OpenAPI document, not listed by hand:

1. Every field of every request body, query parameter, path parameter and header must declare
   a bound (strings a ``maxLength``, an ``enum`` or a date format; numbers a minimum and a
   maximum; arrays a ``maxItems``; objects no unknown properties or a ``maxProperties``).
   A field added without one fails the first test.
2. For each operation a valid request is built (the table below) and answered with a 2xx,
   so the mutations that follow are refused for what they change, not for something else.
3. For every field, each of its bounds is crossed in turn (one past a maximum or minimum,
   one character or item too many or too few, a value outside the enum, non-finite and
   non-integral numbers, NUL and other control characters in strings, an unknown property,
   an object where a scalar belongs). Every such request must get a 4xx, never a 5xx, and
   afterwards no table of the database holds one row more than before.

Event payloads are free-form objects in the schema (their fields depend on ``type``), so they
get a second pass: every field of every payload type gets values no domain admits.

Runs on the embedded SQLite stores and on PostgreSQL.
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from deployments.bootstrap import open_backup_stores
from tests.integration.conftest import ApiEnv, api_settings, bearer, open_env
from tests.servers import PostgresServer
from twin import ports
from twin.fhir_out.export import ExportOutput, ExportRequest
from twin.service import jobs
from twin.settings import TwinSettings

pytestmark = pytest.mark.integration

#: Inputs no valid request can carry (so nothing can be crossed on their own), and why.
NO_VALID_REQUEST = {
    f"POST /v1/patients/{{patient_id}}/interventions body.items[].loinc.{name}": (
        "no intervention has a LOINC code; the same model's bounds are crossed on observations"
    )
    for name in ("code", "value", "unit")
}
#: Tables whose growth is not a stored input: the audit trail records refusals by design.
AUDIT_TABLES = frozenset({"audit_log", "audit_head"})
TEAM, OTHER_TEAM = "t1", "t2"
#: Day 0 of the seeded patients (their events are placed by day or by instant from it).
ENROLLED = datetime(2024, 1, 1, tzinfo=UTC)
CONTROL_CHARACTERS = ("\x00", "\x07", "\x1b", "\x7f")


@pytest.fixture(params=["sqlite", "postgres"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ApiEnv]:
    overrides: dict[str, Any] = {
        "ingest_root": str(tmp_path / "inbox"),
        "rate_limit_per_minute": 1_000_000,
        "auth_failures_per_minute": 10_000,
    }
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        overrides["database_url"] = server.create_database(f"b_{uuid.uuid4().hex[:12]}")
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "obs.ndjson").write_text("")
    async with open_env(api_settings(tmp_path, **overrides)) as opened:
        yield opened


# -- the schema side ------------------------------------------------------------------------


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _concrete(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of a present value: ``$ref`` resolved, the non-null branch of a nullable."""
    schema = _resolve(doc, schema)
    branches = [_resolve(doc, b) for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if branches:
        assert len(branches) == 1, f"a union the generator cannot walk: {schema}"
        return branches[0]
    return schema


def _unbounded(schema: dict[str, Any]) -> str | None:
    """Why a leaf schema is unbounded (``None``: it is bounded)."""
    kind = schema.get("type")
    if kind == "string":
        bounded = "maxLength" in schema or "enum" in schema or "const" in schema
        if not bounded and schema.get("format") not in ("date", "date-time"):
            return "a string without maxLength or enum"
    if kind in ("number", "integer"):
        if "maximum" not in schema and "exclusiveMaximum" not in schema:
            return "a number without a maximum"
        if "minimum" not in schema and "exclusiveMinimum" not in schema:
            return "a number without a minimum"
    if kind == "array" and "maxItems" not in schema:
        return "an array without maxItems"
    if kind == "object" and "properties" not in schema and "maxProperties" not in schema:
        return "an object without properties or maxProperties"
    if kind == "object" and "properties" in schema and schema.get("additionalProperties", True):
        return "an object that takes unknown properties"
    return None


def _fields(
    doc: dict[str, Any], schema: dict[str, Any], where: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field under ``schema`` with its concrete schema (``where`` names it)."""
    concrete = _concrete(doc, schema)
    yield where, concrete
    for name, sub in concrete.get("properties", {}).items():
        yield from _fields(doc, sub, f"{where}.{name}")
    if concrete.get("type") == "array":
        yield from _fields(doc, concrete["items"], f"{where}[]")


def _inputs(doc: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(method, path, field, schema) for every input of every operation."""
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for param in op.get("parameters", []):
                where = f"{param['in']}:{param['name']}"
                for field, schema in _fields(doc, param["schema"], where):
                    yield method, path, field, schema
            for media in op.get("requestBody", {}).get("content", {}).values():
                for field, schema in _fields(doc, media["schema"], "body"):
                    yield method, path, field, schema


def _crossings(schema: dict[str, Any], valid: Any) -> Iterator[tuple[str, Any]]:
    """(what, value) pairs that cross one of ``schema``'s bounds; ``valid`` is a good value."""
    kind = schema.get("type")
    if kind == "string":
        if "maxLength" in schema:
            yield "too long", "a" * (schema["maxLength"] + 1)
        if schema.get("minLength", 0) > 0:
            yield "too short", "a" * (schema["minLength"] - 1)
        if "enum" in schema:
            yield "not in the enum", "zz-not-a-member"
        base = valid if isinstance(valid, str) and valid else "abc"
        for char in CONTROL_CHARACTERS:
            yield f"control {char!r}", base[:-1] + char
    elif kind in ("number", "integer"):
        if "maximum" in schema:
            yield "above the maximum", schema["maximum"] + 1
        if "exclusiveMaximum" in schema:
            yield "at the exclusive maximum", schema["exclusiveMaximum"]
        if "minimum" in schema:
            yield "below the minimum", schema["minimum"] - 1
        if "exclusiveMinimum" in schema:
            yield "at the exclusive minimum", schema["exclusiveMinimum"]
        yield from (("NaN", math.nan), ("infinity", math.inf), ("-infinity", -math.inf))
        if kind == "integer":
            yield "not whole", 1.5
        yield "an object", {"value": 1}
    elif kind == "array":
        item = valid[0] if isinstance(valid, list) and valid else None
        yield "too many items", [copy.deepcopy(item) for _ in range(schema["maxItems"] + 1)]
        if schema.get("minItems", 0) > 0:
            yield "too few items", []
        yield "a string", "x"
    elif kind == "object":
        if "maxProperties" in schema:
            yield "too many properties", {f"k{i}": i for i in range(schema["maxProperties"] + 1)}
        elif schema.get("additionalProperties") is False:
            yield "an unknown property", {**(valid or {}), "zz_unknown": 1}
        yield "a list", [valid]
    elif kind == "boolean":
        yield "an object", {"value": True}


# -- the request side -----------------------------------------------------------------------


@dataclass
class Request:
    """One request: who sends it and what it carries."""

    role: str
    subject: str
    team: tuple[str, ...]
    path: dict[str, str]
    query: dict[str, Any]
    headers: dict[str, str]
    body: Any = None

    def copy(self) -> Request:
        return copy.deepcopy(self)


def _obs(key: str, day: float, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"idempotency_key": key, "day": day, "payload": payload or {"type": "phq9", "total": 12}}


SCENARIO = {
    "name": "switch",
    "doses": [{"day": 3, "drug": "sertraline", "mg_per_day": 50.0}],
    "adherence": 0.9,
    "persistence": "as_scheduled",
    "therapy_session_days": [7, 14],
    "cbti_session_days": [10],
    "sleep_hours": 7.5,
    "care": "usual",
}
COHORT_SPEC = {
    "n_patients": 4,
    "days": 14,
    "seed": 3,
    "screen_phq9_min": 10,
    "screen_hamd17_min": 14,
    "start": "episode",
    "care": "trial",
    "population": {"episode_weeks": 20.0, "anxiety_share": 0.4, "prior_episodes_mean": 1.0},
    "regimen": [{"day": 0, "drug": "sertraline", "mg_per_day": 50.0}],
    "adherence": 0.9,
    "persistence": "as_scheduled",
    "therapy_session_days": [7],
    "observe_every_days": 7,
    "cbti_session_days": [3],
    "sleep_hours": 7.0,
    "detailed": False,
}


def _requests(
    pid: str, victim: str, report: str, job: str, run: str, queued: str, source: str,
    *, exports: tuple[str, str],
) -> dict[tuple[str, str], list[Request]]:  # fmt: skip
    """Valid requests for every operation that takes input.

    ``exports``: a queued and a finished FHIR export of the clinician ``dr``.
    """
    admin = ("admin", "adm", ())
    clinician = ("clinician", "dr", (TEAM,))
    researcher = ("researcher", "res", ())
    p = {"patient_id": pid}
    fhir = {"fhir_id": pid.replace("_", ".")}
    export, exported = ({"job_id": job_id} for job_id in exports)

    def make(who: tuple[str, str, tuple[str, ...]], **kw: Any) -> Request:
        return Request(
            *who, kw.get("path", {}), kw.get("query", {}), kw.get("headers", {}), kw.get("body")
        )

    table: dict[tuple[str, str], Request | list[Request]] = {
        ("post", "/v1/patients"): make(
            admin,
            body={
                "name": "Bound Canary",
                "birth_date": "1980-01-02",
                "mrn": "BND-1",
                "contact": "+1 555 0100",
                "care_team": TEAM,
                "enrolled_at": "2024-01-01T00:00:00Z",
                "identifiers": [{"system": "http://clinic.example.org/mrn", "value": "BND-1"}],
                "covariates": {
                    "episode_weeks": 12.0,
                    "prior_episodes": 1,
                    "anxiety_comorbid": False,
                    "age_years": 40.0,
                },
            },
        ),
        ("get", "/v1/patients"): make(admin, query={"care_team": TEAM, "after": "a", "limit": 5}),
        ("get", "/v1/patients/{patient_id}"): make(clinician, path=p),
        ("delete", "/v1/patients/{patient_id}"): make(admin, path={"patient_id": victim}),
        ("post", "/v1/patients/{patient_id}/break-glass"): make(
            ("clinician", "er", (OTHER_TEAM,)),
            path=p,
            body={"reason": "patient unconscious in the emergency room", "minutes": 30},
        ),
        ("post", "/v1/patients/{patient_id}/observations"): make(
            clinician,
            path=p,
            body={
                "items": [
                    _obs("o-1", 1.0),
                    {
                        "idempotency_key": "o-2",
                        "effective": "2024-01-03T00:00:00+01:00",
                        "loinc": {"code": "44261-6", "value": 11.0, "unit": "{score}"},
                    },
                ]
            },
        ),
        ("post", "/v1/patients/{patient_id}/interventions"): make(
            clinician,
            path=p,
            body={
                "items": [
                    _obs(
                        "i-1",
                        3.0,
                        {"type": "prescription", "drug": "sertraline", "mg_per_day": 50.0},
                    )
                ]
            },
        ),
        ("get", "/v1/patients/{patient_id}/twin"): make(clinician, path=p),
        ("post", "/v1/patients/{patient_id}/forecast"): make(
            clinician, path=p, body={"weeks": 2, "scenario": SCENARIO}
        ),
        ("get", "/v1/caseload"): make(
            admin,
            query={
                "care_team": TEAM,
                "min_severity": 1.0,
                "min_p_severe": 0.1,
                "alert": "phq9_item9",
                "updated_since": 1.0,
                "sort": "p_severe",
                "limit": 10,
            },
        ),
        ("get", "/v1/twins"): make(
            admin,
            query={
                "min_severity": 1.0,
                "alert": "phq9_item9",
                "updated_since": 1.0,
                "min_p_severe": 0.1,
                "limit": 10,
            },
        ),
        ("post", "/v1/patients/{patient_id}/scenarios"): make(
            clinician,
            path=p,
            body={"title": "options", "weeks": 2, "scenarios": [{"name": "as now"}, SCENARIO]},
        ),
        ("get", "/v1/patients/{patient_id}/scenarios"): make(
            clinician, path=p, query={"after": "a", "limit": 5}
        ),
        ("get", "/v1/patients/{patient_id}/scenarios/{report_id}"): make(
            clinician, path={**p, "report_id": report}
        ),
        ("get", "/v1/patients/{patient_id}/events"): make(
            clinician,
            path=p,
            query={"after": 0, "follow": False, "max_s": 1.0},
            headers={"last-event-id": "1"},
        ),
        ("get", "/v1/research/twins"): make(
            researcher, query={"min_severity": 0.0, "alert": "phq9_item9", "limit": 10}
        ),
        ("get", "/v1/audit"): make(("auditor", "aud", ()), query={"after": 0, "limit": 10}),
        ("get", "/v1/audit/verify"): make(
            ("auditor", "aud", ()), query={"expected_head": "0" * 64}
        ),
        ("get", "/v1/ingest/jobs"): make(admin, query={"after": "a", "limit": 5}),
        ("post", "/v1/ingest/jobs"): make(
            ("service", "svc", ()),
            body={
                "paths": [source],
                "format": "fhir-ndjson",
                "origin": "2024-01-01T00:00:00Z",
                "care_team": TEAM,
                "enrolled_at": "2024-01-01T00:00:00Z",
            },
        ),
        ("get", "/v1/ingest/jobs/{job_id}"): make(admin, path={"job_id": job}),
        ("get", "/v1/ingest/jobs/{job_id}/status"): make(admin, path={"job_id": job}),
        ("delete", "/v1/ingest/jobs/{job_id}/status"): make(admin, path={"job_id": job}),
        ("post", "/v1/ingest/jobs/{job_id}/cancel"): make(admin, path={"job_id": job}),
        # One valid request per selection, so each selection's fields are reached.
        ("post", "/v1/cohorts/runs"): [
            make(
                researcher,
                body={
                    "synthetic": COHORT_SPEC,
                    "scenarios": [{}, SCENARIO],
                    "weeks": 2,
                    "seed": 1,
                    "particles": 50,
                },
            ),
            make(
                ("researcher", "res-f", ()),
                body={
                    "filter": {
                        "min_severity": 1.0,
                        "min_p_severe": 0.1,
                        "alert": "phq9_item9",
                        "limit": 10,
                    },
                    "scenarios": [{}, SCENARIO],
                },
            ),
            make(
                ("researcher", "res-p", ()),
                body={"pseudonyms": ["rs_" + "0" * 24], "scenarios": [{}, SCENARIO]},
            ),
        ],
        ("get", "/v1/cohorts/runs"): make(researcher, query={"after": "a", "limit": 5}),
        ("post", "/v1/cohorts/runs/{job_id}/cancel"): make(admin, path={"job_id": queued}),
        ("get", "/v1/cohorts/runs/{job_id}"): make(researcher, path={"job_id": run}),
        ("get", "/v1/cohorts/runs/{job_id}/patients"): make(
            researcher, path={"job_id": run}, query={"page": 0}
        ),
        ("get", "/fhir/Patient/{fhir_id}"): make(clinician, path=fhir),
        ("get", "/fhir/Observation"): make(
            clinician,
            query={"subject": f"Patient/{fhir['fhir_id']}", "_count": 5, "_offset": 1},
        ),
        ("get", "/fhir/RiskAssessment"): make(clinician, query={"patient": fhir["fhir_id"]}),
        ("get", "/fhir/Group/{care_team}/$export"): make(
            ("clinician", "dr-export", (TEAM,)),
            path={"care_team": TEAM},
            query={"_type": "Patient,Observation", "_outputFormat": "application/fhir+ndjson"},
            headers={"prefer": "respond-async"},
        ),
        ("get", "/fhir/$export-status/{job_id}"): make(clinician, path=export),
        ("delete", "/fhir/$export-status/{job_id}"): make(clinician, path=export),
        ("get", "/fhir/$export-file/{job_id}/{file_name}"): make(
            clinician, path={**exported, "file_name": "Patient.ndjson"}
        ),
    }
    return {op: found if isinstance(found, list) else [found] for op, found in table.items()}


async def _send(env: ApiEnv, method: str, path: str, req: Request) -> Any:
    url = path.format(**{k: quote(v, safe="") for k, v in req.path.items()})
    headers = {**bearer(req.role, req.subject, req.team), **req.headers}
    content = None
    if req.body is not None:
        headers["Content-Type"] = "application/json"
        content = json.dumps(req.body)  # NaN and Infinity as Python's json writes them
    query = {k: json.dumps(v) if isinstance(v, bool) else v for k, v in req.query.items()}
    return await env.http.request(
        method.upper(), url, params=query, headers=headers, content=content
    )


#: A step into an array's items.
ITEM = None


def _steps(rest: str) -> list[str | None]:
    """``items[].loinc.code`` as steps: ``["items", ITEM, "loinc", "code"]``."""
    steps: list[str | None] = []
    for part in rest.split(".") if rest else []:
        steps.append(part.split("[]", 1)[0])
        steps.extend([ITEM] * part.count("[]"))
    return steps


def _slot(value: Any, steps: list[str | None]) -> tuple[Any, Any] | None:
    """The (container, key) the field at ``steps`` occupies in ``value``, if it can have one.

    In an array, the first item that already holds the field is chosen (a batch whose second
    item is the LOINC form reaches ``loinc.code``), else the first item that could hold it.
    """
    head, rest = steps[0], steps[1:]
    if head is ITEM:
        if not isinstance(value, list) or not value:
            return None
        if not rest:
            return value, 0
        found = [slot for item in value if (slot := _slot(item, rest)) is not None]
        held = [slot for slot in found if isinstance(slot[0], list) or slot[1] in slot[0]]
        return (held or found or [None])[0]
    if not isinstance(value, dict):
        return None
    return (value, head) if not rest else _slot(value.get(head), rest)


def _place(req: Request, where: str) -> tuple[Any, Any] | None:
    """Where the field ``where`` (``body.items[].day``, ``query:limit``) lives in ``req``."""
    head, _, rest = where.partition(".")
    if head.startswith(("query:", "path:", "header:")):
        place, name = head.split(":", 1)
        return {"query": req.query, "path": req.path, "header": req.headers}[place], name
    assert head in ("body", "body[]"), where
    if not rest:
        return req, "body"
    return _slot(req.body, _steps(rest))


def _holds(slot: tuple[Any, Any] | None) -> bool:
    if slot is None:
        return False
    container, key = slot
    return (
        hasattr(container, key)
        if isinstance(container, Request)
        else (isinstance(container, list) or key in container)
    )


def _base_for(bases: list[Request], where: str) -> Request | None:
    """The first valid request that holds the field, else the first that can take it."""
    slots = [(base, _place(base, where)) for base in bases]
    for base, slot in slots:
        if _holds(slot):
            return base
    return next((base for base, slot in slots if slot is not None), None)


def _valid_at(req: Request, where: str) -> Any:
    slot = _place(req, where)
    if not _holds(slot):
        return None
    container, key = slot  # type: ignore[misc]
    return getattr(container, key) if isinstance(container, Request) else container[key]


def _put(req: Request, where: str, value: Any) -> None:
    container, key = _place(req, where)  # type: ignore[misc]
    if isinstance(container, Request):
        setattr(container, key, value)
    elif where.startswith(("path:", "header:")):
        container[key] = str(value)
    else:
        container[key] = value


def _freshen(req: Request, day: float) -> None:
    """New idempotency keys and a new time for every event of a batch (before the mutation).

    A wrongly accepted event is then stored rather than deduplicated, and no event is refused
    for being older than the log's newest instead of for the value under test. An event placed
    by ``effective`` gets the instant of ``day`` (the seeded patients' enrolment + ``day``).
    """
    items = req.body.get("items") if isinstance(req.body, dict) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            item["idempotency_key"] = uuid.uuid4().hex
            if "effective" in item:
                item["effective"] = (ENROLLED + timedelta(days=day)).isoformat()
            else:
                item["day"] = day


async def _row_counts(settings: TwinSettings) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with open_backup_stores(settings) as stores:
        async for batch in stores.snapshot.export():
            counts[batch.table] = counts.get(batch.table, 0) + len(batch.rows)
    return {t: n for t, n in counts.items() if t not in AUDIT_TABLES}


async def _seed(env: ApiEnv) -> dict[str, str]:
    admin = bearer("admin", "seed")
    ids = {}
    for name in ("pid", "victim"):
        created = await env.http.post(
            "/v1/patients",
            json={"name": name, "birth_date": "1970-01-01", "mrn": name, "care_team": TEAM,
                  "enrolled_at": ENROLLED.isoformat()},
            headers=admin,
        )  # fmt: skip
        ids[name] = created.json()["patient_id"]
    first = await env.http.post(
        f"/v1/patients/{ids['pid']}/observations",
        json={"items": [_obs("seed-0", 0.0)]},
        headers=admin,
    )
    assert first.status_code == 200, first.text
    report = await env.http.post(
        f"/v1/patients/{ids['pid']}/scenarios",
        json={"title": "seed", "weeks": 1, "scenarios": [{"name": "a"}, {"name": "b"}]},
        headers=admin,
    )
    ids["report"] = report.json()["report_id"]
    ids["source"] = f"{env.settings.ingest_root}/obs.ndjson"
    job = await env.http.post(
        "/v1/ingest/jobs",
        json={"paths": [ids["source"]], "format": "fhir-ndjson", "origin": "2024-01-01T00:00:00Z"},
        headers=bearer("admin", "seed-jobs"),
    )
    ids["job"] = job.json()["job_id"]
    run = await env.http.post(
        "/v1/cohorts/runs",
        json={"synthetic": {"n_patients": 2, "days": 0}, "scenarios": [{}], "weeks": 1},
        headers=bearer("researcher", "res"),
    )
    ids["run"] = run.json()["job_id"]
    # The run's result, as the job runner leaves it (the runner does not run here).
    done = await jobs.COHORT.get(env.services.documents, ids["run"])
    await jobs.COHORT.save(
        env.services.documents, done.model_copy(update={"status": "succeeded", "result_pages": 1})
    )
    rows = json.dumps([{"pseudonym": "rs_" + "0" * 24, "scenario": "as now"}]).encode()
    await env.services.documents.put(
        ports.Document(jobs.COHORT_RESULTS, f"{ids['run']}.000000", None, rows, 0.0)
    )
    queued = await env.http.post(
        "/v1/cohorts/runs",
        json={"synthetic": {"n_patients": 2, "days": 0}, "scenarios": [{}], "weeks": 1},
        headers=bearer("researcher", "res-2"),
    )
    ids["queued"] = queued.json()["job_id"]
    # FHIR exports of the clinician "dr": one queued, one finished (as the job runner leaves it).
    request = ExportRequest(care_team=TEAM, request_url="http://x/fhir", submitted_role="c")
    ids["export"] = (await jobs.enqueue_export(env.services.documents, request, "dr")).job_id
    finished = await jobs.enqueue_export(env.services.documents, request, "dr")
    await jobs.EXPORT.save(
        env.services.documents,
        finished.model_copy(update={
            "status": "succeeded", "outputs": [ExportOutput(type="Patient", count=0)],
            "expires_at": "2999-01-01T00:00:00+00:00",
        }),
    )  # fmt: skip
    ids["exported"] = finished.job_id
    return ids


def _document(env: ApiEnv) -> dict[str, Any]:
    return env.app.openapi()  # type: ignore[no-any-return]


def test_every_input_declares_a_bound() -> None:
    from contextlib import asynccontextmanager

    from deployments.api.app import create_app

    @asynccontextmanager
    async def nothing() -> AsyncIterator[None]:
        yield None

    doc = create_app(open_services=nothing).openapi()  # type: ignore[arg-type]
    unbounded = [
        f"{method.upper()} {path} {field}: {why}"
        for method, path, field, schema in _inputs(doc)
        if (why := _unbounded(schema)) is not None
    ]
    assert unbounded == []
    assert sum(1 for _ in _inputs(doc)) > 150  # the walk reaches nested fields


async def test_every_value_past_a_bound_is_refused_and_stores_nothing(env: ApiEnv) -> None:
    doc = _document(env)
    ids = await _seed(env)
    requests = _requests(
        *(ids[k] for k in ("pid", "victim", "report", "job", "run", "queued", "source")),
        exports=(ids["export"], ids["exported"]),
    )
    inputs = list(_inputs(doc))
    with_input = {(m, p) for m, p, _, _ in inputs}
    assert with_input <= set(requests), with_input - set(requests)

    # The valid requests pass (erasing and cancelling last, after the reads that need them).
    def last(op: tuple[str, str]) -> bool:
        return op[0] == "delete" or op[1].endswith("/cancel")

    for (method, path), bases in sorted(requests.items(), key=lambda kv: last(kv[0])):
        for base in bases:
            answer = await _send(env, method, path, base)
            assert answer.status_code < 300, (method, path, answer.status_code, answer.text)

    before = await _row_counts(env.settings)
    statuses: dict[int, int] = {}
    wrong: list[str] = []
    unreached: list[str] = []
    day = 10.0
    for method, path, field, schema in inputs:
        name = f"{method.upper()} {path} {field}"
        base = _base_for(requests[(method, path)], field)
        if base is None:
            unreached.append(name)
            continue
        crossed = 0
        for what, value in _crossings(schema, _valid_at(base, field)):
            if field.startswith("path:") and value == "":
                continue  # an empty segment is another route (a redirect), not this parameter
            req = base.copy()
            day += 0.01
            _freshen(req, day)
            _put(req, field, value)
            try:
                answer = await _send(env, method, path, req)
            except httpx.LocalProtocolError:
                continue  # a header no HTTP client can send
            crossed += 1
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            # Refused as invalid (422; FHIR's 400) or too large (413); anything else (a 409 for
            # the time order, a 404, a 5xx) means the bound under test was not what stopped it.
            if answer.status_code not in ((400, 413) if path.startswith("/fhir") else (413, 422)):
                wrong.append(f"{name} {what}: {answer.status_code} {answer.text[:120]}")
        if crossed == 0:
            unreached.append(name)
    assert sorted(unreached) == sorted(NO_VALID_REQUEST), "\n".join(unreached)
    assert wrong == [], "\n".join(wrong)
    assert sum(statuses.values()) > 700, statuses
    assert await _row_counts(env.settings) == before


#: Values no payload field admits, whatever its domain.
HOSTILE: tuple[Any, ...] = (
    1e308,
    -1e308,
    math.nan,
    math.inf,
    2**63,
    "x" * 100_000,
    "\x00",
    {"nested": [1, 2]},
    [[1]],
)
PAYLOADS: dict[str, dict[str, Any]] = {
    "phq9": {"total": 12, "items": [2, 2, 2, 1, 1, 1, 1, 1, 1]},
    "phq9_item9": {"answer": 1},
    "gad7": {"total": 8},
    "ema_affect": {"rating": 4},
    "sleep_duration": {"hours": 7.0, "wear_hours": 20.0},
    "steps": {"count": 6000, "wear_hours": 14.0},
    "resting_hr": {"bpm": 62.0},
    "ln_rmssd": {"value": 3.5},
    "prescription": {"drug": "sertraline", "mg_per_day": 50.0},
    "dose_taken": {"drug": "sertraline", "taken": True},
    "therapy_session": {"kind": "cbti"},
    "care_status": {"active": True, "setting": "usual"},
    "covariates": {
        "episode_weeks": 8.0,
        "prior_episodes": 1,
        "anxiety_comorbid": True,
        "age_years": 33.0,
    },
}
INTERVENTIONS = {"prescription", "dose_taken", "therapy_session", "care_status"}


async def test_no_payload_field_takes_a_value_outside_every_domain(env: ApiEnv) -> None:
    from twin.domain.codec import PAYLOAD_TYPES

    assert set(PAYLOADS) == set(PAYLOAD_TYPES)  # a new payload type needs its row here
    ids = await _seed(env)
    headers = bearer("clinician", "dr", (TEAM,))
    day = 1.0

    def url(kind: str) -> str:
        route = "interventions" if kind in INTERVENTIONS else "observations"
        return f"/v1/patients/{ids['pid']}/{route}"

    async def post(kind: str, payload: dict[str, Any]) -> Any:
        body = json.dumps({"items": [_obs(uuid.uuid4().hex, day, {"type": kind, **payload})]})
        return await env.http.post(
            url(kind), content=body, headers={**headers, "Content-Type": "application/json"}
        )

    for kind, fields in PAYLOADS.items():
        good = await post(kind, fields)
        assert good.status_code == 200, (kind, good.text)
        day += 1.0
    before = await _row_counts(env.settings)
    accepted: list[str] = []
    for kind, fields in PAYLOADS.items():
        for name in fields:
            for value in HOSTILE:
                answer = await post(kind, {**fields, name: value})
                if not 400 <= answer.status_code < 500:
                    accepted.append(f"{kind}.{name}={str(value)[:20]!r}: {answer.status_code}")
        unknown = await post(kind, {**fields, "zz_unknown": 1})
        if unknown.status_code != 422:
            accepted.append(f"{kind} with an unknown field: {unknown.status_code}")
    assert accepted == []
    assert await _row_counts(env.settings) == before
