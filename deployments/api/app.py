"""The FastAPI application: middleware, health, the ``/v1`` and ``/fhir`` routers, error mapping.

``create_app(services)`` wires ready-made services (tests, plain ASGI); ``create_app(
open_services=...)`` opens them in the app's lifespan, in the process that serves (a Ray Serve
replica). Nothing here does I/O at import or construction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.api.errors import install_error_handlers, problem
from deployments.api.headers import EXPOSED, REQUEST_ID, rate_limit_headers
from deployments.api.observability import ACCESS_LOG
from deployments.api.routes import (
    audit,
    cohorts,
    feed,
    fhir,
    ingest_jobs,
    observations,
    patients,
    research,
    scenarios,
    twins,
)
from deployments.api.services import ApiServices
from deployments.api.tracing import TraceRequests
from twin import schemas

__all__ = ["MAX_BODY_BYTES", "ApiServices", "create_app"]

MAX_BODY_BYTES = 1 << 20

ServicesOpener = Callable[[], AbstractAsyncContextManager[ApiServices]]

_DESCRIPTION = """Psychiatric digital twins: observations in, calibrated estimates, forecasts and
what-if scenarios out.

Every `/v1` operation needs a bearer token (JWT) from the identity provider. Errors are
`application/problem+json` (RFC 9457). Answers carry `RateLimit` and `RateLimit-Policy`
(draft-ietf-httpapi-ratelimit-headers); a `429` or `503` carries `Retry-After`. Every field is
bounded: a value past a bound is refused with `422`, never clipped. The conventions are in the
project's `docs/api.md`."""

#: One entry per router tag: the operations' groups in the document and on ``/docs``.
_TAGS = [
    {"name": name, "description": description}
    for name, description in (
        ("patients", "Register, list, read and erase patients; emergency access."),
        ("observations", "Observations and interventions, each with an idempotency key."),
        ("twins", "A twin's estimate, its forecasts, and search over the caller's twins."),
        ("scenarios", "What-if comparisons of one patient's schedules, saved as reports."),
        ("feed", "A patient's events as Server-Sent Events, replayable."),
        ("research", "De-identified twin summaries for researchers."),
        ("audit", "The hash-chained audit trail, for auditors."),
        ("ingest", "Bulk-ingest jobs (FHIR Bulk Data's asynchronous pattern)."),
        ("cohorts", "Cohort what-if runs for researchers."),
        (
            "fhir",
            "FHIR R4: a patient's record and twin as resources (errors are "
            "OperationOutcomes); a care team's Bulk Data $export.",
        ),
        ("health", "Liveness and readiness probes (no token, no rate limit)."),
    )
]
#: Where the API is served: wherever this document was read from. The audience is internal:
#: clinicians' and services' apps and researchers of the deploying organisation, with tokens
#: from its identity provider.
_SERVERS = [
    {
        "url": "/",
        "description": "This deployment (local, staging or production): the origin that "
        "served this document",
        "x-internal": True,
    }
]


def _operation_id(route: APIRoute) -> str:
    return route.name


#: The probes answer anyone: the orchestrator calls them without a token.
_OPEN: dict[str, Any] = {"security": [{}]}


class BoundedBody:
    """Refuses request bodies over ``limit`` bytes with 413, declared or streamed (chunked)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, receive, send)
            return
        seen = 0
        refused = False

        async def counted() -> Message:
            # A streamed body over the limit: answer 413 now and tell the app the client left.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                refused = True
                await self._refuse(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, guarded_send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413, "Content Too Large", f"request bodies are limited to {self.limit} bytes"
        )
        await response(scope, receive, send)


def create_app(
    services: ApiServices | None = None,
    *,
    open_services: ServicesOpener | None = None,
    docs: bool = True,
    cors_origins: tuple[str, ...] = (),
) -> FastAPI:
    """Build the app around its services, given or opened at start-up (exactly one).

    ``docs=False`` hides the interactive ``/docs`` page (production; OWASP API8); the OpenAPI
    document stays at ``/openapi.json`` as the route inventory. ``cors_origins`` are the web
    origins whose pages may call the API from a browser (none by default).
    """
    if (services is None) == (open_services is None):
        raise ValueError("give exactly one of services or open_services")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if open_services is None:
            yield
            return
        async with open_services() as opened:
            app.state.services = opened
            yield

    app = FastAPI(
        title="Novamind",
        version="1.0",
        docs_url="/docs" if docs else None,
        redoc_url=None,
        lifespan=lifespan,
        description=_DESCRIPTION,
        openapi_tags=_TAGS,
        servers=_SERVERS,
        contact={"name": "Novamind platform team"},
        # Operation ids are the handlers' names (read_patient, twin_state, ...): what a client
        # generated from the document calls its functions.
        generate_unique_id_function=_operation_id,
        # FastAPI's own OpenTelemetry spans record the raw path (patient ids) and the query
        # string, and its logs the input of a refused request: off. Requests are traced by
        # TraceRequests (route templates only).
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    if services is not None:
        app.state.services = services
    install_error_handlers(app)

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        # Request ids are ours (a client's x-request-id is not trusted into the audit trail).
        request.state.request_id = uuid.uuid4().hex
        started = time.perf_counter()
        response: Response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = getattr(request.scope.get("route"), "path", "unmatched")
        svc: ApiServices | None = getattr(request.app.state, "services", None)
        if svc is not None:
            svc.metrics.request(route, request.method, response.status_code, elapsed)
        ACCESS_LOG.info(
            "request",
            extra={
                "request_id": request.state.request_id,
                "method": request.method,
                "route": route,
                "status": response.status_code,
                "latency_ms": round(elapsed * 1000.0, 2),
                "role": getattr(request.state, "role", None),
            },
        )
        response.headers[REQUEST_ID] = request.state.request_id
        response.headers["Cache-Control"] = response.headers.get("Cache-Control", "no-store")
        quota = getattr(request.state, "quota", None)
        if quota is not None:  # the caller (or, for a 401, its address) was counted
            response.headers.update(rate_limit_headers(quota))
        return response

    app.add_middleware(BoundedBody, limit=MAX_BODY_BYTES)
    if cors_origins:
        # Bearer tokens, never cookies: no credentials mode. Outermost, so that refusals
        # (413, 429) reach the allowed page too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            # traceparent: a browser app's tracing continues into the API's spans.
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "traceparent"],
            expose_headers=list(EXPOSED),
            allow_credentials=False,
            max_age=600,
        )
    # Around everything else: a refused body (413), a preflight and every other answer are in
    # the request's span.
    app.add_middleware(TraceRequests)

    @app.get(
        "/health/liveness", tags=["health"], response_model=schemas.HealthOut, openapi_extra=_OPEN
    )
    async def liveness() -> schemas.HealthOut:
        """The process is up."""
        return schemas.HealthOut(status="alive")

    @app.get(
        "/health/readiness",
        tags=["health"],
        response_model=schemas.HealthOut,
        responses={503: {"description": "a dependency is unavailable", "model": schemas.HealthOut}},
        openapi_extra=_OPEN,
    )
    async def readiness(request: Request) -> JSONResponse:
        """Every dependency answers (stores, twin hosts)."""
        svc: ApiServices | None = getattr(request.app.state, "services", None)
        ok = svc is not None and (await svc.ready() if svc.ready is not None else True)
        return JSONResponse(
            {"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503
        )

    for module in (
        patients,
        observations,
        twins,
        scenarios,
        feed,
        research,
        audit,
        ingest_jobs,
        cohorts,
        fhir,
    ):
        app.include_router(module.router)
    app.include_router(fhir.public)  # the CapabilityStatement: no token, as the probes
    return app
