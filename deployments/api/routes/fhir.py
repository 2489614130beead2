"""FHIR R4 under ``/fhir``: a patient, their Observations and RiskAssessments, Bulk Data exports.

Each route translates HTTP to one use case of :class:`twin.service.fhir.FhirService` (access and
audit as on ``/v1``) and answers ``application/fhir+json`` (Bulk Data files
``application/fhir+ndjson``, the completion manifest ``application/json`` as the IG says);
errors are OperationOutcomes (``deployments/api/errors.py``). ``GET /fhir/metadata`` is the one
route without a token: the CapabilityStatement holds no patient data, and clients read it before
they have one.

Searches take only the parameters listed in the CapabilityStatement; any other is refused with
400 rather than ignored (a filter silently dropped returns more than was asked for).

Bulk Data (IG v2, the asynchronous request pattern): ``GET /fhir/Group/{care team}/$export``
with ``Prefer: respond-async`` answers 202 with ``Content-Location``, the export's status URL.
Polling it answers 202 (``Retry-After``, ``X-Progress``) while it runs, then 200 with the manifest
(an ``Expires`` header says when its files go), or 500 with an OperationOutcome if it failed;
``DELETE`` on it cancels it or deletes its files (then it is 404). File URLs need the same token.
"""

from __future__ import annotations

import functools
from datetime import datetime
from email.utils import format_datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from deployments.api.access import INT32, Caller, Services, caller
from deployments.api.errors import outcome, outcomes
from deployments.api.headers import V1Route, polling_headers
from deployments.api.services import ApiServices
from twin import errors
from twin.fhir_out import export
from twin.fhir_out.ids import patient_id_of
from twin.fhir_out.rest import (
    FHIR_JSON,
    FHIR_NDJSON,
    capability_statement,
    operation_outcome,
    searchset,
)

# V1Route: the successes document the RateLimit headers every authenticated answer carries.
router = APIRouter(prefix="/fhir", tags=["fhir"], responses=outcomes(), route_class=V1Route)
#: The CapabilityStatement's route: no token and no rate limit, as the probes.
public = APIRouter(prefix="/fhir", tags=["fhir"])

#: Seconds a Bulk Data client waits before polling a running export again.
POLL_AFTER_S = 5
#: Entries per search page, by default and at most.
DEFAULT_COUNT, MAX_COUNT = 100, 1000
_SEARCH = frozenset({"subject", "patient", "_count", "_offset", "_format"})
_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
_FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}$"
_RESOURCE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "a FHIR R4 resource",
        "content": {FHIR_JSON: {"schema": {"type": "object", "description": "FHIR R4 resource"}}},
    }
}
_NOT_FOUND = outcomes(404, 410)
_COUNT = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 10**15}
_FILES = {
    "type": "array",
    "maxItems": 16,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "maxLength": 64, "pattern": "^[A-Z][A-Za-z]+$"},
            "url": {"type": "string", "format": "uri", "maxLength": 2048},
            "count": _COUNT,
        },
    },
}
_FAILED = outcomes(404)
_STATUS: dict[int | str, dict[str, Any]] = {
    **_FAILED,
    202: {
        "description": "queued or running: poll again after Retry-After seconds",
        "headers": polling_headers("patients"),
    },
    200: {
        "description": "the completion manifest (Bulk Data IG v2)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "transactionTime": {
                            "type": "string",
                            "format": "date-time",
                            "maxLength": 64,
                        },
                        "request": {"type": "string", "format": "uri", "maxLength": 4096},
                        "requiresAccessToken": {"type": "boolean"},
                        "output": _FILES,
                        "error": _FILES,
                    },
                }
            }
        },
    },
    500: {**_FAILED[500], "description": "the export failed (or an unexpected error)"},
}

JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def fhir(content: dict[str, Any], status_code: int = 200, **headers: str) -> JSONResponse:
    """A FHIR JSON answer."""
    return JSONResponse(content, status_code=status_code, media_type=FHIR_JSON, headers=headers)


def _root(request: Request, svc: ApiServices) -> str:
    """The API's URL as clients reach it (the ``public_base_url`` setting, else the request's)."""
    return (svc.public_base_url or str(request.base_url)).rstrip("/")


def _base(request: Request, svc: ApiServices) -> str:
    return _root(request, svc) + "/fhir"


def _prefers_async(prefer: str | None) -> bool:
    """Whether a ``Prefer`` header asks for ``respond-async``.

    RFC 7240: preferences are named case-insensitively and may carry parameters
    (``respond-async; wait=10``); several are separated by commas.
    """
    if prefer is None:
        return False
    names = (item.split(";", 1)[0].split("=", 1)[0].strip().lower() for item in prefer.split(","))
    return "respond-async" in names


def _check_parameters(request: Request, allowed: frozenset[str]) -> None:
    """Refuse a query parameter the route does not take, or one given twice.

    A repeated search parameter means AND in FHIR, which these searches do not do: read as one
    of its values, it would answer another question than the one asked.
    """
    seen: set[str] = set()
    for name, value in request.query_params.multi_items():
        if name in seen:
            raise errors.InvalidInputError(f"{name}: given once (repeated parameters: no AND)")
        seen.add(name)
        if name not in allowed:
            supported = ", ".join(sorted(allowed))
            raise errors.InvalidInputError(
                f"a parameter this search does not support (supported: {supported})"
            )
        if name == "_format" and value not in _FORMATS:
            raise errors.InvalidInputError("_format: json only (application/fhir+json)")


def _subject(subject: str | None, patient: str | None) -> str:
    """The patient a search is about: ``subject=Patient/<id>`` or ``patient=<id>``, one of them.

    Raises:
        InvalidInputError: Neither, or two that differ, or a reference that is not a Patient.
        NotFoundError: An id no patient can have.
    """
    named: set[str] = set()
    for reference, bare in ((subject, False), (patient, True)):
        if reference is None:
            continue
        tail = reference.rsplit("/", 2)
        # Patient/[id], or its URL on this server's base (/fhir/Patient/[id]).
        local = len(tail) == 2 or (len(tail) == 3 and tail[0].endswith("/fhir"))
        if len(tail) >= 2 and tail[-2] == "Patient" and local and tail[-1]:
            named.add(tail[-1])
        elif bare and "/" not in reference:
            named.add(reference)
        else:
            raise errors.InvalidInputError("subject: a reference Patient/[id]")
    if len(named) != 1:
        raise errors.InvalidInputError("subject (or patient): one patient, Patient/[id]")
    found = patient_id_of(named.pop())
    if found is None:
        raise errors.NotFoundError("no such patient")
    return found


Reference = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=512,
        pattern=r"^[\x21-\x7e]+$",
        description="Patient/[id] (or its URL)",
    ),
]
Count = Annotated[
    int,
    Query(
        alias="_count", ge=0, le=MAX_COUNT, json_schema_extra=INT32, description="entries a page"
    ),
]
Offset = Annotated[
    int,
    Query(
        alias="_offset", ge=0, le=10_000_000, json_schema_extra=INT32,
        description="entries to skip",
    ),
]  # fmt: skip


@functools.lru_cache(maxsize=16)
def _capabilities(base: str, version: str) -> dict[str, Any]:
    # Built and validated once per base URL: the route needs no token, so it does no work.
    return capability_statement(base, version)


@public.get(
    "/metadata", responses=_RESOURCE, response_class=JSONResponse,
    openapi_extra={"security": [{}]},
)  # fmt: skip
async def fhir_metadata(request: Request, svc: Services) -> JSONResponse:
    """The CapabilityStatement: what this FHIR server does (no token needed)."""
    return fhir(_capabilities(_base(request, svc), str(request.app.version)))


@router.get(
    "/Patient/{fhir_id}", responses={**_RESOURCE, **_NOT_FOUND}, response_class=JSONResponse
)
async def fhir_read_patient(
    fhir_id: Annotated[str, Path(pattern=_FHIR_ID, max_length=64, description="Patient.id")],
    who: Caller,
    svc: Services,
    request: Request,
) -> JSONResponse:
    """A Patient: identifiers, name, birth date, enrolment (their care team, or emergency)."""
    _check_parameters(request, frozenset({"_format"}))
    pid = patient_id_of(fhir_id)
    if pid is None:
        raise errors.NotFoundError("no such patient")
    return fhir(await svc.fhir.patient(caller(request, who), pid))


def _page_url(request: Request, svc: ApiServices, offset: int, count: int) -> str:
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("_offset", "_count")]
    query = urlencode([*kept, ("_count", str(count)), ("_offset", str(offset))])
    return f"{_root(request, svc)}{request.url.path}?{query}"


@router.get("/Observation", responses={**_RESOURCE, **_NOT_FOUND}, response_class=JSONResponse)
async def fhir_search_observations(
    who: Caller,
    svc: Services,
    request: Request,
    subject: Reference = None,
    patient: Reference = None,
    count: Count = DEFAULT_COUNT,
    offset: Offset = 0,
) -> JSONResponse:
    """A patient's Observations: the twin's severity (model-derived) first, then their record."""
    _check_parameters(request, _SEARCH)
    pid = _subject(subject, patient)
    found, total = await svc.fhir.observations(
        caller(request, who), pid, offset=offset, count=count
    )
    after = offset + count
    bundle = searchset(
        found,
        base=_base(request, svc),
        total=total,
        self_url=_page_url(request, svc, offset, count),
        next_url=_page_url(request, svc, after, count) if count > 0 and after < total else None,
    )
    return fhir(bundle)


@router.get("/RiskAssessment", responses={**_RESOURCE, **_NOT_FOUND}, response_class=JSONResponse)
async def fhir_search_risk_assessments(
    who: Caller,
    svc: Services,
    request: Request,
    subject: Reference = None,
    patient: Reference = None,
) -> JSONResponse:
    """A patient's RiskAssessment: the twin's current risks and forecast probabilities."""
    _check_parameters(request, frozenset({"subject", "patient", "_format"}))
    pid = _subject(subject, patient)
    found = await svc.fhir.risk_assessments(caller(request, who), pid)
    self_url = f"{_root(request, svc)}{request.url.path}?{request.url.query}"
    return fhir(searchset(found, base=_base(request, svc), total=len(found), self_url=self_url))


def _status_path(job_id: str) -> str:
    return f"/fhir/$export-status/{job_id}"


@router.get(
    "/Group/{care_team}/$export",
    status_code=202,
    response_class=Response,
    responses={202: {"description": "queued: poll the Content-Location", "headers": {
        "Content-Location": {"schema": {"type": "string", "format": "uri", "maxLength": 2048},
                             "required": True,
                             "description": "the export's status URL"}}}},
)  # fmt: skip
async def fhir_export_group(
    care_team: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")],
    who: Caller,
    svc: Services,
    request: Request,
    prefer: Annotated[
        str | None,
        Header(max_length=256, pattern=r"^[\x20-\x7e]+$", description="respond-async"),
    ] = None,
    _type: Annotated[
        str | None,
        Query(
            alias="_type",
            max_length=512,
            pattern=r"^[A-Za-z, ]+$",
            description="resource types, comma-separated",
        ),
    ] = None,
    _output_format: Annotated[
        str | None,
        Query(
            alias="_outputFormat",
            max_length=64,
            pattern=r"^[a-z/+]+$",
            description="application/fhir+ndjson (NDJSON)",
        ),
    ] = None,
) -> Response:
    """Bulk Data kick-off: export a care team's patients (``Prefer: respond-async``)."""
    request_url = f"{_root(request, svc)}{request.url.path}"
    if request.url.query:
        request_url += f"?{request.url.query}"
    job = await svc.fhir.submit_export(
        caller(request, who),
        care_team,
        parameters=request.query_params.multi_items(),
        asynchronous=_prefers_async(prefer),
        request_url=request_url,
    )
    info = operation_outcome(202, "export queued", severity="information")
    return fhir(info, 202, **{"Content-Location": _root(request, svc) + _status_path(job.job_id)})


@router.get("/$export-status/{job_id}", response_class=Response, responses=_STATUS)
async def fhir_export_status(
    job_id: JobId, who: Caller, svc: Services, request: Request
) -> Response:
    """Bulk Data status: 202 while the export runs, then its manifest (200) or failure (500)."""
    job, asked = await svc.fhir.export_status(caller(request, who), job_id)
    if job.status in ("queued", "running"):
        return Response(
            status_code=202,
            headers={"Retry-After": str(POLL_AFTER_S), "X-Progress": export.progress(job)},
        )
    if job.status == "failed":
        return outcome(500, f"the export failed: {job.error or 'unknown error'}")
    root = _root(request, svc)
    body = export.manifest(
        job,
        request_url=asked.request_url,
        file_url=lambda name: f"{root}/fhir/$export-file/{job_id}/{name}.ndjson",
    )
    headers = {}
    if job.expires_at is not None:
        headers["Expires"] = format_datetime(datetime.fromisoformat(job.expires_at), usegmt=True)
    return JSONResponse(body, headers=headers)


@router.delete(
    "/$export-status/{job_id}", status_code=202, response_class=JSONResponse,
    responses=outcomes(404),
)  # fmt: skip
async def fhir_delete_export(
    job_id: JobId, who: Caller, svc: Services, request: Request
) -> JSONResponse:
    """Bulk Data delete: cancel a running export, or delete a finished one's files."""
    await svc.fhir.delete_export(caller(request, who), job_id)
    return fhir(operation_outcome(202, "export deleted", severity="information"), 202)


@router.get(
    "/$export-file/{job_id}/{file_name}",
    response_class=StreamingResponse,
    responses={200: {"description": "one resource per line",
                     "content": {FHIR_NDJSON: {"schema": {"description": "NDJSON"}}}}},
)  # fmt: skip
async def fhir_export_file(
    job_id: JobId,
    file_name: Annotated[str, Path(max_length=80, pattern=r"^[A-Z][A-Za-z]{1,63}\.ndjson$")],
    who: Caller,
    svc: Services,
    request: Request,
) -> StreamingResponse:
    """One file of a finished export (the same token as the kick-off's)."""
    name = file_name.removesuffix(".ndjson")
    lines = await svc.fhir.export_file(caller(request, who), job_id, name)
    return StreamingResponse(lines, media_type=FHIR_NDJSON)
