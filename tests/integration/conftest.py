"""The HTTP API in process (httpx ASGI transport) wired by the composition root itself.

``open_api_services`` and ``build_host_ports`` choose the embedded stores from settings pointed
at a temporary folder; the twins run in a real :class:`TwinHost` in this process.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.api.app import create_app
from deployments.api.auth import mint_token
from deployments.api.observability import PrometheusMetrics
from deployments.api.services import ApiServices
from deployments.bootstrap import open_api_services
from deployments.host_ports import build_host_ports
from twin.client import AsyncClient, RetryPolicy
from twin.service.host import TwinHost
from twin.settings import TwinSettings

SECRET = "s" * 48
ISSUER, AUDIENCE = "novamind-local", "novamind-api"


def bearer(role: str, sub: str = "user", team: tuple[str, ...] = ()) -> dict[str, str]:
    """An Authorization header for a locally minted token."""
    token = mint_token(
        SECRET,
        subject=sub,
        role=role,
        issuer=ISSUER,
        audience=AUDIENCE,
        care_team=team,  # type: ignore[arg-type]
    )
    return {"Authorization": f"Bearer {token}"}


@dataclass
class ApiEnv:
    """A running app: its services, a raw HTTP client, and SDK clients per caller."""

    services: ApiServices
    app: Any
    http: httpx.AsyncClient
    metrics: PrometheusMetrics
    settings: TwinSettings

    def sdk(
        self, role: str, sub: str = "user", team: tuple[str, ...] = (), *, attempts: int = 2
    ) -> AsyncClient:
        token = bearer(role, sub, team)["Authorization"].split()[1]
        return AsyncClient(
            "http://novamind",
            token=token,
            transport=httpx.ASGITransport(app=self.app),
            retry=RetryPolicy(attempts=attempts, initial_s=0.01, max_s=0.05),
        )


def api_settings(tmp_path: Path, **overrides: Any) -> TwinSettings:
    """Embedded settings in ``tmp_path`` with the test secret."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "particles": 200,
        "jwt_secret": SECRET,
        "research_key": "r" * 48,
        **overrides,
    }
    return TwinSettings(**values)


@pytest.fixture
async def api_env(tmp_path: Path) -> AsyncIterator[ApiEnv]:
    async with open_env(api_settings(tmp_path)) as env:
        yield env


@asynccontextmanager
async def open_env(
    settings: TwinSettings, *, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[ApiEnv]:
    """Open the stores, a TwinHost (on ``clock``, monotonic seconds) and the app; close after."""
    stores = await build_host_ports(settings)
    host = TwinHost(stores, settings=settings.host, clock=clock)
    metrics = PrometheusMetrics()
    try:
        async with open_api_services(settings, host, metrics) as services:
            app = create_app(services)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://novamind") as http:
                yield ApiEnv(services, app, http, metrics, settings)
    finally:
        await stores.aclose()
