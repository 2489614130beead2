"""The same FastAPI app without Ray: one process, twins in an in-process ``TwinHost``.

For development, benchmarks (Serve against plain uvicorn) and tests that drive a live server:
``uvicorn --factory deployments.asgi:build_app``. Metrics use prometheus-client and are served
at ``/metrics`` by this mode only (inside Serve, Ray exports them). Traces are exported as in
Serve when an OTLP endpoint is configured (:mod:`deployments.telemetry`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response

from deployments.api.observability import PrometheusMetrics
from deployments.bootstrap import api_app
from deployments.host_ports import build_host_ports
from deployments.telemetry import configure_tracing
from twin.service.host import TwinHost
from twin.settings import TwinSettings

__all__ = ["build_app"]


def build_app(settings: TwinSettings | None = None) -> FastAPI:
    """The app with its own stores and twin host, opened in the server's lifespan."""
    settings = settings or TwinSettings()
    configure_tracing(settings, process="api")
    metrics = PrometheusMetrics()

    @asynccontextmanager
    async def open_host() -> AsyncIterator[TwinHost]:
        stores = await build_host_ports(settings)
        try:
            yield TwinHost(stores, settings=settings.host)
        finally:
            await stores.aclose()

    app = api_app(settings, metrics, open_host)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    return app
