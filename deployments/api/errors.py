"""The one place errors become HTTP: problem+json (RFC 9457), OperationOutcomes under ``/fhir``.

Everywhere but ``/fhir`` an error is ``application/problem+json``. Messages carry field names
and rules, never values that could be PHI; unexpected exceptions become a bare 500 without
detail. :func:`problems` documents the answers an operation can give, with their headers
(:mod:`deployments.api.headers`).

A FHIR client reads errors as OperationOutcomes (R4 §3.1.0.4; the Bulk Data IG's kick-off and
status errors), so every error of a ``/fhir`` path is one (:func:`outcome`, documented by
:func:`outcomes`), with the same status, text and headers as its problem+json twin, but for
invalid input: FHIR answers a request it cannot process (an unknown search or export parameter,
a bound broken) with 400, where ``/v1`` answers 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from deployments.api.headers import error_headers
from twin import errors
from twin.fhir_out.rest import FHIR_JSON, operation_outcome
from twin.schemas import MAX_DETAIL, OperationOutcome, Problem

__all__ = ["BODY", "install_error_handlers", "outcome", "outcomes", "problem", "problems"]

PROBLEM = "application/problem+json"
#: The path under which errors are OperationOutcomes.
FHIR_PATH = "/fhir"
_STATUS: tuple[tuple[type[errors.TwinError], int, str], ...] = (
    (errors.RateLimitedError, 429, "Too Many Requests"),
    (errors.OverloadedError, 503, "Service Unavailable"),
    (errors.AuthenticationError, 401, "Unauthorized"),
    (errors.AuthorizationError, 403, "Forbidden"),
    (errors.NotFoundError, 404, "Not Found"),
    # Before KeyAccessError: a damaged data key is an operator's to restore, not an erasure.
    (errors.DataKeyDamagedError, 503, "Service Unavailable"),
    (errors.KeyAccessError, 410, "Gone"),
    (errors.EventGapError, 422, "Unprocessable Content"),
    (errors.EventOrderError, 409, "Conflict"),
    (errors.JobNotFinishedError, 409, "Conflict"),
    (errors.IdentifierTakenError, 409, "Conflict"),
    (errors.InvalidInputError, 422, "Unprocessable Content"),
    # A full disk (StorageFullError) too: nothing of the write was kept, and a retry with the
    # same idempotency keys succeeds once space is freed. 503, not WebDAV's 507: every client
    # (the SDK, gateways) retries a 503 with its Retry-After; a 507 would be given up on.
    (errors.StorageUnavailableError, 503, "Service Unavailable"),
    (errors.HostUnavailableError, 503, "Service Unavailable"),
)


_DESCRIPTIONS = {
    400: "The body could not be read",
    401: "No valid bearer token (or the client address spent its failed-authentication budget: "
    "429)",
    403: "The caller's role or care team may not do this",
    404: "No such resource (or not visible to the caller)",
    409: "Conflict with the resource's state (event order, an identifier taken, a job not "
    "finished)",
    410: "The patient's data key was destroyed: the patient was erased",
    413: "Request body too large (1 MiB)",
    415: "The body is not application/json",
    422: "Invalid input: which field breaks which rule (never the value sent)",
    429: "The caller's request budget is spent, or it holds as many jobs or streams as allowed; "
    "retry after Retry-After seconds",
    500: "An unexpected error (nothing about it is disclosed)",
    503: "A store or twin host is unavailable or full, the service is at capacity, or a key is "
    "damaged or refused (nothing erased); retry after Retry-After seconds",
}
#: What every authenticated operation can answer: its caller, the limits, the service.
_EVERY = (401, 403, 422, 429, 500, 503)
#: What an operation that reads a JSON body can answer besides.
BODY = (400, 413, 415)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses of the problem answers ``statuses`` (and those every operation gives).

    Each is ``application/problem+json`` with the headers it carries: routers declare the
    answers all their operations give, operations add their own (``404`` for a resource in the
    path, :data:`BODY` for a request body, ...).
    """
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            "headers": error_headers(status),
        }
        for status in sorted({*_EVERY, *statuses})
    }


#: What every authenticated ``/fhir`` operation can answer (400: FHIR's invalid input).
_FHIR_EVERY = (400, 401, 403, 429, 500, 503)


def outcomes(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses of the OperationOutcome answers ``statuses`` (and every ``/fhir`` one's).

    As :func:`problems`, in ``application/fhir+json``; invalid input is ``400`` there.
    """
    described = {**_DESCRIPTIONS, 400: "Invalid request: which parameter breaks which rule"}
    content = {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}
    answers: dict[int | str, dict[str, Any]] = {
        status: {
            "model": OperationOutcome,
            "description": described[status],
            "content": content,
            "headers": error_headers(status),
        }
        for status in sorted({*_FHIR_EVERY, *statuses})
    }
    # Any other client error is an OperationOutcome too (405 for a method the path does not
    # take); never FastAPI's 422 validation body, which /fhir does not send.
    answers["4XX"] = {
        "model": OperationOutcome,
        "description": "Another client error (405: a method the path does not take)",
        "content": content,
        "headers": error_headers(405),
    }
    return answers


_TITLES = {
    400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    415: "Unsupported Media Type",
}  # fmt: skip


def problem(
    status: int, title: str, detail: str | None = None, *, retry_after_s: int | None = None
) -> JSONResponse:
    """A problem+json response (``Retry-After`` on 429 and 503)."""
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    if detail is not None:
        # The document bounds a detail; a longer message (ten validation errors of long field
        # paths) is cut, never the answer failed.
        body["detail"] = detail if len(detail) <= MAX_DETAIL else detail[: MAX_DETAIL - 1] + "…"
    headers: dict[str, str] = {}
    if status in (429, 503):
        headers["Retry-After"] = str(retry_after_s or 1)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def outcome(
    status: int, diagnostics: str | None, *, retry_after_s: int | None = None
) -> JSONResponse:
    """An OperationOutcome response (its headers as :func:`problem`'s)."""
    if diagnostics is not None and len(diagnostics) > MAX_DETAIL:
        diagnostics = diagnostics[: MAX_DETAIL - 1] + "…"
    headers: dict[str, str] = {}
    if status in (429, 503):
        headers["Retry-After"] = str(retry_after_s or 1)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    body = operation_outcome(status, diagnostics)
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def _is_fhir(request: Request) -> bool:
    path = request.url.path[len(request.scope.get("root_path", "")) :]
    return path == FHIR_PATH or path.startswith(FHIR_PATH + "/")


def _answer(
    request: Request,
    status: int,
    title: str,
    detail: str | None = None,
    *,
    retry_after_s: int | None = None,
) -> JSONResponse:
    """The error answer for ``request``'s path: an OperationOutcome under /fhir, else a problem."""
    if _is_fhir(request):
        status = 400 if status == 422 else status
        return outcome(status, detail or title, retry_after_s=retry_after_s)
    return problem(status, title, detail, retry_after_s=retry_after_s)


def _detail(exc: errors.TwinError) -> str:
    """The error's own message.

    An error raised in a Ray actor arrives wrapped (``RayTaskError`` made an instance of its
    cause), whose text is the remote traceback with process ids, addresses and file paths:
    the client gets the cause's message instead.
    """
    cause = getattr(exc, "cause", None)
    return str(cause if isinstance(cause, errors.TwinError) else exc)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to one problem+json (or, under /fhir, OperationOutcome) response."""

    @app.exception_handler(errors.TwinError)
    async def twin_error(request: Request, exc: errors.TwinError) -> JSONResponse:
        for cls, status, title in _STATUS:
            if isinstance(exc, cls):
                return _answer(
                    request, status, title, _detail(exc),
                    retry_after_s=getattr(exc, "retry_after_s", None),
                )  # fmt: skip
        return _answer(request, 500, "Internal Server Error")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Routing errors (404 unknown path, 405 method) in the same problem+json shape.
        response = _answer(request, exc.status_code, _TITLES.get(exc.status_code, "Error"))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Locations and messages only: the offending input values are not echoed.
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]
        )
        return _answer(request, 422, "Unprocessable Content", fields)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _answer(request, 500, "Internal Server Error")
