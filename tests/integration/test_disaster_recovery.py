"""The disaster-recovery drill: back up a live environment, restore it into an empty one.

Run on the embedded configuration (SQLite, local checkpoints, local key file) and on the
production adapters (PostgreSQL, S3 checkpoints and KMS keys through moto's server). After the
restore, every twin's state equals the original's byte for byte (checkpoint + replay on both
sides), identifiers and scenario reports read back the same, and the audit chain verifies to the
backed-up head. The measured restore time is reported (``RestoreReport.seconds``).

A restore that fails after its table import (a store refuses a document or a checkpoint, the
restored audit chain does not verify) leaves the environment empty, and the same restore then
succeeds. The failing archives are the drill's own, with one part changed and sealed again
under the same key: every digest holds, so only what restore checks after loading finds it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from deployments.bootstrap import open_backup_stores
from deployments.host_ports import build_host_ports
from deployments.ops.audit import verify as verify_audit
from deployments.ops.backup import BackupReport, backup, restore
from storage.sealed import ArchiveReader, ArchiveWriter
from tests.integration.conftest import api_settings, open_env
from tests.servers import MotoServer, PostgresServer
from twin import errors
from twin.audit_log import all_audit_entries
from twin.client import observation
from twin.domain import events as E
from twin.domain.audit import verify_chain
from twin.domain.specs import Scenario, ScenarioDose
from twin.ports import Document
from twin.service.host import TwinHost
from twin.settings import TwinSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TEAM = ("team-dr",)
#: Day 0 of the drill's patients: sixty days ago, so that their events lie in the past.
ENROLLED = datetime.now(UTC).replace(microsecond=0) - timedelta(days=60)


def at(day: float) -> datetime:
    """The instant of the drill patients' twin day ``day``."""
    return ENROLLED + timedelta(days=day)


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, Any]]:
    """PostgreSQL and moto (S3 + KMS) for the production-adapter drill."""
    pg, moto = PostgresServer(), MotoServer()
    pg.start()
    moto.start()
    key = moto.client("kms").create_key()["KeyMetadata"]["KeyId"]  # type: ignore[attr-defined]
    try:
        yield {"pg": pg, "moto": moto, "key": key}
    finally:
        moto.stop()
        pg.destroy()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def _embedded(tmp_path: Path) -> Callable[[str], TwinSettings]:
    def make(name: str) -> TwinSettings:
        return api_settings(tmp_path / name)

    return make


def _production(tmp_path: Path, aws: dict[str, Any]) -> Callable[[str], TwinSettings]:
    def make(name: str) -> TwinSettings:
        bucket = f"ckpt-{name}-{uuid.uuid4().hex[:8]}"
        aws["moto"].client("s3").create_bucket(Bucket=bucket)
        return api_settings(
            tmp_path / name,
            database_url=aws["pg"].create_database(f"dr_{name}_{uuid.uuid4().hex[:8]}"),
            s3_bucket=bucket,
            s3_kms_key_id=aws["key"],
            kms_key_id=aws["key"],
            aws_endpoint_url=aws["moto"].endpoint,
        )

    return make


def _escrow_keys(source: TwinSettings, target: TwinSettings) -> None:
    """The embedded KEK lives outside backups; the drill restores it from its own escrow."""
    keys = source.data_dir / "keys"
    if keys.is_dir() and source.kms_key_id is None:
        shutil.copytree(keys, target.data_dir / "keys")


async def _populate(settings: TwinSettings, patients: int) -> dict[str, Any]:
    """Patients through the API: observations, checkpoints for half, a report, an erasure."""
    async with open_env(settings) as env, env.sdk("clinician", "dr-a", TEAM) as sdk:
        pids = [
            await sdk.create_patient(
                name=f"Canary {i}",
                birth_date="1970-01-02",
                mrn=f"MRN-{i}",
                care_team=TEAM[0],
                enrolled_at=ENROLLED,
            )
            for i in range(patients)
        ]
        for i, pid in enumerate(pids):
            await sdk.add_observations(
                pid,
                [
                    observation(E.Phq9(8 + i % 12), effective=at(0)),
                    observation(E.Gad7(7), effective=at(0.5)),
                ],
            )
        host = env.services.twins
        assert isinstance(host, TwinHost)
        for pid in pids[::2]:
            assert await host.passivate(pid)  # a checkpoint at seq 2
        for pid in pids:  # ...and events after it: the restore must replay them
            await sdk.add_observations(pid, [observation(E.Phq9(9), effective=at(7))])
            await sdk.add_interventions(
                pid, [observation(E.Prescription("sertraline", 50), effective=at(8))]
            )
        report = await sdk.compare_scenarios(
            pids[0],
            title="dose",
            weeks=4,
            scenarios=[
                Scenario(name="as now"),
                Scenario(
                    name="100", doses=[ScenarioDose(day=0, drug="sertraline", mg_per_day=100)]
                ),
            ],
        )
        async with env.sdk("admin", "ops") as admin:
            await admin.erase_patient(pids[-1])
        return {"pids": pids[:-1], "erased": pids[-1], "report": report.report_id}


async def _twin_states(settings: TwinSettings, pids: list[str]) -> dict[str, bytes]:
    """Each twin rebuilt by a fresh host (checkpoint + replay), as bytes."""
    stores = await build_host_ports(settings)
    try:
        host = TwinHost(stores, settings=settings.host)
        return {pid: (await host.state(pid)).to_bytes() for pid in pids}
    finally:
        await stores.aclose()


async def _read_back(settings: TwinSettings, facts: dict[str, Any]) -> dict[str, Any]:
    async with open_env(settings) as env, env.sdk("clinician", "dr-a", TEAM) as sdk:
        patients = [(await sdk.patient(pid)).model_dump() for pid in facts["pids"]]
        report = await sdk.scenario_report(facts["pids"][0], facts["report"])
        with pytest.raises(errors.NotFoundError):
            await sdk.patient(facts["erased"])
        return {"patients": patients, "report": report.model_dump()}


async def _audit(settings: TwinSettings) -> list[Any]:
    async with open_backup_stores(settings) as stores:
        return await all_audit_entries(stores.audit)


async def _drill(make: Callable[[str], TwinSettings], tmp_path: Path) -> None:
    source = make("source")
    facts = await _populate(source, patients=7)
    archive = tmp_path / "archive"
    made = await backup(source, archive)
    # The erased patient's events went with the erasure (the registry row stays: a tombstone).
    assert made.tables["events"] == 4 * 6 and made.tables["patients"] == 7
    assert made.checkpoints == 3  # every other live patient; the erased one had none kept
    assert made.documents >= 1 and made.audit_entries > 20
    assert json.loads((archive / "manifest.json").read_text())["format"] == "novamind-backup/1"
    # Nothing in the archive is readable without the key: no identifier appears in it.
    blob = b"".join(p.read_bytes() for p in archive.iterdir())
    assert b"Canary" not in blob and b"MRN-" not in blob and facts["pids"][0].encode() not in blob

    target = make("target")
    _escrow_keys(source, target)
    restored = await restore(target, archive)
    print(f"\nrestore time ({(target.database_url and 'postgres') or 'sqlite'}): "
          f"{restored.seconds:.3f} s for {sum(restored.tables.values())} rows")  # fmt: skip
    assert restored.seconds > 0
    assert restored.tables["events"] == made.tables["events"]
    assert restored.checkpoints == made.checkpoints and restored.documents == made.documents
    assert restored.audit_head == made.audit_head

    # Every twin's state equals the original, byte for byte.
    original = await _twin_states(source, facts["pids"])
    again = await _twin_states(target, facts["pids"])
    assert again == original
    # The audit chain verifies, and is the source's chain up to the backup.
    source_entries, target_entries = await _audit(source), await _audit(target)
    assert verify_chain(target_entries, expected_head=made.audit_head).ok
    assert target_entries == source_entries[: len(target_entries)]
    # Identifiers, scenario reports and the erasure read back the same.
    before, after = await _read_back(source, facts), await _read_back(target, facts)
    assert after == before

    # Restoring again is refused: the environment is no longer empty.
    with pytest.raises(errors.ConfigurationError, match="empty"):
        await restore(target, archive)


async def test_drill_embedded(tmp_path):
    await _drill(_embedded(tmp_path), tmp_path)


async def test_drill_postgres_s3_kms(tmp_path, aws, aws_credentials):
    await _drill(_production(tmp_path, aws), tmp_path)


async def test_restore_refuses_a_tampered_archive_and_leaves_nothing(tmp_path):
    make = _embedded(tmp_path)
    source = make("source")
    await _populate(source, patients=3)
    archive = tmp_path / "archive"
    await backup(source, archive)
    part = archive / "table-events.nmb"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    target = make("target")
    _escrow_keys(source, target)
    with pytest.raises(errors.BackupCorruptError, match="table-events"):
        await restore(target, archive)
    async with open_backup_stores(target) as stores:
        assert await stores.snapshot.is_empty()


Rows = list[tuple[Any, ...]]


@dataclass(frozen=True)
class Archived:
    """A populated source environment and its backup, shared by the failing-restore tests.

    Attributes:
        make: Settings of a new, empty environment of the same kind, by name.
        source: The environment backed up.
        archive: Its backup.
        made: What the backup wrote.
        parts: The archive's rows, by part.
    """

    make: Callable[[str], TwinSettings]
    source: TwinSettings
    archive: Path
    made: BackupReport
    parts: dict[str, Rows]


async def _read_parts(settings: TwinSettings, archive: Path) -> dict[str, Rows]:
    async with open_backup_stores(settings) as stores:
        reader = await ArchiveReader.open(archive, stores.keys)
        return {name: [r for batch in reader.batches(name) for r in batch] for name in reader.parts}


async def _resealed(archived: Archived, into: Path, changed: dict[str, Rows]) -> Path:
    """The archive with ``changed`` parts, sealed again (whoever holds the key could write it)."""
    async with open_backup_stores(archived.source) as stores:
        reader = await ArchiveReader.open(archived.archive, stores.keys)
        manifest = reader.manifest
        writer = await ArchiveWriter.create(into, stores.keys, source=manifest["source"])
    for name, entry in manifest["parts"].items():
        writer.part(name, entry["columns"]).write(changed.get(name, archived.parts[name]))
    own = {"format", "backup_id", "created_at", "source", "key", "parts", "seal"}
    writer.finish(**{k: v for k, v in manifest.items() if k not in own})
    return into


@pytest.fixture(scope="module", params=["embedded", "postgres_s3_kms"])
def archived(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Archived]:
    """Five patients (two with a checkpoint kept, one erased) and their backup, once per kind."""
    root = tmp_path_factory.mktemp(request.param)
    with pytest.MonkeyPatch.context() as env:
        if request.param == "embedded":
            make = _embedded(root)
        else:
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            make = _production(root, request.getfixturevalue("aws"))
        source = make("source")
        asyncio.run(_populate(source, patients=5))
        made = asyncio.run(backup(source, root / "archive"))
        parts = asyncio.run(_read_parts(source, root / "archive"))
        assert made.checkpoints == 2 and made.documents >= 1
        yield Archived(make, source, root / "archive", made, parts)


async def _assert_empty(settings: TwinSettings, archived: Archived) -> None:
    """No table row, no document, no checkpoint of any patient in the archive."""
    async with open_backup_stores(settings) as stores:
        assert await stores.snapshot.is_empty()
        assert await stores.documents.scan(limit=1) == []
        for pid, *_ in archived.parts["table-patients"]:
            assert await stores.checkpoints.latest(pid) is None


async def _fails_undone_then_restores(
    archived: Archived,
    bad: Path,
    raises: type[BaseException],
    match: str,
    *,
    fault: Callable[[TwinSettings], None] | None = None,
    repair: Callable[[TwinSettings], None] | None = None,
) -> None:
    """Restoring ``bad`` fails and leaves nothing; the good archive then restores and verifies.

    Args:
        archived: The good archive and its source.
        bad: The archive whose restore fails.
        raises: The error it fails with.
        match: A pattern its message matches.
        fault: Breaks the new environment before the failing restore (a store that refuses).
        repair: Undoes ``fault`` before the good restore.
    """
    target = archived.make(f"t{uuid.uuid4().hex[:8]}")
    _escrow_keys(archived.source, target)
    if fault is not None:
        fault(target)
    with pytest.raises(raises, match=match) as failed:
        await restore(target, bad)
    assert failed.value.__notes__ == ["the restore was undone: this environment is empty again"]
    await _assert_empty(target, archived)
    if repair is not None:
        repair(target)
    restored = await restore(target, archived.archive)
    made = archived.made
    assert (restored.documents, restored.checkpoints) == (made.documents, made.checkpoints)
    assert restored.tables["events"] == made.tables["events"]
    # `novamind audit verify` on the restored environment: intact, to the backed-up head.
    report = await asyncio.to_thread(verify_audit, target, made.audit_head)
    assert report.ok and report.entries == made.audit_entries


async def test_a_document_the_store_refuses_leaves_the_environment_empty(archived, tmp_path):
    # After the real documents, one the store refuses (no collection: NOT NULL), so the tables
    # are loaded and documents put before it fails.
    documents = [*archived.parts["documents"], (None, "refused", None, b"sealed", 1.7e9)]
    bad = await _resealed(archived, tmp_path / "bad", {"documents": documents})
    await _fails_undone_then_restores(archived, bad, Exception, r"(?i)not.null")


async def test_a_checkpoint_ahead_of_its_log_leaves_the_environment_empty(archived, tmp_path):
    # The last checkpoint claims events the restored log does not hold; the first is put before.
    *kept, (pid, seq, model_version, data) = archived.parts["checkpoints"]
    checkpoints = [*kept, (pid, seq + 1000, model_version, data)]
    bad = await _resealed(archived, tmp_path / "bad", {"checkpoints": checkpoints})
    await _fails_undone_then_restores(
        archived, bad, errors.BackupCorruptError, "ahead of its restored event log"
    )


async def test_an_audit_chain_that_does_not_verify_leaves_the_environment_empty(archived, tmp_path):
    # One entry's record altered: the rows import, the recomputed chain breaks there.
    audit = list(archived.parts["table-audit_log"])
    seq, record, prev_hash, digest = audit[len(audit) // 2]
    altered = json.dumps({**json.loads(record), "actor": "someone-else"})
    audit[len(audit) // 2] = (seq, altered, prev_hash, digest)
    bad = await _resealed(archived, tmp_path / "bad", {"table-audit_log": audit})
    await _fails_undone_then_restores(
        archived, bad, errors.BackupCorruptError, "audit chain does not verify"
    )


@pytest.mark.parametrize("archived", ["embedded"], indirect=True)  # a local checkpoint folder
async def test_a_checkpoint_volume_that_refuses_a_write_leaves_the_environment_empty(archived):
    # The last checkpointed patient's folder is taken by a file: that write fails (the first
    # checkpoint is already written), as on a volume that refuses it.
    pid = archived.parts["checkpoints"][-1][0]

    def folder(target: TwinSettings) -> Path:
        return target.data_dir / "checkpoints" / hashlib.sha256(pid.encode()).hexdigest()[:32]

    def fault(target: TwinSettings) -> None:
        folder(target).parent.mkdir(parents=True)
        folder(target).write_bytes(b"")

    await _fails_undone_then_restores(
        archived,
        archived.archive,
        FileExistsError,
        "File exists",
        fault=fault,
        repair=lambda target: folder(target).unlink(),
    )


async def test_a_target_holding_documents_is_refused_before_anything_is_loaded(archived):
    target = archived.make(f"t{uuid.uuid4().hex[:8]}")
    _escrow_keys(archived.source, target)
    async with open_backup_stores(target) as stores:
        await stores.documents.put(Document("jobs", "left-over", None, b"{}", 1.7e9))
    with pytest.raises(errors.ConfigurationError, match="document store holds data"):
        await restore(target, archived.archive)
    async with open_backup_stores(target) as stores:
        assert await stores.snapshot.is_empty()


async def test_restore_needs_the_same_key_encryption_key(tmp_path):
    make = _embedded(tmp_path)
    source = make("source")
    await _populate(source, patients=2)
    archive = tmp_path / "archive"
    await backup(source, archive)
    stranger = make("stranger")  # its own, different local key file
    with pytest.raises(errors.KeyAccessError, match="archive key does not open") as refused:
        await restore(stranger, archive)
    assert not isinstance(refused.value, errors.DataKeyDamagedError)  # no patient's key


async def test_backup_during_ingest_is_consistent(tmp_path):
    """A backup taken while events keep arriving restores to a state that existed."""
    make = _embedded(tmp_path)
    source = make("source")
    facts = await _populate(source, patients=4)
    archive = tmp_path / "archive"
    async with open_env(source) as env, env.sdk("clinician", "dr-a", TEAM) as sdk:
        host = env.services.twins
        assert isinstance(host, TwinHost)

        async def keep_writing() -> None:
            for day in range(10, 40):
                for pid in facts["pids"]:
                    await sdk.add_observations(
                        pid, [observation(E.Phq9(day % 27), effective=at(day))]
                    )
                    if day % 5 == 0:
                        await host.passivate(pid)  # checkpoints move on during the backup

        writer = asyncio.create_task(keep_writing())
        await asyncio.sleep(0.2)
        made = await backup(source, archive)
        await writer
    target = make("target")
    _escrow_keys(source, target)
    restored = await restore(target, archive)  # checks checkpoint seq <= restored log
    assert restored.audit_head == made.audit_head
    states = await _twin_states(target, facts["pids"])
    assert len(states) == len(facts["pids"])
    # The source moved on; the restored twins are the source's twins as of the snapshot.
    async with open_backup_stores(target) as stores:
        entries = await all_audit_entries(stores.audit)
    assert verify_chain(entries, expected_head=made.audit_head).ok


async def _erased_after_the_backup_stays_erased(make: Callable[[str], TwinSettings], tmp_path):
    source = make("source")
    async with open_env(source) as env, env.sdk("clinician", "dr-a", TEAM) as sdk:
        pids = [
            await sdk.create_patient(
                name=f"Canary {i}",
                birth_date="1970-01-02",
                mrn=f"MRN-{i}",
                care_team=TEAM[0],
                enrolled_at=ENROLLED,
            )
            for i in range(2)
        ]
        for pid in pids:
            await sdk.add_observations(pid, [observation(E.Phq9(14), effective=at(0))])
    archive = tmp_path / "archive"
    await backup(source, archive)
    async with open_env(source) as env, env.sdk("admin", "ops") as admin:
        await admin.erase_patient(pids[0])
    target = make("target")
    _escrow_keys(source, target)  # the embedded ledger travels with the key folder's escrow
    restored = await restore(target, archive)
    assert restored.erasures_reapplied == 1
    async with open_backup_stores(target) as stores:
        assert await stores.snapshot.patient_ids() == [pids[1]]
        with pytest.raises((errors.KeyAccessError, errors.NotFoundError)):
            await stores.registry.identifiers(pids[0])
    async with open_env(target) as env, env.sdk("clinician", "dr-a", TEAM) as sdk:
        with pytest.raises(errors.NotFoundError):
            await sdk.patient(pids[0])
        assert (await sdk.patient(pids[1])).name == "Canary 1"


async def test_a_patient_erased_after_the_backup_is_not_restored_embedded(tmp_path):
    await _erased_after_the_backup_stays_erased(_embedded(tmp_path), tmp_path)


async def test_a_patient_erased_after_the_backup_is_not_restored_postgres_s3(
    tmp_path, aws, aws_credentials
):
    # The ledger is one replicated prefix that the source and the recovery region both name.
    ledger = f"ledger-{uuid.uuid4().hex[:8]}"
    aws["moto"].client("s3").create_bucket(Bucket=ledger)
    production = _production(tmp_path, aws)

    def make(name: str) -> TwinSettings:
        return production(name).model_copy(update={"erasure_ledger": f"s3://{ledger}/erased"})

    await _erased_after_the_backup_stays_erased(make, tmp_path)


async def test_the_service_erases_a_patient_a_database_restore_revived(tmp_path):
    # A point-in-time restore of the database brings back a patient erased later: the ledger
    # names them, and the API's services erase them again before serving anything.
    settings = api_settings(tmp_path / "live")
    async with open_env(settings) as env, env.sdk("clinician", "dr-a", TEAM) as sdk:
        pid = await sdk.create_patient(
            name="Canary", birth_date="1970-01-02", mrn="MRN-R", care_team=TEAM[0]
        )
        await env.services.erasures.record(pid)  # erased later, in the database's future
    async with open_env(settings) as env, env.sdk("clinician", "dr-a", TEAM) as sdk:
        with pytest.raises(errors.NotFoundError):
            await sdk.patient(pid)
        assert await env.services.registry.care_team(pid) is None


def test_cli_backup_and_restore(tmp_path):
    source_dir, target_dir, archive = tmp_path / "a", tmp_path / "b", tmp_path / "archive"
    asyncio.run(_populate(api_settings(source_dir), patients=2))
    shutil.copytree(source_dir / "keys", target_dir / "keys")
    novamind = str(ROOT / ".venv" / "bin" / "novamind")

    def run(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "NOVAMIND_DATA_DIR": str(data_dir), "COLUMNS": "200",
               "PYTHONPATH": str(ROOT)}  # fmt: skip
        return subprocess.run(
            [novamind, *args], capture_output=True, text=True, timeout=120, env=env, check=False
        )

    made = run("backup", str(archive), data_dir=source_dir)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "written to" in made.stdout
    again = run("backup", str(archive), data_dir=source_dir)
    assert again.returncode == 1 and "not empty" in again.stdout
    done = run("restore", str(archive), data_dir=target_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "restored and verified in" in done.stdout and "audit chain  intact" in done.stdout
    # The anchors of the chain before the restore stay as evidence: a new location first.
    assert "set NOVAMIND_AUDIT_ANCHORS to a new location" in done.stdout
    assert "novamind audit verify --covered-only" in done.stdout
    refused = run("restore", str(archive), data_dir=target_dir)
    assert refused.returncode == 1 and "empty" in refused.stdout
