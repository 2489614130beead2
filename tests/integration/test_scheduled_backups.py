"""Scheduled backups (folder and S3 roots, pruning) and ``novamind dr-drill`` end to end.

The environment backed up is the disaster-recovery drill's own (``_populate``: patients through
the API, checkpoints, a scenario report, an erasure). Archives are placed in the past by the
time a run is given (``now``), never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deployments.bootstrap import open_backup_stores
from deployments.ops.archives import (
    MANIFEST,
    LocalArchiveRoot,
    archive_root,
    newest_complete,
    scheduled_backup,
)
from deployments.ops.audit import verify as verify_audit
from deployments.ops.cli import app
from deployments.ops.drill import dr_drill
from deployments.stores import audit_anchor_store
from tests.integration.conftest import api_settings, open_env
from tests.integration.test_disaster_recovery import TEAM, _populate, at
from tests.servers import MotoServer, PostgresServer
from twin import errors
from twin.client import observation
from twin.domain import events as E
from twin.domain.audit import AuditAnchor
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


async def _anchor(settings: TwinSettings) -> AuditAnchor:
    """Anchor the live audit chain's head now (what ``novamind audit anchor`` does)."""
    report = await asyncio.to_thread(verify_audit, settings)
    anchor = AuditAnchor(report.entries, report.head_hash, datetime.now(UTC).isoformat())
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
    assert newest_complete(await LocalArchiveRoot(root).archives()).name == fourth.name  # type: ignore[union-attr]


async def test_scheduled_backups_in_s3_upload_the_manifest_last_with_sse_kms(
    tmp_path, moto, aws_credentials
):
    s3 = moto["server"].client("s3")
    bucket = f"backups-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    settings = api_settings(
        tmp_path / "live",
        backup_root=f"s3://{bucket}/backups/test",
        backup_keep=1,
        s3_kms_key_id=moto["key"],
        aws_endpoint_url=moto["server"].endpoint,
    )
    await _populate(settings, patients=2)
    first = await scheduled_backup(settings, now=NOW - timedelta(hours=2))
    # A newer upload that never got its manifest: not a backup, and not pruned (recent).
    stray = f"backups/test/{NOW.strftime('%Y%m%dT%H%M%SZ')}-0badc0de/table-events.nmb"
    s3.put_object(Bucket=bucket, Key=stray, Body=b"partial")
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


async def _live_with_anchors(settings: TwinSettings) -> tuple[AuditAnchor, AuditAnchor]:
    """Five patients, an anchor, a backup half an hour ago; then an erasure, an event, an anchor."""
    facts = await _populate(settings, patients=5)
    before = await _anchor(settings)
    await scheduled_backup(settings, now=NOW - timedelta(minutes=30))
    async with open_env(settings) as env, env.sdk("clinician", "dr-a", TEAM) as sdk:
        await sdk.add_observations(facts["pids"][1], [observation(E.Phq9(11), effective=at(9))])
        async with env.sdk("admin", "ops") as admin:
            await admin.erase_patient(facts["pids"][0])
    return before, await _anchor(settings)


def test_dr_drill_restores_verifies_and_measures(tmp_path):
    live = tmp_path / "live"
    settings = api_settings(live)
    before, after = asyncio.run(_live_with_anchors(settings))
    assert after.entries > before.entries

    # What never is in a backup (keys, erasure ledger, anchors) is read, never written.
    keys = {p: p.read_bytes() for p in sorted((live / "keys").rglob("*")) if p.is_file()}
    code, line, out = _drill_cli(live, "--scratch", str(tmp_path / "scratch"))
    assert code == 0, out
    assert {p: p.read_bytes() for p in sorted((live / "keys").rglob("*")) if p.is_file()} == keys
    assert line["ok"] is True and line["error"] is None
    assert line["restored_patients"] == 3  # five, less the one erased before and the one after
    assert line["erasures_reapplied"] >= 1
    assert line["anchors_checked"] == 1 and line["anchors_beyond_backup"] == 1
    assert line["twins_compared"] == 3 and line["twin_mismatches"] == 0
    assert line["event_count_mismatches"] == 0 and line["live_behind_backup"] == 0
    assert line["patients_changed_since_backup"] == 1
    assert line["events"] == 3 * 4 and line["audit_entries"] >= before.entries
    # RPO from the snapshot's own time (the manifest's snapshot_at), not the archive's name.
    assert 0 < line["rpo_s"] < 60 and 0 < line["rto_s"] < 60
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
    assert (tmp_path / "s" / "data" / "keys").is_symlink()  # kept on request


async def test_dr_drill_refuses_a_postgresql_source_without_a_scratch_database(tmp_path):
    settings = api_settings(tmp_path, database_url="postgresql://drill@127.0.0.1:1/live")
    with pytest.raises(errors.ConfigurationError, match="--scratch-database-url"):
        await dr_drill(settings)
    with pytest.raises(errors.ConfigurationError, match="must not be the live one"):
        await dr_drill(settings, scratch_database_url=settings.database_url)


def test_dr_drill_without_a_complete_backup(tmp_path):
    (tmp_path / "backups" / "20261205T220000Z-0badc0de").mkdir(parents=True)  # no manifest
    code, line, out = _drill_cli(tmp_path)
    assert code == 1 and line["ok"] is False, out
    assert "no complete backup" in out


async def test_dr_drill_of_a_postgresql_source_empties_its_scratch_database(tmp_path):
    pg = PostgresServer()
    pg.start()
    try:
        settings = api_settings(tmp_path / "live", database_url=pg.create_database("drill_live"))
        scratch_db = pg.create_database("drill_scratch")
        await _populate(settings, patients=3)
        await scheduled_backup(settings)
        for _ in range(2):  # the second drill finds the scratch database empty again
            report = await dr_drill(settings, scratch_database_url=scratch_db)
            assert report.ok, report
            assert report.restored_patients == 2 and report.twins_compared == 2
        async with open_backup_stores(api_settings(tmp_path / "s", database_url=scratch_db)) as s:
            assert await s.snapshot.is_empty() and await s.documents.scan(limit=1) == []
    finally:
        pg.destroy()


async def test_dr_drill_fails_when_the_restored_chain_contradicts_an_anchor(tmp_path):
    settings = api_settings(tmp_path)
    await _populate(settings, patients=2)
    await audit_anchor_store(settings).put(AuditAnchor(3, "0" * 64, NOW.isoformat()))
    await scheduled_backup(settings)
    report = await dr_drill(settings)
    assert report.ok is False and "audit chain does not verify" in (report.error or "")
