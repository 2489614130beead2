"""Audit anchors end to end on the embedded stores: the CLI, the API and the N-entries trigger.

The attack they exist for: someone with write access to the database rewrites an audit row
and re-hashes the whole chain after it, so that every link checks. Only the anchor, kept
apart from the database, still knows the head the chain had.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deployments.ops.cli import app
from storage.local import LocalAuditAnchorStore
from storage.sqlite import SqliteAuditLog, SqliteDatabase
from tests.integration.conftest import api_settings, bearer, open_env
from twin.domain.audit import GENESIS, AuditRecord, entry_hash, record_from_json

pytestmark = pytest.mark.integration


async def _write(db_path: Path, n: int) -> None:
    db = await SqliteDatabase.open(db_path)
    try:
        log = SqliteAuditLog(db)
        at = "2026-12-01T10:00:00.000+00:00"
        for i in range(n):
            who = ("dr-a", "clinician", "twin.read", f"p{i}", "allowed", "treatment")
            record = AuditRecord(*who, at, f"r{i}")
            await log.append(record)
    finally:
        await db.close()


def _rewrite_and_rehash(db_path: Path, seq: int) -> None:
    """What an attacker with the database does: edit a row, then re-hash every row after it."""
    with sqlite3.connect(db_path) as db:
        db.execute("DROP TRIGGER audit_log_no_update")
        rows = db.execute("SELECT seq, record FROM audit_log ORDER BY seq").fetchall()
        prev = GENESIS
        for row_seq, text in rows:
            record = json.loads(text)
            if row_seq == seq:
                record["outcome"] = "denied"
                text = json.dumps(record)
            digest = entry_hash(prev, row_seq, record_from_json(text))
            db.execute(
                "UPDATE audit_log SET record = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (text, prev, digest, row_seq),
            )
            prev = digest


def test_a_rehashed_chain_is_caught_by_its_anchor_in_the_cli_and_the_api(tmp_path, monkeypatch):
    # Synchronous: each command runs its own event loop, as from a shell.
    monkeypatch.setenv("NOVAMIND_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NOVAMIND_DATABASE_URL", raising=False)
    monkeypatch.delenv("NOVAMIND_AUDIT_ANCHORS", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    empty = runner.invoke(app, ["audit", "anchor"])
    assert empty.exit_code == 0 and "nothing to anchor" in empty.output
    asyncio.run(_write(tmp_path / "novamind.db", 6))

    anchored = runner.invoke(app, ["audit", "anchor"])
    assert anchored.exit_code == 0, anchored.output
    (anchor,) = asyncio.run(LocalAuditAnchorStore(tmp_path / "keys" / "audit-anchors.jsonl").all())
    assert anchor.entries == 6 and anchor.head_hash in anchored.output
    again = runner.invoke(app, ["audit", "anchor"])
    assert again.exit_code == 0 and "already anchored" in again.output
    intact = runner.invoke(app, ["audit", "verify"])
    assert intact.exit_code == 0 and "1 anchors agree" in intact.output

    _rewrite_and_rehash(tmp_path / "novamind.db", 3)
    assert runner.invoke(app, ["audit", "verify", "--no-anchors"]).exit_code == 0  # links hold
    caught = runner.invoke(app, ["audit", "verify"])
    assert caught.exit_code == 1
    assert f"anchor of 6 entries at {anchor.at}" in caught.output, caught.output
    refused = runner.invoke(app, ["audit", "anchor"])
    assert refused.exit_code == 1 and "not anchored" in refused.output

    async def over_http() -> None:
        async with open_env(api_settings(tmp_path)) as env:
            auditor = bearer("auditor", "aud")
            answer = await env.http.get("/v1/audit/verify", headers=auditor)
            assert answer.status_code == 200
            body = answer.json()
            assert body["ok"] is False and body["anchors_checked"] == 1
            assert body["contradicted_anchor"] == {
                "entries": 6, "head_hash": anchor.head_hash, "at": anchor.at,
            }  # fmt: skip
            assert body["latest_anchor"] == body["contradicted_anchor"]
            assert body["contradicted_anchors"] == [body["contradicted_anchor"]]
            assert body["contradicted_count"] == 1 and body["conflicting_lengths"] == []
            assert body["unreadable_count"] == 0 and body["warnings"] == []
            skipped = await env.http.get("/v1/audit/verify?anchors=false", headers=auditor)
            assert skipped.json()["ok"] is True and skipped.json()["anchors_checked"] == 0

    asyncio.run(over_http())


def test_verify_and_anchor_never_migrate_the_database_they_read(tmp_path, monkeypatch):
    # The anchor CronJob runs every 15 min: a migration there would change production's
    # schema before the release that expects it has rolled out.
    import storage.sqlite.database as sqlite_database

    monkeypatch.setenv("NOVAMIND_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NOVAMIND_DATABASE_URL", raising=False)
    monkeypatch.delenv("NOVAMIND_AUDIT_ANCHORS", raising=False)
    asyncio.run(_write(tmp_path / "novamind.db", 3))

    def migrate(path: Path) -> None:
        raise AssertionError(f"{path.name} migrated")

    monkeypatch.setattr(sqlite_database, "_migrate", migrate)
    runner = CliRunner()
    anchored = runner.invoke(app, ["audit", "anchor"])
    assert anchored.exit_code == 0 and anchored.exception is None, anchored.output
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0 and "1 anchors agree" in verified.output, verified.output
    db = sqlite3.connect(f"{(tmp_path / 'novamind.db').as_uri()}?mode=ro", uri=True)
    with contextlib.closing(db):
        assert db.execute("SELECT count(*) FROM audit_log").fetchone() == (3,)  # nothing added


async def test_the_service_anchors_every_n_entries_in_the_background(tmp_path):
    settings = api_settings(tmp_path, audit_anchor_every_entries=3)
    async with open_env(settings) as env:
        auditor = bearer("auditor", "aud")
        for _ in range(4):  # each read of the trail is itself audited
            assert (await env.http.get("/v1/audit", headers=auditor)).status_code == 200
        for _ in range(200):
            if await env.services.anchors.all():
                break
            await asyncio.sleep(0.01)
        (anchor,) = await env.services.anchors.all()
        entries = await env.services.audit.entries()
        assert anchor.entries == 3 and anchor.head_hash == entries[2].hash
        report = (await env.http.get("/v1/audit/verify", headers=auditor)).json()
        assert report["ok"] is True and report["latest_anchor"]["entries"] == 3
        await env.http.get("/v1/audit", headers=auditor)  # an append tells the anchor's age
        exported = env.metrics.exposition().decode()
        (age,) = [
            float(line.split()[-1]) for line in exported.splitlines()
            if line.startswith("novamind_audit_anchor_age_s ")
        ]  # fmt: skip
        assert 0.0 <= age < 60.0


def test_the_local_platform_anchors_every_interval(tmp_path):
    from deployments.ops.platform import AuditAnchorTimer

    settings = api_settings(tmp_path, audit_anchor_interval_s=900)
    store = LocalAuditAnchorStore(tmp_path / "keys" / "audit-anchors.jsonl")
    now = [0.0]
    timer = AuditAnchorTimer(settings, clock=lambda: now[0])
    asyncio.run(_write(tmp_path / "novamind.db", 2))
    timer.tick()  # due at once
    timer.join(30)
    asyncio.run(_write(tmp_path / "novamind.db", 2))
    now[0] = 899.0
    timer.tick()  # not yet
    timer.join(30)
    assert [a.entries for a in asyncio.run(store.all())] == [2]
    now[0] = 900.0
    timer.tick()
    timer.join(30)
    assert [a.entries for a in asyncio.run(store.all())] == [2, 4]


def test_missing_anchors_are_a_warning_locally_in_the_cli_and_the_api(tmp_path, monkeypatch):
    monkeypatch.setenv("NOVAMIND_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NOVAMIND_AUDIT_ANCHOR_EVERY_ENTRIES", "3")
    monkeypatch.delenv("NOVAMIND_DATABASE_URL", raising=False)
    monkeypatch.delenv("NOVAMIND_AUDIT_ANCHORS", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    asyncio.run(_write(tmp_path / "novamind.db", 4))
    assert runner.invoke(app, ["audit", "anchor"]).exit_code == 0
    (tmp_path / "keys" / "audit-anchors.jsonl").unlink()  # the anchors gone: never silent
    checked = runner.invoke(app, ["audit", "verify"])
    assert checked.exit_code == 0, checked.output
    assert "warning: no audit anchor, and the chain holds 4 entries" in checked.output

    async def over_http() -> None:
        settings = api_settings(tmp_path, audit_anchor_every_entries=3)
        async with open_env(settings) as env:
            auditor = bearer("auditor", "aud")
            body = (await env.http.get("/v1/audit/verify", headers=auditor)).json()
            assert body["ok"] is True and body["latest_anchor"] is None
            assert len(body["warnings"]) == 1 and "no audit anchor" in body["warnings"][0]

    asyncio.run(over_http())


async def test_one_verification_at_a_time_per_process(tmp_path):
    from deployments.api.routes import audit as audit_routes

    async with open_env(api_settings(tmp_path)) as env:
        auditor = bearer("auditor", "aud")
        assert audit_routes._VERIFYING.acquire(blocking=False)  # one is running
        try:
            busy = await env.http.get("/v1/audit/verify", headers=auditor)
        finally:
            audit_routes._VERIFYING.release()
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "30"
        assert "another verification of the audit chain is running" in busy.json()["detail"]
        assert (await env.http.get("/v1/audit/verify", headers=auditor)).status_code == 200


async def test_jobs_count_the_anchors_their_audit_log_failed_to_write(tmp_path):
    from deployments.stores import open_audit_log

    (tmp_path / "blocker").write_bytes(b"")  # a file where the anchors' folder should be
    settings = api_settings(
        tmp_path, audit_anchors=str(tmp_path / "blocker" / "anchors.jsonl"),
        audit_anchor_every_entries=1,
    )  # fmt: skip
    failures: list[BaseException] = []
    async with open_audit_log(settings, on_failure=failures.append) as log:
        await log.append(AuditRecord(*("job", "service", "ingest", "p1", "allowed", "ingest"),
                                     "2026-12-01T10:00:00.000+00:00", "job-1"))  # fmt: skip
    assert len(failures) == 1
