"""PostgreSQL behaviour beyond the contract: durability checks, outages, concurrency, no PHI."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.local import LocalKeyProvider
from storage.postgres import PostgresDatabase, PostgresDataKeyStore, PostgresEventStore
from storage.sealed import EnvelopeSealer
from tests.servers import PostgresServer
from twin import errors
from twin.domain import events as E
from twin.ports import NewEvent

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    pg = PostgresServer()
    pg.start()
    yield pg
    pg.destroy()


async def _store(dsn: str, keys: Path) -> tuple[PostgresDatabase, PostgresEventStore]:
    db = await PostgresDatabase.open(dsn, timeout_s=2.0)
    return db, PostgresEventStore(
        db, EnvelopeSealer(LocalKeyProvider(keys), PostgresDataKeyStore(db))
    )


@pytest.mark.parametrize("setting", ["fsync=off", "full_page_writes=off", "synchronous_commit=off"])
async def test_the_service_refuses_a_server_that_can_lose_commits(setting):
    pg = PostgresServer()
    pg.start(setting)
    try:
        with pytest.raises(errors.ConfigurationError, match=setting.split("=")[0]):
            await PostgresDatabase.open(pg.dsn)
    finally:
        pg.destroy()


async def test_an_outage_gives_a_retryable_error_in_bounded_time_and_loses_nothing(
    server, tmp_path
):
    db, store = await _store(server.dsn, tmp_path / "keys")
    acked = await store.append("p", [NewEvent(f"k{i}", i, E.Gad7(i % 21)) for i in range(20)])
    server.stop("immediate")
    started = time.monotonic()
    with pytest.raises(errors.StorageUnavailableError, match="retry"):
        await store.append("p", [NewEvent("k20", 20.0, E.Gad7(3))])
    assert time.monotonic() - started < 10.0
    server.start()
    # The pool reconnects; the retried batch goes through exactly once.
    for _ in range(50):
        try:
            again = await store.append("p", [NewEvent("k20", 20.0, E.Gad7(3))])
            break
        except errors.StorageUnavailableError:
            await asyncio.sleep(0.2)
    assert again[0].seq == 21
    log = await store.read("p")
    assert [e.seq for e in log] == list(range(1, 22))
    assert [r.seq for r in acked] == list(range(1, 21))
    await db.close()


async def test_concurrent_writers_for_one_patient_get_distinct_contiguous_sequences(
    server, tmp_path
):
    opened = [await _store(server.dsn, tmp_path / "keys") for _ in range(3)]

    async def writer(w: int, store: PostgresEventStore) -> list[int]:
        seqs = []
        for i in range(10):
            # Same day for all: order between writers is free, time never goes backwards.
            r = await store.append("shared", [NewEvent(f"w{w}-{i}", 1.0, E.EmaAffect(3))])
            seqs.append(r[0].seq)
        return seqs

    results = await asyncio.gather(*(writer(w, s) for w, (_, s) in enumerate(opened)))
    assert sorted(s for r in results for s in r) == list(range(1, 31))
    for db, _ in opened:
        await db.close()


async def test_no_plaintext_clinical_values_in_the_database_files(server, tmp_path):
    db, store = await _store(server.dsn, tmp_path / "keys")
    await store.append("p", [NewEvent(uuid.uuid4().hex, 0.0, E.Prescription("citalopram", 20.0))])
    async with db.pool.acquire() as conn:
        await conn.execute("CHECKPOINT")
    await db.close()
    server.stop("fast")
    leaked = [p for p in server.data.rglob("*") if p.is_file() and b"citalopram" in p.read_bytes()]
    assert leaked == []


async def test_a_refused_credential_with_a_nul_in_the_path_fails_no_other_callers_audit(
    server, tmp_path
):
    # A failed authentication is audited; a NUL from the path used to reach PostgreSQL's JSONB,
    # which refused it and failed the whole group commit, turning clinicians' reads into 500s.
    from tests.integration.conftest import api_settings, bearer, open_env

    settings = api_settings(tmp_path, database_url=server.dsn, auth_failures_per_minute=10_000)
    clinician = bearer("clinician", "dr-a", ("team-1",))
    async with open_env(settings) as env:
        body = {"name": "Ada Canary", "birth_date": "1980-12-10", "mrn": "M-1",
                "care_team": "team-1"}  # fmt: skip
        pid = (await env.http.post("/v1/patients", json=body, headers=clinician)).json()[
            "patient_id"
        ]

        async def attack() -> int:
            return (await env.http.get("/v1/patients/%00x/twin")).status_code

        async def read() -> int:
            return (await env.http.get(f"/v1/patients/{pid}", headers=clinician)).status_code

        for _ in range(3):
            codes = await asyncio.gather(
                *[attack() for _ in range(15)], *[read() for _ in range(15)]
            )
            assert codes[:15] == [401] * 15 and codes[15:] == [200] * 15
        entries = await env.services.audit.entries()
        refused = [e.record for e in entries if e.record.actor == "anonymous"]
        assert len(refused) == 45 and {r.patient_id for r in refused} == {None}
        # The break-glass reason is the other free text that reaches the trail.
        reason = {"reason": "unconscious\x00 in the ED", "minutes": 5}
        response = await env.http.post(
            f"/v1/patients/{pid}/break-glass", json=reason, headers=bearer("clinician", "dr-b")
        )
        assert response.status_code == 422
        assert (await env.http.get(f"/v1/patients/{pid}", headers=clinician)).status_code == 200


async def test_appends_that_race_an_erasure_store_nothing_after_it_and_no_new_key(server, tmp_path):
    import asyncpg

    from tests.integration.conftest import api_settings, open_env
    from twin.domain.patients import Identifiers
    from twin.ports import NewEvent as New

    settings = api_settings(tmp_path, database_url=server.dsn)
    async with open_env(settings) as env:
        svc = env.services
        pid = await svc.registry.create(
            Identifiers("Ada Canary", "1980-12-10", "M-1", None), care_team="t"
        )
        await svc.events.append(pid, [New("first", 0.0, E.Phq9(12))])

        async def write(i: int) -> str:
            try:
                await svc.events.append(pid, [New(f"k{i}", 1.0, E.Phq9(10))])
            except errors.KeyAccessError:
                return "refused"
            return "appended"

        async def erase() -> str:
            await asyncio.sleep(0.005)
            await svc.registry.erase(pid)
            return "erased"

        outcomes = await asyncio.gather(*(write(i) for i in range(30)), erase())
        assert "refused" in outcomes  # the race happened
        with pytest.raises(errors.KeyAccessError, match="erased"):
            await svc.events.append(pid, [New("late", 99.0, E.Phq9(9))])
    conn = await asyncpg.connect(server.dsn)
    try:
        keys = await conn.fetchval("SELECT count(*) FROM data_keys WHERE patient_id = $1", pid)
        stored = await conn.fetchval("SELECT count(*) FROM events WHERE patient_id = $1", pid)
        # A refused append leaves no head row of the erased patient behind.
        heads = await conn.fetchval("SELECT count(*) FROM patient_heads WHERE patient_id = $1", pid)
    finally:
        await conn.close()
    assert heads == 0
    # No key came back (whatever was stored is unreadable), and the log ends where it stood
    # when the erasure began.
    assert keys == 0
    assert stored == 1 + outcomes.count("appended")
