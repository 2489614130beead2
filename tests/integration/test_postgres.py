"""PostgreSQL behaviour beyond the contract: durability checks, outages, concurrency, no PHI.

Outages are shown at the port (a retryable error in bounded time) and over HTTP (the app
served by uvicorn answers 503 problem+json with Retry-After, and loses nothing acknowledged).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from deployments.asgi import build_app
from storage.local import LocalKeyProvider
from storage.postgres import PostgresDatabase, PostgresDataKeyStore, PostgresEventStore
from storage.sealed import EnvelopeSealer
from tests.integration.conftest import api_settings, bearer
from tests.servers import PostgresServer, UvicornServer
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


TEAM = ("team-1",)
CLINICIAN, ADMIN = bearer("clinician", "dr-a", TEAM), bearer("admin", "adm")
#: The pool's timeout (``PostgresDatabase.timeout_s``): what one statement waits at most, s.
POOL_TIMEOUT_S = 5.0


def _observation(http: httpx.Client, pid: str, i: int) -> httpx.Response:
    """Observation ``i`` of the patient: key ``k<i>`` on day ``i`` (GAD-7), so retries dedupe."""
    item = {
        "idempotency_key": f"k{i}",
        "day": float(i),
        "loinc": {"code": "70274-6", "value": i % 22},
    }
    return http.post(f"/v1/patients/{pid}/observations", json={"items": [item]}, headers=CLINICIAN)


def _requests(pid: str, i: int) -> dict[str, Callable[[httpx.Client], httpx.Response]]:
    """Reads and writes of a clinician's day, and of an admin, auditor and researcher."""
    auditor, researcher = bearer("auditor", "aud"), bearer("researcher", "res")
    new = {"name": "Outage Canary", "birth_date": "1980-02-02", "mrn": f"MRN-{i}",
           "care_team": TEAM[0]}  # fmt: skip
    return {
        "read patient": lambda h: h.get(f"/v1/patients/{pid}", headers=CLINICIAN),
        "read twin": lambda h: h.get(f"/v1/patients/{pid}/twin", headers=CLINICIAN),
        "read events": lambda h: h.get(f"/v1/patients/{pid}/events", headers=CLINICIAN),
        "search twins": lambda h: h.get("/v1/twins", headers=CLINICIAN),
        "read audit": lambda h: h.get("/v1/audit/verify", headers=auditor),
        "research": lambda h: h.get("/v1/research/twins", headers=researcher),
        "write observation": lambda h: _observation(h, pid, i),
        "forecast": lambda h: h.post(f"/v1/patients/{pid}/forecast", json={}, headers=CLINICIAN),
        "create patient": lambda h: h.post("/v1/patients", json=new, headers=ADMIN),
    }


def _unavailable(
    http: httpx.Client, pid: str, i: int, within_s: float, only: tuple[str, ...] = ()
) -> None:
    """Each request (or those ``only`` names) answers 503 problem+json with a Retry-After.

    Args:
        http: A client of the app.
        pid: The patient.
        i: The observation a write would add.
        within_s: The longest any one request may take, s.
        only: Names of the requests to send (all when empty).
    """
    for name, call in _requests(pid, i).items():
        if only and name not in only:
            continue
        started = time.monotonic()
        response = call(http)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, (name, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json", name
        assert int(response.headers["Retry-After"]) >= 1, name
        assert elapsed < within_s, (name, elapsed)


def _served_again(http: httpx.Client, pid: str, i: int) -> None:
    """Once PostgreSQL answers, the same requests succeed (retried while it starts up)."""
    deadline = time.monotonic() + 60.0
    for name, call in _requests(pid, i).items():
        while (response := call(http)).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert response.status_code in (200, 201), (name, response.status_code, response.text)


def _log(http: httpx.Client, pid: str) -> dict[int, float]:
    """The patient's event log as the API serves it: day by sequence number."""
    feed = http.get(f"/v1/patients/{pid}/events", headers=CLINICIAN)
    assert feed.status_code == 200
    events = [json.loads(line[6:]) for line in feed.text.splitlines() if line.startswith("data: ")]
    return {int(e["seq"]): float(e["day"]) for e in events}


class _Writers:
    """A clinician's app per patient, writing observations one after another over HTTP.

    A refused write is sent again (same key) until it is acknowledged, as the SDK does.

    Attributes:
        next: Per patient, the observation to send next (the refused one, while refused).
        acked: ``(patient, observation, sequence number)`` of every acknowledged write.
        statuses: Every answer's HTTP status (0: the connection dropped, no answer).
    """

    def __init__(self, url: str, pids: list[str]) -> None:
        self.url = url
        self.next = dict.fromkeys(pids, 0)
        self.acked: list[tuple[str, int, int]] = []
        self.statuses: list[int] = []

    def write(self, http: httpx.Client, pid: str) -> bool:
        """Send the patient's next observation; whether it was acknowledged."""
        try:
            response = _observation(http, pid, self.next[pid])
        except httpx.TransportError:  # no answer at all (the server dropped the connection)
            self.statuses.append(0)
            return False
        self.statuses.append(response.status_code)
        if not response.is_success:
            return False
        self.acked.append((pid, self.next[pid], response.json()["acknowledged"][0]["seq"]))
        self.next[pid] += 1
        return True

    def until_stored(self, http: httpx.Client, pid: str) -> None:
        """Send the patient's next observation until it is acknowledged."""
        deadline = time.monotonic() + 60.0
        while not self.write(http, pid):
            assert time.monotonic() < deadline, "a write is still refused"
            time.sleep(0.05)

    def through(self, outage: Callable[[], None]) -> None:
        """Keep every patient's app writing before, during and after ``outage``."""
        done = threading.Event()

        def app(pid: str) -> None:
            with httpx.Client(base_url=self.url, timeout=60.0) as http:
                while not done.is_set():
                    if not self.write(http, pid):
                        time.sleep(0.05)
                self.until_stored(http, pid)

        threads = [threading.Thread(target=app, args=(p,)) for p in self.next]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        outage()
        time.sleep(1.0)  # writes go on once the database is back
        done.set()
        for thread in threads:
            thread.join(timeout=120)


def test_an_outage_answers_503_with_retry_after_over_http_and_loses_nothing(server, tmp_path):
    # The apps retry refused writes at once, as one caller: no request budget gets in the way.
    settings = api_settings(
        tmp_path, database_url=server.create_database("api"), rate_limit_per_minute=1_000_000
    )
    app = UvicornServer(build_app(settings))
    app.start()
    try:
        with httpx.Client(base_url=app.url, timeout=60.0) as http:
            pids = [
                http.post("/v1/patients", json=body, headers=ADMIN).json()["patient_id"]
                for body in ({"name": "Outage Canary", "birth_date": "1980-02-02",
                              "mrn": f"MRN-P{n}", "care_team": TEAM[0]} for n in range(4))
            ]  # fmt: skip
            # The requests of the outage go to one patient; the apps write for the others.
            pid, writers = pids[0], _Writers(app.url, pids[1:])
            q = 0  # that patient's next observation

            def fast_shutdown() -> None:
                server.stop("fast")
                # Down (connections refused): 503 at once, reads and writes alike.
                _unavailable(http, pid, q, within_s=POOL_TIMEOUT_S)
                server.start()

            def crash() -> None:
                server.stop("immediate")
                server.start()

            # Shut down (SIGTERM: a reboot, a failover; sessions end with 57P01), and killed
            # with commits in flight, while the apps write: each write is acknowledged or
            # answered 503 (and sent again), never 500, never without an answer.
            writers.through(fast_shutdown)
            writers.through(fast_shutdown)
            writers.through(crash)
            _served_again(http, pid, q)
            q += 1
            # Hung (connections open, nothing answers): 503 once the pool's timeout passes
            # for the request's statements, never an open-ended wait. A read and a write
            # (each waits out the timeout: the whole list would take a minute).
            server.pause()
            _unavailable(
                http, pid, q, within_s=2 * POOL_TIMEOUT_S + 3.0,
                only=("read twin", "write observation"),
            )  # fmt: skip
            server.resume()
            _served_again(http, pid, q)
            q += 1
            assert set(writers.statuses) == {200, 503}

            # Nothing acknowledged is lost, every write refused meanwhile is stored once (on
            # its retry), the logs have no gap, and each twin has applied all of its log.
            stored = {**writers.next, pid: q}
            for p, count in stored.items():
                log = _log(http, p)
                assert sorted(log) == list(range(1, count + 1))
                assert sorted(log.values()) == [float(i) for i in range(count)]
                assert all(log[seq] == float(i) for w, i, seq in writers.acked if w == p)
                twin = http.get(f"/v1/patients/{p}/twin", headers=CLINICIAN).json()
                assert twin["last_seq"] == count
            verified = http.get("/v1/audit/verify", headers=bearer("auditor", "aud")).json()
            assert verified["ok"] is True
    finally:
        app.stop()


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
