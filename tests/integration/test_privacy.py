"""No PHI where it must not be: researcher answers, log lines, metric labels, error messages.

Canaries are identifiers no output may contain: names, MRNs, contacts, birth dates and the
opaque patient ids themselves (researchers see keyed pseudonyms only).
"""

from __future__ import annotations

import asyncio
import io
import logging

from pythonjsonlogger.json import JsonFormatter

from tests.integration.conftest import api_settings, bearer, open_env
from twin.domain import events as E
from twin.domain.patients import Identifiers
from twin.ports import NewEvent


async def test_identifier_canaries_of_1000_patients_never_reach_a_researcher(tmp_path):
    async with open_env(api_settings(tmp_path, particles=100)) as env:
        registry, twins = env.services.registry, env.services.twins
        canaries: list[str] = []
        pids: list[str] = []
        for i in range(1000):
            ident = Identifiers(
                f"Canaryname{i:04d} Zq", f"19{40 + i % 60:02d}-0{1 + i % 9}-1{i % 10}",
                f"MRN-CANARY-{i:05d}", f"canary{i:04d}@example.org",
            )  # fmt: skip
            pid = await registry.create(ident, care_team=f"team-{i % 7}")
            pids.append(pid)
            canaries += [ident.name, ident.mrn, ident.contact or "", pid]
        for start in range(0, 1000, 100):
            await asyncio.gather(
                *(
                    twins.ingest(
                        pid,
                        [  # one feed's origin: each patient's days are calendar dates
                            NewEvent("q", 1400.0 + j, E.Phq9(5 + j % 20)),
                            NewEvent("r", 1410.5 + j, E.Phq9(4 + j % 20)),
                        ],
                    )
                    for j, pid in enumerate(pids[start : start + 100])
                )
            )
        response = await env.http.get(
            "/v1/research/twins?limit=1000", headers=bearer("researcher", "study-1")
        )
        assert response.status_code == 200
        rows = response.json()["items"]
        assert len(rows) == 1000
        assert len({r["pseudonym"] for r in rows}) == 1000
        text = response.text
        leaked = [c for c in canaries if c in text]
        assert leaked == []
        assert set(rows[0]) == {
            "pseudonym", "record_day", "shifted_as_of", "shifted_record_start", "severity_mean",
            "severity_sd", "p_episode", "p_severe", "alert_flags",
        }  # fmt: skip
        # Days from each patient's own first event: nothing of the feed's calendar. These
        # patients have no enrolment, so not even a shifted date.
        assert {r["record_day"] for r in rows} == {10}
        assert {(r["shifted_as_of"], r["shifted_record_start"]) for r in rows} == {(None, None)}


async def test_logs_metrics_and_errors_carry_no_phi(api_env):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("novamind")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        http = api_env.http
        admin, clinician = bearer("admin", "adm"), bearer("clinician", "dr", ("team-1",))
        body = {"name": "Zelda Canarynova", "birth_date": "1966-06-16", "mrn": "MRN-ZZ-CANARY",
                "contact": "zelda.canary@example.org", "care_team": "team-1"}  # fmt: skip
        pid = (await http.post("/v1/patients", json=body, headers=admin)).json()["patient_id"]
        await http.get(f"/v1/patients/{pid}", headers=clinician)
        await http.get(f"/v1/patients/{pid}", headers=bearer("clinician", "x", ("team-9",)))
        bad = {"items": [{"idempotency_key": "MRN-ZZ-CANARY", "day": 0,
                          "payload": {"type": "phq9", "total": 99}}]}  # fmt: skip
        refused = await http.post(f"/v1/patients/{pid}/observations", json=bad, headers=admin)
        assert refused.status_code == 422 and "99" not in refused.json()["detail"]
        dup = await http.post("/v1/patients", json={**body, "name": 7}, headers=admin)
        assert dup.status_code == 422 and "Zelda" not in dup.text
        await http.get(f"/v1/patients/{pid}/twin", headers=clinician)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    logged = stream.getvalue()
    assert logged.count('"route"') >= 6  # one access line per request
    metrics = api_env.metrics.exposition().decode()
    assert 'route="/v1/patients/{patient_id}"' in metrics
    for canary in ("Zelda", "Canarynova", "MRN-ZZ-CANARY", "zelda.canary", "1966-06-16", pid):
        assert canary not in logged, canary
        assert canary not in metrics, canary


async def test_the_embedded_database_files_are_owner_only_whatever_the_umask(tmp_path):
    import os
    import stat

    from storage.sqlite.database import SqliteDatabase

    old = os.umask(0o022)
    try:
        db = await SqliteDatabase.open(tmp_path / "db" / "novamind.sqlite3")
        await db.conn.execute("CREATE TABLE IF NOT EXISTS probe (x)")
        await db.conn.execute("INSERT INTO probe VALUES (1)")
        files = [p for p in (tmp_path / "db").iterdir() if p.name.startswith("novamind.sqlite3")]
        assert {p.name for p in files} >= {"novamind.sqlite3", "novamind.sqlite3-wal"}
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
        await db.close()
    finally:
        os.umask(old)
