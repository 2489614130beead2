"""Scheduled backups (folder and S3 roots, pruning) and ``novamind dr-drill`` end to end.

The environment backed up is the disaster-recovery drill's own (``_populate``: patients through
the API, checkpoints, a scenario report, an erasure). Archives are placed in the past by the
time a run is given (``now``), never by sleeping. A drill never writes to the live environment
and leaves no restored data behind: each test that can break that checks it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from deployments.ops.archives import (
    MANIFEST,
    LocalArchiveRoot,
    archive_root,
    newest_complete,
    scheduled_backup,
)
from deployments.ops.audit import verify as verify_audit
from deployments.ops.cli import app
from deployments.ops.drill import _Sigterm, dr_drill
from deployments.ops.keys import new_kek, retire, rotate
from deployments.stores import (
    audit_anchor_store,
    erasure_ledger,
    open_documents,
    open_log_reader,
    research_key,
    unusable_keks,
)
from storage.postgres.scratch import MARKER
from tests.integration.conftest import api_settings, open_env
from tests.integration.test_disaster_recovery import TEAM, _populate, at
from tests.servers import MotoServer, PostgresServer
from twin import errors, schemas
from twin.client import observation
from twin.domain import events as E
from twin.domain.audit import AuditAnchor
from twin.domain.deidentify import Deidentifier
from twin.service import jobs
from twin.settings import TwinSettings

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def moto() -> Iterator[dict[str, Any]]:
    server = MotoServer()
    server.start()
    key = server.client("kms").create_key()["KeyMetadata"]["KeyId"]  # type: ignore[attr-defined]
    try:
        yield {"server": server, "key": key}
    finally:
        server.stop()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def _names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


async def _anchor(settings: TwinSettings, at: datetime | None = None) -> AuditAnchor:
    """Anchor the live audit chain's head (what ``novamind audit anchor`` does; ``at``: now)."""
    report = await asyncio.to_thread(verify_audit, settings)
    anchor = AuditAnchor(report.entries, report.head_hash, (at or datetime.now(UTC)).isoformat())
    await audit_anchor_store(settings).put(anchor)
    return anchor


async def test_scheduled_backups_in_a_folder_are_named_by_time_and_pruned(tmp_path):
    settings = api_settings(tmp_path / "live", backup_keep=2, backup_keep_days=35)
    await _populate(settings, patients=2)
    root = tmp_path / "live" / "backups"  # the default root: data_dir/backups

    first = await scheduled_backup(settings, now=NOW - timedelta(days=40))
    assert first.name.startswith((NOW - timedelta(days=40)).strftime("%Y%m%dT%H%M%SZ"))
    assert first.name.endswith(first.report.backup_id[:8]) and first.kept == 1
    assert (root / first.name / MANIFEST).is_file()
    # Age: the 40-day-old archive goes once a newer one exists (the newest never goes).
    second = await scheduled_backup(settings, now=NOW - timedelta(days=1))
    assert second.pruned == [first.name] and _names(root) == [second.name]
    # An upload cut short or in progress (no manifest) and a failed run's staging folder.
    in_progress = root / f"{(NOW + timedelta(hours=1)).strftime('%Y%m%dT%H%M%SZ')}-0badc0de"
    in_progress.mkdir()
    (in_progress / "table-events.nmb").write_bytes(b"partial")
    failed = root / f".partial-{(NOW - timedelta(days=3)).strftime('%Y%m%dT%H%M%SZ')}-00000000"
    failed.mkdir()
    (failed / "checkpoints.nmb").write_bytes(b"partial")
    two_days_ago = time.time() - 2 * 86400
    for path in (failed / "checkpoints.nmb", failed):
        os.utime(path, (two_days_ago, two_days_ago))
    # Count: keep 2. The incomplete archive is neither counted nor removed (it is recent).
    third = await scheduled_backup(settings, now=NOW - timedelta(hours=1))
    assert third.pruned == [failed.name] and third.kept == 2  # untouched for two days
    fourth = await scheduled_backup(settings, now=NOW)
    assert fourth.pruned == [second.name] and fourth.kept == 2
    assert _names(root) == sorted([third.name, fourth.name, in_progress.name])
    newest = newest_complete(await LocalArchiveRoot(root).archives(), now=NOW)
    assert newest is not None and newest.name == fourth.name
    # A complete archive a wrong clock named a year ahead: reported, never counted nor pruned,
    # and the run's own archive is kept.
    ahead = f"{(NOW + timedelta(days=365)).strftime('%Y%m%dT%H%M%SZ')}-0badc0de"
    shutil.copytree(root / third.name, root / ahead)
    fifth = await scheduled_backup(settings, now=NOW + timedelta(minutes=1))
    assert fifth.future == [ahead] and fifth.pruned == [third.name]
    assert _names(root) == sorted([fourth.name, fifth.name, ahead, in_progress.name])


async def test_scheduled_backups_in_s3_upload_the_manifest_last_with_sse_kms(
    tmp_path, moto, aws_credentials
):
    s3 = moto["server"].client("s3")
    bucket = f"backups-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    settings = api_settings(
        tmp_path / "live",
        backup_root=f"s3://{bucket}/backups/test",
        backup_keep=2,
        s3_kms_key_id=moto["key"],
        aws_endpoint_url=moto["server"].endpoint,
    )
    await _populate(settings, patients=2)
    first = await scheduled_backup(settings, now=NOW - timedelta(days=40))
    # A newer upload that never got its manifest: not a backup, and not pruned (recent).
    stray = f"backups/test/{NOW.strftime('%Y%m%dT%H%M%SZ')}-0badc0de/table-events.nmb"
    s3.put_object(Bucket=bucket, Key=stray, Body=b"partial")
    # A name of the pattern that is no time at all: skipped (a warning), never a failed listing.
    s3.put_object(Bucket=bucket, Key="backups/test/20261399T999999Z-deadbeef/manifest.json",
                  Body=b"{}")  # fmt: skip
    second = await scheduled_backup(settings, now=NOW - timedelta(hours=1))
    assert second.pruned == [first.name] and second.kept == 1
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]
    assert not any(first.name in key for key in keys) and stray in keys
    mine = [key for key in keys if second.name in key]
    assert f"backups/test/{second.name}/{MANIFEST}" in mine and len(mine) > 3
    for key in mine:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert moto["key"] in head["SSEKMSKeyId"]
    archives = await archive_root(settings).archives()
    assert [(a.name, a.complete) for a in archives] == [
        (second.name, True),
        (stray.split("/")[2], False),
    ]
    # The drill downloads the newest complete archive (not the stray one) and restores it.
    report = await dr_drill(settings, twins=2)
    assert report.ok, report
    assert report.backup == second.name and report.restored_patients == 1


def _drill_cli(data_dir: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    env = {"NOVAMIND_DATA_DIR": str(data_dir), "NOVAMIND_PARTICLES": "200",
           "NOVAMIND_RESEARCH_KEY": "r" * 48, "COLUMNS": "200"}  # fmt: skip
    result = CliRunner().invoke(app, ["dr-drill", *args], env=env)
    lines = result.stdout.strip().splitlines()
    return result.exit_code, json.loads(lines[-1]), result.stdout


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (scheduled archives and SQLite's -wal/-shm aside) by digest."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and "backups" not in p.relative_to(folder).parts
        and not p.name.endswith(("-wal", "-shm"))
    }


async def _cohort_output(settings: TwinSettings, pseudonyms: list[str], out: Path) -> None:
    """A finished cohort run whose ``patients.parquet`` (in ``out``) has rows of these patients."""
    out.mkdir()
    pq.write_table(pa.table({"pseudonym": pseudonyms, "phq9": [1.0] * len(pseudonyms)}),
                   out / "patients.parquet")  # fmt: skip
    run = schemas.CohortRunOut(job_id="0" * 32, status="succeeded", selection="synthetic",
                               scenarios=["as now"], weeks=4, seed=1,
                               submitted_at="2026-01-01T00:00:00Z", output=str(out))  # fmt: skip
    async with open_documents(settings) as documents:
        await jobs.COHORT.save(documents, run)


async def _live_with_anchors(settings: TwinSettings) -> tuple[AuditAnchor, AuditAnchor, str]:
    """Patients, a cohort output, an anchor and a backup half an hour ago; then more.

    Five patients, then an event, an erasure, an erasure that began and never went further
    (incomplete) and an anchor after the backup.
    """
    facts = await _populate(settings, patients=5)
    pids = facts["pids"]
    pseudonym = Deidentifier(research_key(settings)).pseudonym
    await _cohort_output(settings, [pseudonym(pids[2]), "pt-someone"], settings.data_dir / "out")
    # Anchored long ago: the anchors an old backup covers are old, and that is no failure.
    before = await _anchor(settings, at=NOW - timedelta(days=40))
    await scheduled_backup(settings, now=NOW - timedelta(minutes=30))
    async with open_env(settings) as env, env.sdk("clinician", "dr-a", TEAM) as sdk:
        await sdk.add_observations(pids[1], [observation(E.Phq9(11), effective=at(9))])
        async with env.sdk("admin", "ops") as admin:
            await admin.erase_patient(pids[0])
    await erasure_ledger(settings).record(pids[2])
    return before, await _anchor(settings), pids[2]


def test_dr_drill_restores_verifies_and_measures_and_writes_nothing_live(tmp_path):
    live = tmp_path / "live"
    settings = api_settings(live)
    before, after, unfinished = asyncio.run(_live_with_anchors(settings))
    assert after.entries > before.entries
    files = _files(live)

    code, line, out = _drill_cli(live, "--scratch", str(tmp_path / "scratch"))
    assert code == 0, out
    # Nothing live was written: keys, erasure ledger, anchors, secrets, the database, the
    # cohort output (the scratch erasure of the patient did not reach it).
    assert _files(live) == files
    # The erasure the scratch environment completed is still incomplete live.
    assert asyncio.run(erasure_ledger(settings).incomplete()) == [unfinished]
    assert line["ok"] is True and line["error"] is None
    # Five, less the one erased before the backup, the one after, and the unfinished one.
    assert line["restored_patients"] == 2 and line["erasures_reapplied"] == 2
    assert line["anchors_checked"] == 1 and line["anchors_beyond_backup"] == 1
    assert line["twins_compared"] == 2 and line["twin_mismatches"] == 0
    assert line["event_count_mismatches"] == 0 and line["live_behind_backup"] == 0
    assert line["event_log_gaps"] == 0 and line["future_archives"] == 0
    assert line["patients_changed_since_backup"] == 1
    assert line["events"] == 2 * 4 and line["audit_entries"] >= before.entries
    # RPO from the snapshot's own time (the manifest's snapshot_at), not the archive's name;
    # RTO until the restored environment is verified, the checks after it apart.
    assert 0 < line["rpo_s"] < 60 and 0 < line["restore_s"] <= line["rto_s"] < 60
    assert line["checks_s"] > 0 and line["within_objectives"] is True
    assert (line["rpo_objective_s"], line["rto_objective_s"]) == (3600, 14400)
    assert datetime.fromisoformat(line["backup_at"]) > NOW - timedelta(minutes=1)
    assert not (tmp_path / "scratch").exists()  # removed afterwards
    # The live environment is as it was: nothing of the drill's in it.
    assert verify_audit(settings).entries == after.entries


def test_dr_drill_fails_on_a_tampered_archive(tmp_path):
    live = tmp_path / "live"
    settings = api_settings(live)
    asyncio.run(_populate(settings, patients=2))
    made = asyncio.run(scheduled_backup(settings, now=NOW))
    part = live / "backups" / made.name / "table-events.nmb"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    code, line, out = _drill_cli(live, "--keep-scratch", "--scratch", str(tmp_path / "s"))
    assert code == 1, out
    assert line["ok"] is False and "table-events" in line["error"]
    assert line["backup_id"] == made.report.backup_id and line["rto_s"] is None
    assert line["within_objectives"] is False
    assert (tmp_path / "s" / "archive" / MANIFEST).is_file()  # kept on request


def test_dr_drill_prints_its_json_line_when_a_later_step_fails(tmp_path):
    live = tmp_path / "live"
    settings = api_settings(live)
    asyncio.run(_populate(settings, patients=2))
    made = asyncio.run(scheduled_backup(settings, now=NOW))
    for part in live.glob("novamind.db*"):  # the live store is gone: it cannot be compared
        part.unlink()
    code, line, out = _drill_cli(live, "--scratch", str(tmp_path / "s"))
    assert code == 1, out
    assert line["ok"] is False and line["error"].startswith("StorageUnavailableError: ")
    assert line["backup"] == made.name and line["rpo_s"] > 0 and line["restore_s"] > 0
    assert not (tmp_path / "s").exists() and not (live / "novamind.db").exists()


async def test_dr_drill_refuses_bad_arguments_before_it_starts(tmp_path):
    settings = api_settings(tmp_path, database_url="postgresql://drill@127.0.0.1:1/live")
    with pytest.raises(errors.ConfigurationError, match="--scratch-database-url"):
        await dr_drill(settings)
    with pytest.raises(errors.ConfigurationError, match="must not be the live one"):
        await dr_drill(settings, scratch_database_url=settings.database_url)
    with pytest.raises(errors.InvalidInputError, match="twins"):
        await dr_drill(api_settings(tmp_path), twins=0)
    with pytest.raises(errors.InvalidInputError, match="rto_objective_s"):
        await dr_drill(api_settings(tmp_path), rto_objective_s=float("inf"))


def test_dr_drill_without_a_complete_backup(tmp_path):
    root = tmp_path / "backups"
    (root / "20261205T220000Z-0badc0de").mkdir(parents=True)  # no manifest
    (root / "20261205T230000Z-0badc0de").mkdir()
    (root / "20261205T230000Z-0badc0de" / MANIFEST).write_bytes(b"")  # an empty one
    (root / "20261399T999999Z-deadbeef").mkdir()  # no such time: skipped with a warning
    (root / "20261399T999999Z-deadbeef" / MANIFEST).write_text("{}")
    code, line, out = _drill_cli(tmp_path)
    assert code == 1 and line["ok"] is False, out
    assert "no complete backup" in line["error"]
    listed = asyncio.run(LocalArchiveRoot(root).archives())
    assert [(a.name, a.complete) for a in listed] == [
        ("20261205T220000Z-0badc0de", False),
        ("20261205T230000Z-0badc0de", False),
    ]
    with pytest.raises(errors.StorageUnavailableError, match="removed meanwhile"):
        asyncio.run(LocalArchiveRoot(root).fetch("20261205T230000Z-0badc0de", tmp_path / "c"))


async def test_a_prune_while_the_drill_copies_fails_it_cleanly(tmp_path):
    settings = api_settings(tmp_path / "live")
    await _populate(settings, patients=2)
    for cut in ("manifest", "archive"):  # a prune half-way (the manifest goes first), or done
        made = await scheduled_backup(settings)
        archive = tmp_path / "live" / "backups" / made.name

        def prune(line: str, archive: Path = archive, cut: str = cut) -> None:
            if line.startswith("fetching"):
                (archive / MANIFEST).unlink()
                if cut == "archive":
                    shutil.rmtree(archive)

        report = await dr_drill(settings, scratch=tmp_path / "s", progress=prune)
        assert report.ok is False and report.backup == made.name
        assert "StorageUnavailableError" in (report.error or "")
        assert "removed meanwhile" in (report.error or "")
        assert not (tmp_path / "s").exists()


async def test_dr_drill_compares_twins_without_writing_and_finds_a_gap_in_the_log(tmp_path):
    settings = api_settings(tmp_path / "live")
    facts = await _populate(settings, patients=3)
    with sqlite3.connect(tmp_path / "live" / "novamind.db") as db:
        # A twin whose index entry is not in the backup: a comparison that updated the index
        # would add it, and the scratch store would hold more than was restored.
        db.execute("DELETE FROM twin_index")
        # An acknowledged event lost before the backup (the patient has no checkpoint).
        db.execute("DELETE FROM events WHERE patient_id = ? AND seq = 2", (facts["pids"][1],))
    await scheduled_backup(settings)
    report = await dr_drill(
        settings, scratch=tmp_path / "s", keep_scratch=True, rpo_objective_s=0.000_001
    )
    assert report.twins_compared == 2 and report.twin_mismatches == 0
    assert report.event_log_gaps == 1 and report.event_count_mismatches == 0
    assert report.ok is False and report.error == "a check failed (see the counts)"
    assert report.within_objectives is False  # RPO above a microsecond
    manifest = json.loads((tmp_path / "s" / "archive" / MANIFEST).read_text())
    # The scratch store holds what was restored and nothing more (the manifest names the
    # tables that hold rows).
    tables = ("patients", "patient_links", "data_keys", "events", "twin_index", "audit_log")
    with sqlite3.connect(tmp_path / "s" / "data" / "novamind.db") as db:
        held = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
        documents = db.execute("SELECT count(*) FROM documents").fetchone()[0]
    assert held == {t: manifest["tables"].get(t, 0) for t in tables}
    assert held["twin_index"] == 0 and documents == manifest["documents"]
    # The live store is read through a read-only connection: never created, never migrated.
    with pytest.raises(errors.StorageUnavailableError):
        async with open_log_reader(api_settings(tmp_path / "none")):
            pass
    assert not (tmp_path / "none" / "novamind.db").exists()


async def _relations(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    return {r["table_name"] for r in rows}


async def test_dr_drill_of_a_postgresql_source_leaves_its_scratch_database_holding_nothing(
    tmp_path, postgres_server: PostgresServer
):
    tag = uuid.uuid4().hex[:8]
    live_db = postgres_server.create_database(f"drill_live_{tag}")
    settings = api_settings(tmp_path / "live", database_url=live_db)
    await _populate(settings, patients=3)
    conn = await asyncpg.connect(live_db)
    await conn.execute("DELETE FROM twin_index")  # twins without an index entry in the backup
    await conn.close()
    await scheduled_backup(settings)
    # A database that is not a drill's: refused before anything is created in it.
    other = postgres_server.create_database(f"drill_other_{tag}")
    conn = await asyncpg.connect(other)
    await conn.execute("CREATE TABLE invoices (id int)")
    await conn.close()
    report = await dr_drill(settings, scratch_database_url=other)
    assert report.ok is False and "not a drill's scratch database" in (report.error or "")
    assert await _relations(other) == {"invoices"}
    # A drill that left its restored data (kept, as a killed one leaves it), then one that
    # finds it: it starts from nothing and leaves nothing but the marker.
    scratch_db = postgres_server.create_database(f"drill_scratch_{tag}")
    kept = await dr_drill(
        settings, scratch_database_url=scratch_db, scratch=tmp_path / "k", keep_scratch=True
    )
    assert kept.ok, kept
    assert {"events", MARKER} <= await _relations(scratch_db)
    report = await dr_drill(settings, scratch_database_url=scratch_db)
    assert report.ok, report
    assert report.restored_patients == 2 and report.twins_compared == 2
    assert await _relations(scratch_db) == {MARKER}
    # The live store is read without migrating it.
    fresh = postgres_server.create_database(f"drill_fresh_{tag}")
    async with open_log_reader(api_settings(tmp_path / "f", database_url=fresh)) as (snapshot, _):
        with pytest.raises(asyncpg.UndefinedTableError):
            await snapshot.patient_ids()
    assert await _relations(fresh) == set()


async def test_dr_drill_fails_when_the_restored_chain_contradicts_an_anchor(tmp_path):
    settings = api_settings(tmp_path)
    await _populate(settings, patients=2)
    await audit_anchor_store(settings).put(AuditAnchor(3, "0" * 64, NOW.isoformat()))
    await scheduled_backup(settings)
    report = await dr_drill(settings)
    assert report.ok is False and "audit chain does not verify" in (report.error or "")


#: A drill in its own process that sends itself SIGTERM (as a Job's deadline does) once the
#: backup is restored into its scratch folder.
_SIGTERM_DRILL = """
import asyncio, os, signal, sys
from pathlib import Path
from deployments.ops.drill import dr_drill
from tests.integration.conftest import api_settings

def progress(line):
    if line.startswith("comparing restored twins"):
        os.kill(os.getpid(), signal.SIGTERM)

report = asyncio.run(
    dr_drill(api_settings(Path(sys.argv[1])), scratch=Path(sys.argv[2]), progress=progress)
)
print(report.line(), flush=True)
"""


def test_a_sigterm_stops_the_drill_and_its_scratch_is_removed(tmp_path):
    live, scratch = tmp_path / "live", tmp_path / "scratch"
    settings = api_settings(live)
    asyncio.run(_populate(settings, patients=2))
    asyncio.run(scheduled_backup(settings))
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _SIGTERM_DRILL, str(live), str(scratch)],
        capture_output=True, text=True, timeout=120, cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["ok"] is False and line["error"] == "stopped by SIGTERM"
    assert line["restore_s"] is not None and line["twins_compared"] == 0
    assert not scratch.exists()


async def test_dr_drill_names_restored_data_keys_under_a_retired_kek(tmp_path):
    # Data keys wrapped under kek-1 when the backup ran, re-wrapped since and kek-1 retired:
    # the backup restores rows no twin can be read from. That is the KEK's doing, named as
    # such, never a twin that "differs".
    settings = api_settings(tmp_path / "live")
    await _populate(settings, patients=2)
    await new_kek(settings)
    await scheduled_backup(settings)  # the archive key under kek-2, the data keys under kek-1
    assert (await rotate(settings)).remaining == {}
    assert (await retire(settings, "kek-1.key")).retired
    report = await dr_drill(settings, scratch=tmp_path / "s")
    line = json.loads(report.line())
    assert line["data_keys_under_unavailable_kek"] == report.restored_patients > 0
    assert line["unavailable_keks"] == {"kek-1.key": report.restored_patients}
    assert line["twin_mismatches"] == 0
    assert line["twins_unreadable"] == {"KeyUnavailableError": report.twins_compared}
    assert report.ok is False and "docs/operations.md §7" in str(report.error)
    assert "kek-1.key (in retired/)" in str(report.error)
    assert not (tmp_path / "s").exists()
    # Moved back, the same backup passes.
    (tmp_path / "live" / "keys" / "retired" / "kek-1.key").rename(
        tmp_path / "live" / "keys" / "kek-1.key"
    )
    again = await dr_drill(settings)
    assert again.ok, again.error
    assert again.data_keys_under_unavailable_kek == 0 and again.twins_unreadable == {}


async def test_a_disabled_kms_key_is_unusable_for_a_restore(tmp_path, moto, aws_credentials):
    server = moto["server"]
    kms = server.client("kms")
    created = kms.create_key()["KeyMetadata"]
    old = created["Arn"]
    settings = api_settings(
        tmp_path / "live", kms_key_id=moto["key"], aws_endpoint_url=server.endpoint
    )
    current = kms.describe_key(KeyId=moto["key"])["KeyMetadata"]["Arn"]
    assert await unusable_keks(settings, [old, current]) == {}
    kms.disable_key(KeyId=created["KeyId"])
    missing = current.rsplit("/", 1)[0] + "/" + str(uuid.uuid4())
    assert await unusable_keks(settings, [old, current, missing]) == {
        old: "KMS key state Disabled",
        missing: "no such KMS key",
    }


def test_the_drill_leaves_an_event_loop_sigterm_handler_in_place():
    # The host's loop handles SIGTERM itself: the drill must not take the handler over (it
    # could not give it back), and a Python-level handler is restored as it was.
    hits: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, hits.append, 1)
        try:
            stop = _Sigterm()
            stop.install()
            stop.remove()
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.05)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    asyncio.run(main())
    assert hits == [1]

    def mine(*_: object) -> None: ...

    before = signal.signal(signal.SIGTERM, mine)
    try:

        async def other() -> None:
            stop = _Sigterm()
            stop.install()
            assert signal.getsignal(signal.SIGTERM) is not mine
            stop.remove()

        asyncio.run(other())
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)
