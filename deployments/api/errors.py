"""The one place errors become HTTP: ``application/problem+json`` (RFC 9457).

Messages carry field names and rules, never values that could be PHI; unexpected exceptions
become a bare 500 without detail.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from twin import errors
from twin.schemas import Problem

__all__ = ["PROBLEMS", "install_error_handlers", "problem"]

PROBLEM = "application/problem+json"
_STATUS: tuple[tuple[type[errors.TwinError], int, str], ...] = (
    (errors.RateLimitedError, 429, "Too Many Requests"),
    (errors.OverloadedError, 503, "Service Unavailable"),
    (errors.AuthenticationError, 401, "Unauthorized"),
    (errors.AuthorizationError, 403, "Forbidden"),
    (errors.NotFoundError, 404, "Not Found"),
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


_PROBLEM_CONTENT: dict[str, Any] = {
    "model": Problem,
    "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
#: Error answers every ``/v1`` route may give, documented in OpenAPI as problem+json.
PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {**_PROBLEM_CONTENT, "description": description}
    for status, description in (
        (400, "Malformed request (a body that is not JSON)"),
        (401, "No valid bearer token"),
        (403, "The caller's role may not do this"),
        (404, "No such resource (or not visible to the caller)"),
        (409, "Conflict with the resource's state (event order, a job not finished)"),
        (410, "The patient was erased"),
        (413, "Request body too large"),
        (422, "Invalid input"),
        (429, "Rate limit exceeded (Retry-After)"),
        (503, "A store is unavailable or full, or the service is at capacity (Retry-After)"),
    )
}

_TITLES = {404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request"}


def problem(
    status: int, title: str, detail: str | None = None, *, retry_after_s: int | None = None
) -> JSONResponse:
    """A problem+json response (``Retry-After`` on 429 and 503)."""
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    headers: dict[str, str] = {}
    if status in (429, 503):
        headers["Retry-After"] = str(retry_after_s or 1)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _detail(exc: errors.TwinError) -> str:
    """The error's own message.

    An error raised in a Ray actor arrives wrapped (``RayTaskError`` made an instance of its
    cause), whose text is the remote traceback with process ids, addresses and file paths:
    the client gets the cause's message instead.
    """
    cause = getattr(exc, "cause", None)
    return str(cause if isinstance(cause, errors.TwinError) else exc)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to one problem+json response."""

    @app.exception_handler(errors.TwinError)
    async def twin_error(request: Request, exc: errors.TwinError) -> JSONResponse:
        for cls, status, title in _STATUS:
            if isinstance(exc, cls):
                return problem(
                    status, title, _detail(exc), retry_after_s=getattr(exc, "retry_after_s", None)
                )
        return problem(500, "Internal Server Error")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Routing errors (404 unknown path, 405 method) in the same problem+json shape.
        response = problem(exc.status_code, _TITLES.get(exc.status_code, "Error"))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Locations and messages only: the offending input values are not echoed.
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]
        )
        return problem(422, "Unprocessable Content", fields)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return problem(500, "Internal Server Error")
