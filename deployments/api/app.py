"""The FastAPI application: middleware, health, the ``/v1`` routers, the error mapping.

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
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.api.errors import install_error_handlers, problem
from deployments.api.observability import ACCESS_LOG
from deployments.api.routes import (
    audit,
    cohorts,
    feed,
    ingest_jobs,
    observations,
    patients,
    research,
    scenarios,
    twins,
)
from deployments.api.services import ApiServices

__all__ = ["MAX_BODY_BYTES", "ApiServices", "create_app"]

MAX_BODY_BYTES = 1 << 20

ServicesOpener = Callable[[], AbstractAsyncContextManager[ApiServices]]


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
) -> FastAPI:
    """Build the app around its services, given or opened at start-up (exactly one).

    ``docs=False`` hides the interactive ``/docs`` page (production; OWASP API8); the OpenAPI
    document stays at ``/openapi.json`` as the route inventory.
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
        description="Psychiatric digital twins: observations in, calibrated estimates, "
        "forecasts and what-if scenarios out. Errors are application/problem+json.",
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
        response.headers["X-Request-ID"] = request.state.request_id
        response.headers["Cache-Control"] = response.headers.get("Cache-Control", "no-store")
        return response

    app.add_middleware(BoundedBody, limit=MAX_BODY_BYTES)

    @app.get("/health/liveness", tags=["health"])
    async def liveness() -> dict[str, str]:
        """The process is up."""
        return {"status": "alive"}

    @app.get(
        "/health/readiness",
        tags=["health"],
        responses={503: {"description": "a dependency is unavailable"}},
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
    ):
        app.include_router(module.router)
    return app
