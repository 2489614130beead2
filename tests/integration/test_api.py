"""The HTTP API in-process (httpx ASGI transport) over the embedded stores and a TwinHost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from deployments.api.app import ApiServices, create_app
from deployments.auth import TokenVerifier, mint_token
from storage.local import LocalCheckpointStore, LocalKeyProvider
from storage.sealed import EnvelopeSealer
from storage.sqlite import (
    SqliteAuditLog,
    SqliteDatabase,
    SqliteDataKeyStore,
    SqliteEventStore,
    SqlitePatientRegistry,
)
from twin.domain.audit import verify_chain
from twin.service.host import HostPorts, HostSettings, TwinHost

SECRET, ISS, AUD = "x" * 48, "https://idp.test", "novamind-api"
ADA = {
    "name": "Ada Canary",
    "birth_date": "1980-12-10",
    "mrn": "MRN-CANARY-1",
    "care_team": "team-1",
}


def token(role: str, sub: str = "user", team: tuple[str, ...] = ()) -> dict[str, str]:
    t = mint_token(SECRET, subject=sub, role=role, issuer=ISS, audience=AUD, care_team=team)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {t}"}


CLINICIAN = token("clinician", "dr-a", ("team-1",))
OTHER_CLINICIAN = token("clinician", "dr-b", ("team-2",))
ADMIN, SERVICE, RESEARCHER = (
    token("admin", "root"),
    token("service", "etl"),
    token("researcher", "r1"),
)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, SqliteAuditLog]]:
    db = await SqliteDatabase.open(tmp_path / "novamind.db")
    sealer = EnvelopeSealer(LocalKeyProvider(tmp_path / "keys"), SqliteDataKeyStore(db))
    host = TwinHost(
        HostPorts(SqliteEventStore(db, sealer), LocalCheckpointStore(tmp_path / "ckpt"), sealer),
        settings=HostSettings(particles=300),
    )
    audit = SqliteAuditLog(db)
    services = ApiServices(
        verifier=TokenVerifier(issuer=ISS, audience=AUD, secret=SECRET),
        registry=SqlitePatientRegistry(db, sealer),
        audit=audit,
        twins=host,
    )
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://novamind") as client:
        yield client, audit
    await db.close()


async def test_health(api):
    client, _ = api
    assert (await client.get("/health/liveness")).json() == {"status": "alive"}
    assert (await client.get("/health/readiness")).status_code == 200


async def test_a_clinicians_day_and_the_rules_around_it(api):
    client, audit = api
    assert (await client.post("/v1/patients", json=ADA)).status_code == 401
    created = await client.post("/v1/patients", json=ADA, headers=CLINICIAN)
    assert created.status_code == 201
    pid = created.json()["patient_id"]
    assert (await client.get(f"/v1/patients/{pid}", headers=CLINICIAN)).json()[
        "mrn"
    ] == "MRN-CANARY-1"
    for headers, status in (
        (OTHER_CLINICIAN, 403),
        (RESEARCHER, 403),
        (ADMIN, 200),
        (SERVICE, 403),
    ):
        assert (await client.get(f"/v1/patients/{pid}", headers=headers)).status_code == status
    items = [
        {"idempotency_key": "q1", "day": 0.5, "payload": {"type": "phq9", "total": 18,
                                                          "items": [3, 3, 3, 2, 2, 2, 1, 1, 1]}},
        {"idempotency_key": "g1", "day": 0.6, "payload": {"type": "gad7", "total": 11}},
    ]  # fmt: skip
    ingested = await client.post(
        f"/v1/patients/{pid}/observations", json={"items": items}, headers=SERVICE
    )
    assert ingested.status_code == 200
    body = ingested.json()
    assert [a["seq"] for a in body["acknowledged"]] == [1, 2]
    assert [a["rule"] for a in body["alerts"]] == ["safety_item9"]
    twin = (await client.get(f"/v1/patients/{pid}/twin", headers=CLINICIAN)).json()
    assert twin["last_seq"] == 2 and 0 <= twin["p_episode"] <= 1
    forecast = await client.post(f"/v1/patients/{pid}/forecast?weeks=4", headers=CLINICIAN)
    assert forecast.status_code == 200 and len(forecast.json()["phq9_quantiles"]) == 4
    # Every patient-data request, allowed or denied, is in the verified audit chain.
    entries = await audit.entries()
    assert verify_chain(entries).ok
    assert len(entries) == 1 + 1 + 4 + 1 + 1 + 1  # create, read, 4 reads, ingest, twin, forecast
    assert sum(e.record.outcome == "denied" for e in entries) == 3


async def test_bad_requests_are_problems_that_echo_no_values(api):
    client, _ = api
    pid = (await client.post("/v1/patients", json=ADA, headers=ADMIN)).json()["patient_id"]
    cases = [
        ({**ADA, "nickname": "x"}, "/v1/patients", 422),
        ({**ADA, "birth_date": "2999-99-99"}, "/v1/patients", 422),
        ({"items": [{"idempotency_key": "k", "day": 0, "payload": {"type": "phq9", "total": 30}}]},
         f"/v1/patients/{pid}/observations", 422),
        ({"items": [{"idempotency_key": "k", "day": 0, "payload": {"type": "mood_ring"}}]},
         f"/v1/patients/{pid}/observations", 422),
    ]  # fmt: skip
    for body, url, status in cases:
        response = await client.post(url, json=body, headers=ADMIN)
        assert response.status_code == status, (url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert "Ada Canary" not in response.text and "MRN-CANARY" not in response.text
    big = {
        "items": [
            {
                "idempotency_key": "k",
                "day": 0,
                "payload": {"type": "gad7", "total": 1, "pad": "x" * (2 << 20)},
            }
        ]
    }
    assert (
        await client.post(f"/v1/patients/{pid}/observations", json=big, headers=ADMIN)
    ).status_code == 413
    missing = await client.get("/v1/patients/pt_nobody/twin", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["status"] == 404
