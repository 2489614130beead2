"""Errors become problem details that carry the error's own message, never a remote traceback."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from ray.exceptions import RayTaskError

from deployments.api.errors import install_error_handlers
from twin import errors
from twin.domain.patients import DATA_KEY_DAMAGED, ERASED


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


async def test_a_data_key_that_does_not_open_is_no_erasure():
    # 410 means the patient was erased; a stored key that does not open is a fault an operator
    # repairs (503), though it is a KeyAccessError to the listings that pass over it.
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/damaged")
    async def damaged() -> None:
        raise errors.DataKeyDamagedError(DATA_KEY_DAMAGED)

    @app.get("/erased")
    async def erased() -> None:
        raise errors.KeyAccessError(ERASED)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        damaged_answer = await client.get("/damaged")
        erased_answer = await client.get("/erased")
    assert damaged_answer.status_code == 503
    assert damaged_answer.json()["detail"] == DATA_KEY_DAMAGED
    assert "erased" not in damaged_answer.json()["detail"]
    assert erased_answer.status_code == 410
