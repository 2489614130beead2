"""Erasure walks the registry of every place patient data lives, and the registry is complete.

A patient is given data in every registered place (registry, twin in memory, checkpoints, twin
index, event log with identifier-bearing idempotency keys, documents, a cohort run's result
pages and ``patients.parquet``, the data key); one erasure later, each place is read back and
holds nothing of them. Every table of the database schema is either a place's or declared to
hold no patient data: a table added without either fails here.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deployments.bootstrap import open_backup_stores
from tests.integration.conftest import api_settings, bearer, open_env
from tests.servers import PostgresServer
from twin import ports, schemas
from twin.domain import events as E
from twin.service import jobs
from twin.service.erasure import TABLES_WITHOUT_PATIENT_DATA
from twin.settings import TwinSettings

NEW = {
    "name": "Erasure Canary",
    "birth_date": "1970-07-07",
    "mrn": "ER-CANARY-1",
    "care_team": "t1",
}
ADMIN = bearer("admin", "adm")


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> TwinSettings:
    if request.param == "sqlite":
        return api_settings(tmp_path)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return api_settings(tmp_path, database_url=server.create_database(f"e_{uuid.uuid4().hex[:12]}"))


async def _tables(settings: TwinSettings) -> dict[str, list[str]]:
    """Every table of the relational store with its rows as text (a dump to search)."""
    if settings.database_url is None:
        with sqlite3.connect(settings.data_dir / "novamind.db") as conn:
            names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            return {
                name: [repr(row) for row in conn.execute(f'SELECT * FROM "{name}"')]
                for (name,) in names
                if not name.startswith("sqlite_")
            }
    conn = await asyncpg.connect(settings.database_url)
    try:
        names = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        return {
            row["table_name"]: [
                r[0] for r in await conn.fetch(f'SELECT t::text FROM "{row["table_name"]}" t')
            ]
            for row in names
        }
    finally:
        await conn.close()


async def test_every_table_is_a_place_of_the_registry_or_holds_no_patient_data(settings):
    async with open_env(settings) as env:
        claimed = {table for place in env.services.eraser.places for table in place.tables}
        tables = set(await _tables(settings))
        assert tables - claimed - set(TABLES_WITHOUT_PATIENT_DATA) == set()
        assert not claimed & set(TABLES_WITHOUT_PATIENT_DATA)


async def test_one_erasure_leaves_nothing_of_the_patient_in_any_registered_place(
    settings, tmp_path
):
    async with open_env(settings) as env:
        svc, http = env.services, env.http
        pid = (await http.post("/v1/patients", json=NEW, headers=ADMIN)).json()["patient_id"]
        other = (await http.post("/v1/patients", json={**NEW, "mrn": "ER-2"}, headers=ADMIN)).json()
        batch = [ports.NewEvent(f"ER-CANARY-1/phq9/{d}", float(d), E.Phq9(14)) for d in range(5)]
        await svc.twins.ingest(pid, batch)
        others = [ports.NewEvent(f"ER-2/phq9/{d}", float(d), E.Phq9(14)) for d in range(5)]
        await svc.twins.ingest(other["patient_id"], others)
        assert await svc.twins.passivate(pid)  # a checkpoint
        await svc.twins.summary(pid)  # back in memory
        report = await http.post(
            f"/v1/patients/{pid}/scenarios",
            json={"title": "t", "weeks": 1, "scenarios": [{}, {"care": True}]},
            headers=ADMIN,
        )
        assert report.status_code == 201
        pseudonym = svc.deidentifier.pseudonym(pid)
        kept = svc.deidentifier.pseudonym(other["patient_id"])
        output = tmp_path / "cohorts" / "run-1"
        output.mkdir(parents=True)
        rows = [
            {"pseudonym": pseudonym, "remission_p": 0.3},
            {"pseudonym": kept, "remission_p": 0.4},
        ]
        pq.write_table(pa.Table.from_pylist(rows), output / "patients.parquet")
        run = await jobs.enqueue_cohort(
            svc.documents,
            schemas.CohortRunIn.model_validate(
                {"synthetic": {"n_patients": 2, "days": 0}, "scenarios": [{}], "weeks": 1}
            ),
            by="res",
        )
        run = run.model_copy(
            update={"status": "succeeded", "result_pages": 1, "output": str(output)}
        )
        await jobs.COHORT.save(svc.documents, run)
        page_id = f"{run.job_id}.000000"
        await svc.documents.put(
            ports.Document(jobs.COHORT_RESULTS, page_id, None, json.dumps(rows).encode(), 0.0)
        )
        assert await svc.index.get(pid) is not None

        erased = await http.delete(f"/v1/patients/{pid}", headers=ADMIN)
        assert erased.status_code == 200 and erased.json()["erased"] is True

        checked: dict[str, bool] = {}
        checked["registry"] = await svc.registry.care_team(pid) is None
        checked["twin"] = svc.twins.active_count() == 1  # only the other patient's twin
        checkpoints = svc.eraser.places[[p.name for p in svc.eraser.places].index("checkpoints")]
        checked["checkpoints"] = await checkpoints.erase(pid) == 0  # nothing left to remove
        checked["twin index"] = await svc.index.get(pid) is None
        tables = await _tables(settings)
        dump = "\n".join(row for rows in tables.values() for row in rows)
        # Not a trace of the identifier-bearing idempotency keys anywhere in the database, and
        # outside the audit trail no row of the patient's but the registry's tombstone, which
        # holds no sealed data (b"NMS1" is the envelope's magic, 4e4d5331 in PostgreSQL's hex).
        left = {
            table: mine
            for table, rows in tables.items()
            if table != "audit_log" and (mine := [r for r in rows if pid in r])
        }
        checked["event log"] = (
            "ER-CANARY-1" not in dump
            and "ER-2/phq9" in dump
            and set(left) == {"patients"}
            and not any("NMS1" in r or "4e4d5331" in r for r in left["patients"])
        )
        checked["documents"] = await svc.documents.delete_patient(pid) == 0
        page = await svc.documents.get(jobs.COHORT_RESULTS, page_id)
        parquet = pq.read_table(output / "patients.parquet").to_pylist()
        checked["cohort results"] = [r["pseudonym"] for r in json.loads(page.body)] == [kept] and [
            r["pseudonym"] for r in parquet
        ] == [kept]
        checked["data key"] = not any(pid in row for row in tables["data_keys"])
        assert checked == dict.fromkeys((p.name for p in svc.eraser.places), True)
        # The other patient is untouched.
        assert len(await svc.events.read(other["patient_id"])) == 5


async def test_restores_erase_through_the_same_registry(tmp_path):
    settings = api_settings(tmp_path)
    async with open_env(settings) as env:
        online = [place.name for place in env.services.eraser.places]
    async with open_backup_stores(settings) as stores:
        assert [place.name for place in stores.eraser.places] == online
    assert online[0] == "registry" and online[-1] == "data key"


async def test_an_erasure_that_failed_part_way_is_completed_by_a_retry_and_by_every_start(
    tmp_path,
):
    settings = api_settings(tmp_path)
    async with open_env(settings) as env:
        svc, http = env.services, env.http
        first = (await http.post("/v1/patients", json=NEW, headers=ADMIN)).json()["patient_id"]
        second = (
            await http.post("/v1/patients", json={**NEW, "mrn": "ER-3"}, headers=ADMIN)
        ).json()
        second = second["patient_id"]
        for pid in (first, second):
            await svc.twins.ingest(pid, [ports.NewEvent(f"{pid}/0", 0.0, E.Phq9(12))])
        # A damaged Parquet file in a run's output: the cohort-results place cannot be erased.
        output = tmp_path / "cohorts" / "damaged"
        output.mkdir(parents=True)
        (output / "patients.parquet").write_bytes(b"not parquet")
        run = await jobs.enqueue_cohort(
            svc.documents,
            schemas.CohortRunIn.model_validate(
                {"synthetic": {"n_patients": 2, "days": 0}, "scenarios": [{}], "weeks": 1}
            ),
            by="res",
        )
        await jobs.COHORT.save(svc.documents, run.model_copy(update={"output": str(output)}))
        for pid in (first, second):
            failed = await http.delete(f"/v1/patients/{pid}", headers=ADMIN)
            assert failed.status_code == 503 and "cohort results" in failed.json()["detail"]
            assert await svc.registry.care_team(pid) is None  # the other places were erased
        assert await svc.erasures.incomplete() == sorted([first, second])

        pq.write_table(pa.Table.from_pylist([{"pseudonym": "rs_x"}]), output / "patients.parquet")
        # The admin's retry completes the first; a clinician cannot use it to probe.
        probe = await http.delete(
            f"/v1/patients/{first}", headers=bearer("clinician", "c", ("t1",))
        )
        assert probe.status_code in (403, 404)
        retried = await http.delete(f"/v1/patients/{first}", headers=ADMIN)
        assert retried.status_code == 200 and retried.json()["erased"] is True
        assert await svc.erasures.incomplete() == [second]
    # The next start of the service completes the other (in the background, once ready).
    async with open_env(settings) as env:
        for _ in range(100):
            if not await env.services.erasures.incomplete():
                break
            await asyncio.sleep(0.05)
        assert await env.services.erasures.incomplete() == []
        assert await env.services.erasures.erased() == sorted([first, second])


async def test_a_cohort_run_that_finishes_after_an_erasure_leaves_no_row_of_that_patient(tmp_path):
    from deployments.pipelines.cohorts import _forget_erased

    settings = api_settings(tmp_path)
    async with open_env(settings) as env:
        svc = env.services
        erased, kept = "pt_erased_during_run", "pt_kept"
        rows = [
            {"pseudonym": svc.deidentifier.pseudonym(pid), "scenario_index": 0}
            for pid in (erased, kept)
        ]
        # What the run wrote after the erasure had already passed every place.
        output = tmp_path / "cohorts" / "late"
        output.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), output / "patients.parquet")
        await svc.documents.put(
            ports.Document(jobs.COHORT_RESULTS, "late.000000", None, json.dumps(rows).encode(), 0.0)
        )
        await svc.erasures.record(erased)
        items = [
            {"patient_id": pid, "pseudonym": svc.deidentifier.pseudonym(pid)}
            for pid in (erased, kept)
        ]
        await _forget_erased(settings, items, str(output))
        page = await svc.documents.get(jobs.COHORT_RESULTS, "late.000000")
        left = [r["pseudonym"] for r in json.loads(page.body)]
        assert left == [svc.deidentifier.pseudonym(kept)]
        assert [
            r["pseudonym"] for r in pq.read_table(output / "patients.parquet").to_pylist()
        ] == left


async def test_a_row_a_concurrent_erasure_wrote_back_goes_with_the_next_erasure(tmp_path):
    async with open_env(api_settings(tmp_path)) as env:
        svc, http = env.services, env.http
        pid = (await http.post("/v1/patients", json=NEW, headers=ADMIN)).json()["patient_id"]
        earlier = "pt_erased_before"
        await svc.erasures.record(earlier)  # erased; a concurrent rewrite put its row back
        rows = [{"pseudonym": svc.deidentifier.pseudonym(p)} for p in (earlier, pid, "pt_kept")]
        await svc.documents.put(
            ports.Document(jobs.COHORT_RESULTS, "run.000000", None, json.dumps(rows).encode(), 0.0)
        )
        assert (await http.delete(f"/v1/patients/{pid}", headers=ADMIN)).status_code == 200
        page = await svc.documents.get(jobs.COHORT_RESULTS, "run.000000")
        left = [r["pseudonym"] for r in json.loads(page.body)]
        assert left == [svc.deidentifier.pseudonym("pt_kept")]
