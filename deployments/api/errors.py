"""The one place errors become HTTP: ``application/problem+json`` (RFC 9457).

Messages carry field names and rules, never values that could be PHI; unexpected exceptions
become a bare 500 without detail.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from twin import errors

__all__ = ["install_error_handlers", "problem"]

PROBLEM = "application/problem+json"
_STATUS: tuple[tuple[type[errors.TwinError], int, str], ...] = (
    (errors.AuthenticationError, 401, "Unauthorized"),
    (errors.AuthorizationError, 403, "Forbidden"),
    (errors.NotFoundError, 404, "Not Found"),
    (errors.KeyAccessError, 410, "Gone"),
    (errors.EventOrderError, 409, "Conflict"),
    (errors.InvalidInputError, 422, "Unprocessable Content"),
    (errors.StorageUnavailableError, 503, "Service Unavailable"),
    (errors.HostUnavailableError, 503, "Service Unavailable"),
)


def problem(status: int, title: str, detail: str | None = None) -> JSONResponse:
    """A problem+json response."""
    body = {"type": "about:blank", "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    headers = {"Retry-After": "1"} if status == 503 else {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to one problem+json response."""

    @app.exception_handler(errors.TwinError)
    async def twin_error(request: Request, exc: errors.TwinError) -> JSONResponse:
        for cls, status, title in _STATUS:
            if isinstance(exc, cls):
                return problem(status, title, str(exc))
        return problem(500, "Internal Server Error")

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
