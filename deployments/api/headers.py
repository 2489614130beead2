"""The headers the API's answers carry, sent and documented in one place.

- ``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-10): the
  budget an answer was counted against and what is left of it, from the limiter's moving
  window (:class:`deployments.api.limiter.Quota`). Every ``/v1`` success carries them (the
  caller was authenticated and counted); a ``401`` carries the source's budget of failed
  authentications; an error found before the caller is known (a body too large, not JSON)
  carries none, so on errors they are documented as optional.
- ``Retry-After`` (seconds) on every ``429`` and ``503``; ``WWW-Authenticate: Bearer`` on every
  ``401`` (:func:`deployments.api.errors.problem`).
- ``X-Request-ID``: the request's id in the audit trail and the access log.
- ``Deprecation`` (RFC 9745) and ``Sunset`` (RFC 8594) on an answer to a request that used a
  deprecated input (an event placed by ``day``): since when it is deprecated, and after when
  it is no longer read (:func:`deprecation_headers`, :func:`deprecation_docs`).
- ``Access-Control-Allow-Origin``: only for a browser origin on the allow-list
  (``NOVAMIND_CORS_ORIGINS``, empty by default: no cross-origin browser access).

:class:`V1Route` documents the success headers on every ``/v1`` operation (the problem answers
get theirs from :func:`deployments.api.errors.problems`) and refuses a request body that is
not JSON with ``415``.
"""

from __future__ import annotations

import email.message
import email.utils
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from deployments.api.limiter import Quota

__all__ = [
    "ALLOW_ORIGIN",
    "DEPRECATION",
    "EXPOSED",
    "RATE_LIMIT",
    "RATE_LIMIT_POLICY",
    "REQUEST_ID",
    "RETRY_AFTER",
    "SUNSET",
    "V1Route",
    "deprecation_docs",
    "deprecation_headers",
    "error_headers",
    "rate_limit_headers",
    "success_headers",
]

RATE_LIMIT = "RateLimit"
RATE_LIMIT_POLICY = "RateLimit-Policy"
RETRY_AFTER = "Retry-After"
REQUEST_ID = "X-Request-ID"
ALLOW_ORIGIN = "Access-Control-Allow-Origin"
DEPRECATION = "Deprecation"
SUNSET = "Sunset"
#: Headers a browser app on an allowed origin may read (CORS hides the rest).
EXPOSED = (
    RATE_LIMIT, RATE_LIMIT_POLICY, RETRY_AFTER, REQUEST_ID, "WWW-Authenticate",
    "Content-Location", "X-Progress", DEPRECATION, SUNSET,
)  # fmt: skip
#: The longest Retry-After the service sends, seconds (rate limits reset within a minute).
MAX_RETRY_AFTER_S = 3600


def rate_limit_headers(quota: Quota) -> dict[str, str]:
    """The ``RateLimit-Policy`` and ``RateLimit`` fields of ``quota`` (structured fields)."""
    policy = quota.policy
    return {
        RATE_LIMIT_POLICY: f'"{policy.name}";q={policy.quota};w={policy.window_s}',
        RATE_LIMIT: f'"{policy.name}";r={quota.remaining};t={quota.reset_s}',
    }


def _header(description: str, schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


_POLICY_NAME = r'"[a-z-]{1,32}"'


def _rate_limit_docs(*, required: bool) -> dict[str, dict[str, Any]]:
    when = "" if required else " Sent once the caller (for a 401: its address) was counted."
    return {
        RATE_LIMIT_POLICY: _header(
            "The budget this request was counted against: its name, `q` requests in any `w` "
            "seconds (`requests`: per caller; `auth-failures`: failed authentications per "
            "client address)." + when,
            {
                "type": "string",
                "maxLength": 64,
                "pattern": f"^{_POLICY_NAME};q=[0-9]{{1,9}};w=[0-9]{{1,5}}$",
                "example": '"requests";q=600;w=60',
            },
            required=required,
        ),
        RATE_LIMIT: _header(
            "What is left of that budget: `r` requests now, and `t` seconds until the oldest "
            "request in the window leaves it." + when,
            {
                "type": "string",
                "maxLength": 64,
                "pattern": f"^{_POLICY_NAME};r=[0-9]{{1,9}};t=[0-9]{{1,5}}$",
                "example": '"requests";r=599;t=60',
            },
            required=required,
        ),
    }


_REQUEST_ID_SCHEMA = {
    "type": "string",
    "minLength": 32,
    "maxLength": 32,
    "pattern": "^[0-9a-f]{32}$",
}
_ALLOW_ORIGIN_DOC = _header(
    "Sent only to a browser whose `Origin` is on the deployment's allow-list "
    "(`NOVAMIND_CORS_ORIGINS`; empty by default, so no web page of another origin can read "
    "an answer). Never `*`.",
    {"type": "string", "maxLength": 255, "pattern": r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$"},
    required=False,
)
_RETRY_AFTER_DOC = _header(
    "Seconds to wait before trying again.",
    {"type": "integer", "format": "int32", "minimum": 1, "maximum": MAX_RETRY_AFTER_S},
    required=True,
)
_WWW_AUTHENTICATE_DOC = _header(
    "The scheme to authenticate with (RFC 6750).",
    {"type": "string", "enum": ["Bearer"]},
    required=True,
)


def success_headers() -> dict[str, dict[str, Any]]:
    """The headers every ``/v1`` success carries, as OpenAPI header objects."""
    return {
        **_rate_limit_docs(required=True),
        REQUEST_ID: _header(
            "The request's id in the audit trail and the access log.",
            _REQUEST_ID_SCHEMA,
            required=True,
        ),
        ALLOW_ORIGIN: _ALLOW_ORIGIN_DOC,
    }


def error_headers(status: int) -> dict[str, dict[str, Any]]:
    """The headers a problem answer of ``status`` carries, as OpenAPI header objects."""
    headers: dict[str, dict[str, Any]] = {}
    if status < 500:
        headers.update(_rate_limit_docs(required=False))
    if status in (429, 503):
        headers[RETRY_AFTER] = _RETRY_AFTER_DOC
    if status == 401:
        headers["WWW-Authenticate"] = _WWW_AUTHENTICATE_DOC
    if status != 500:  # a 500 is written outside the middleware that adds the id
        headers[REQUEST_ID] = _header(
            "The request's id in the audit trail and the access log.",
            _REQUEST_ID_SCHEMA,
            required=False,
        )
    headers[ALLOW_ORIGIN] = _ALLOW_ORIGIN_DOC
    return headers


def deprecation_headers(since: datetime, sunset: datetime) -> dict[str, str]:
    """The ``Deprecation`` and ``Sunset`` fields of a deprecated input (both aware instants).

    ``Deprecation`` is ``@`` and Unix seconds (RFC 9745, a structured-field date); ``Sunset`` an
    HTTP-date (RFC 8594).
    """
    return {
        DEPRECATION: f"@{int(since.timestamp())}",
        SUNSET: email.utils.format_datetime(sunset, usegmt=True),
    }


def deprecation_docs(what: str) -> dict[str, dict[str, Any]]:
    """The OpenAPI header objects of :func:`deprecation_headers` (sent only when ``what`` is)."""
    return {
        DEPRECATION: _header(
            f"Sent when the request used {what}, which is deprecated: since when (RFC 9745, "
            "`@` and Unix seconds).",
            {"type": "string", "maxLength": 24, "pattern": "^@-?[0-9]{1,15}$"},
            required=False,
        ),
        SUNSET: _header(
            f"Sent with `Deprecation`: after this instant {what} is no longer read (RFC 8594, "
            "an HTTP-date).",
            {"type": "string", "maxLength": 40, "example": "Wed, 30 Jun 2027 23:59:59 GMT"},
            required=False,
        ),
    }


def _is_json(content_type: str) -> bool:
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class V1Route(APIRoute):
    """A ``/v1`` operation: its successes document the headers they carry; its body is JSON.

    A body sent with another media type is refused with ``415`` (FastAPI itself would parse it
    as JSON-less bytes and answer ``422``); one sent without a ``Content-Type`` is read as
    JSON, as FastAPI does.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        responses: dict[int | str, dict[str, Any]] | None = None,
        status_code: int | None = None,
        **kwargs: Any,
    ) -> None:
        documented = dict(responses or {})
        successes = {status_code or 200} | {
            int(code) for code in documented if str(code).startswith("2")
        }
        for code in successes:
            key: int | str = str(code) if str(code) in documented else code
            answer = dict(documented.get(key, {}))
            answer["headers"] = {**success_headers(), **answer.get("headers", {})}
            documented[key] = answer
        super().__init__(path, endpoint, responses=documented, status_code=status_code, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The handler, behind a check that a body sent is JSON."""
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def json_only(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            if content_type and not _is_json(content_type):
                raise HTTPException(415, "the body must be application/json")
            return await handler(request)

        return json_only


def polling_headers(unit: str) -> dict[str, dict[str, Any]]:
    """The headers of a Bulk Data style ``202`` while a job is queued or running.

    Args:
        unit: What ``X-Progress`` counts (``records``, ``patients``).
    """
    return {
        "Retry-After": {
            "required": True,
            "description": "seconds to wait before polling again",
            "schema": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 3600},
        },
        "X-Progress": {
            "required": True,
            "description": f"the status and, once known, how many {unit} are done",
            "schema": {
                "type": "string",
                "maxLength": 64,
                "pattern": f"^(queued|running)(: [0-9]{{1,16}} of [0-9]{{1,16}} {unit})?$",
            },
        },
    }
