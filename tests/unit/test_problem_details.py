"""Errors become problem details that carry the error's own message, never a remote traceback."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from ray.exceptions import RayTaskError

from deployments.api.errors import install_error_handlers
from twin import errors


async def test_an_error_raised_in_an_actor_reaches_the_client_as_its_own_message():
    try:
        raise errors.EventGapError(5000.0, 0.0, 3653.0)
    except errors.EventGapError as exc:
        remote = RayTaskError(
            "TwinHostActor.ingest", "Traceback ... /app/twin/service/host.py line 9", exc
        ).as_instanceof_cause()
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise remote

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/boom")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail == str(errors.EventGapError(5000.0, 0.0, 3653.0))
    assert "pid=" not in detail and "Traceback" not in detail and "/app/" not in detail
