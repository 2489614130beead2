"""``novamind dr-drill``: the newest scheduled backup restored into a scratch environment, checked.

The drill copies the newest complete archive under the backup root into its scratch folder
(:mod:`deployments.ops.archives`; from S3 it is downloaded), restores it there
(:func:`deployments.ops.backup.restore`, which verifies every part, loads all or nothing,
verifies the audit chain to the backed-up head and applies the erasure ledger) into a scratch
environment, then checks what was restored:

- the audit chain against the audit anchors (:func:`twin.audit_log.verify_audit_log`): every
  anchor the restored chain covers must hold; anchors newer than the backup lie beyond the
  restored chain's length and are counted (``anchors_beyond_backup``), not failed;
- events per patient: the restored event log's against the archive's (patients the erasure
  ledger names excepted: the restore erased them again), and the live environment's against the
  backup's: for every patient not erased, live >= backup (the log only grows); patients with
  events newer than the backup are what losing the live environment now would cost;
- twins: for a sample (or all), the restored twin (restored checkpoint + replay of the events
  after it) against a twin rebuilt from the restored log alone, state byte for byte
  (:mod:`twin.service.rebuild`).

The scratch environment is the live settings with only the places data is written changed: a
fresh ``data_dir`` (SQLite, local checkpoints, documents in the relational store), no Redis, and
for a PostgreSQL source the scratch database named by ``--scratch-database-url`` (a restore only
loads into the same kind of store). Everything that is never in a backup is the live one's: the
key provider (the KMS key, or the live key folder, linked into the scratch ``data_dir`` with the
live ``secrets``), the erasure ledger (named explicitly, as the live settings resolve it) and the
audit anchors (read through the live settings). Afterwards the scratch folder is removed and a
scratch database emptied (``--keep-scratch`` keeps both).

RTO here is the drill's start to the restore verified and compared; RPO its start minus the
backup's snapshot time (the manifest's ``snapshot_at``, or the archive's start time).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployments.bootstrap import build_host_ports, open_backup_stores
from deployments.ops.archives import MANIFEST, archive_root, newest_complete
from deployments.ops.backup import RestoreReport, restore
from deployments.stores import (
    audit_anchor_store,
    erasure_ledger,
    erasure_ledger_location,
    open_audit_log,
    open_stores,
)
from twin import errors
from twin.audit_log import verify_audit_log
from twin.domain.audit import AuditAnchor
from twin.service.host import TwinHost
from twin.service.rebuild import differences, rebuilt_from_log
from twin.settings import TwinSettings

__all__ = ["DrillReport", "dr_drill", "scratch_settings"]


@dataclass(slots=True)
class DrillReport:
    """What the drill found; :meth:`line` is the JSON line ``novamind dr-drill`` prints last.

    Attributes:
        backup_id: The archive restored.
        backup_at: Its snapshot time (UTC, ISO 8601).
        restored_patients: Patients with a data key after the restore (the ledger applied).
        events: Events in the restored log.
        audit_entries: Entries of the restored, verified audit chain.
        anchors_checked: Audit anchors the restored chain was checked against.
        anchors_beyond_backup: Anchors newer than the backup (beyond the restored chain).
        twins_compared: Restored twins compared with their rebuild from the log alone.
        twin_mismatches: Those that differ (or could not be rebuilt).
        event_count_mismatches: Patients whose restored event count differs from the archive's.
        erasures_reapplied: Restored patients the erasure ledger names, erased again.
        rto_s: Drill start to restored, verified and compared, s.
        rpo_s: Drill start minus the backup's snapshot time, s.
        backup: The archive's name under the root.
        live_behind_backup: Patients not erased whose live log is shorter than the backup's.
        patients_changed_since_backup: Live patients with events newer than the backup.
        erasures_failed: Unfinished erasures that failed again in the scratch environment.
        error: Why the drill stopped early (``None``: it ran through).
        ok: Every check passed.
    """

    backup_id: str | None = None
    backup_at: str | None = None
    restored_patients: int = 0
    events: int = 0
    audit_entries: int = 0
    anchors_checked: int = 0
    anchors_beyond_backup: int = 0
    twins_compared: int = 0
    twin_mismatches: int = 0
    event_count_mismatches: int = 0
    erasures_reapplied: int = 0
    rto_s: float | None = None
    rpo_s: float | None = None
    backup: str | None = None
    live_behind_backup: int = 0
    patients_changed_since_backup: int = 0
    erasures_failed: int = 0
    error: str | None = None
    ok: bool = False

    def line(self) -> str:
        """The report as one line of JSON."""
        return json.dumps(asdict(self), separators=(", ", ": "))


class _CoveredAnchors:
    """The anchors a restored chain covers, as a read-only :class:`twin.ports.AuditAnchorStore`."""

    def __init__(self, anchors: Sequence[AuditAnchor]) -> None:
        self._anchors = sorted(anchors, key=lambda a: (a.entries, a.at))

    async def put(self, anchor: AuditAnchor) -> None:
        raise errors.ConfigurationError("the drill never writes an audit anchor")

    async def all(self) -> list[AuditAnchor]:
        return list(self._anchors)


def _link(name: str, live: TwinSettings, data_dir: Path) -> None:
    """Link ``data_dir/name`` to the live one (the key folder, the secrets), when it exists."""
    source = (live.data_dir / name).resolve()
    if source.is_dir():
        (data_dir / name).symlink_to(source, target_is_directory=True)


def scratch_settings(
    live: TwinSettings, data_dir: Path, *, database_url: str | None = None
) -> TwinSettings:
    """The live settings with the places a restore writes moved into ``data_dir``.

    Only the database (``database_url``, else SQLite in ``data_dir``), checkpoints (local),
    documents (the relational store) and Redis (none) change; keys, the erasure ledger and the
    audit anchors stay the live ones. The live key folder and secrets are linked into
    ``data_dir`` by the caller (:func:`dr_drill`).
    """
    return live.model_copy(
        update={
            "data_dir": data_dir,
            "database_url": database_url,
            "s3_bucket": None,
            "mongo_url": None,
            "redis_url": None,
            # Resolved from the live settings: its default follows the checkpoint bucket.
            "erasure_ledger": erasure_ledger_location(live),
        }
    )


async def _verify_audit(
    live: TwinSettings, scratch: TwinSettings, restored: RestoreReport, report: DrillReport
) -> bool:
    anchors = await audit_anchor_store(live).all()
    covered = [a for a in anchors if a.entries <= restored.audit_entries]
    report.anchors_beyond_backup = len(anchors) - len(covered)
    async with open_audit_log(scratch) as log:
        chain = await verify_audit_log(
            log, _CoveredAnchors(covered), expected_head=restored.audit_head
        )
    report.audit_entries = chain.entries
    report.anchors_checked = chain.anchors_checked
    if not chain.ok:
        report.error = f"the restored audit chain does not verify: {chain.reason}"
    return chain.ok


async def _restored_counts(scratch: TwinSettings) -> tuple[list[str], dict[str, int]]:
    """Patients with a data key in the scratch environment, and events per patient there."""
    counts: dict[str, int] = {}
    async with open_backup_stores(scratch) as stores:
        patients = await stores.snapshot.patient_ids()
        async for batch in stores.snapshot.export():
            if batch.table == "events":
                column = batch.columns.index("patient_id")
                for row in batch.rows:
                    counts[row[column]] = counts.get(row[column], 0) + 1
    return patients, counts


async def _compare_live(
    live: TwinSettings, restored: RestoreReport, patients: list[str], report: DrillReport
) -> None:
    """Live >= backup for every patient not erased; patients the live log has moved on for."""
    async with AsyncExitStack() as stack:
        stores = await open_stores(live, stack)
        live_patients = await stores.snapshot.patient_ids()
        erased = set(await erasure_ledger(live).erased())
        backed_up = restored.patient_last_seq
        for patient in sorted(set(patients) | set(live_patients)):
            if patient in erased:
                continue  # erased since: nothing of theirs is live, nor restored
            now = await stores.events.last_seq(patient)
            then = backed_up.get(patient, 0)
            report.live_behind_backup += now < then
            report.patients_changed_since_backup += now > then


def _sample(patients: list[str], size: int) -> list[str]:
    """Up to ``size`` patients spread evenly over the sorted list."""
    step = max(1, math.ceil(len(patients) / size))
    return patients[::step][:size]


async def _compare_twins(scratch: TwinSettings, patients: list[str], report: DrillReport) -> None:
    ports = await build_host_ports(scratch)
    try:
        for patient in patients:
            # A host per twin: only one twin's particles are held at a time.
            host = TwinHost(ports, settings=scratch.host)
            try:
                held = (await host.summary(patient)).model_dump()
                state = await host.state_bytes(patient)
                rebuilt = await rebuilt_from_log(ports, scratch.host, patient)
                differ = bool(differences(held, state, rebuilt))
            except errors.TwinError:
                differ = True  # a restored twin that cannot be read is a failed comparison
            report.twins_compared += 1
            report.twin_mismatches += differ
    finally:
        await ports.aclose()


async def _empty_scratch_database(scratch: TwinSettings, restored: RestoreReport) -> None:
    """Leave a scratch database as the drill found it: its documents, then the import, go."""
    async with open_backup_stores(scratch) as stores:
        while page := await stores.documents.scan(limit=500):
            for document in page:
                await stores.documents.delete(document.collection, document.doc_id)
        await stores.snapshot.undo_import(restored.tables)


def _snapshot_time(manifest: dict[str, Any], fallback: datetime) -> datetime:
    try:
        return datetime.fromisoformat(str(manifest["snapshot_at"]))
    except (KeyError, ValueError):
        return fallback  # an archive of an older backup: its start time (earlier: conservative)


async def dr_drill(
    settings: TwinSettings,
    *,
    root: str | None = None,
    scratch: Path | None = None,
    scratch_database_url: str | None = None,
    twins: int = 100,
    keep_scratch: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> DrillReport:
    """Restore the newest complete backup under the root into a scratch environment; check it.

    Args:
        settings: The live environment's settings.
        root: Another backup root than the setting ``backup_root``.
        scratch: The scratch ``data_dir`` (absent or empty; default a new temporary folder).
        scratch_database_url: An empty PostgreSQL database for a PostgreSQL source.
        twins: Restored twins compared with their rebuild (spread over the patients).
        keep_scratch: Keep the scratch folder and database afterwards.
        progress: Called with a line per step.

    Returns:
        The report (``ok`` false, and ``error`` set, when a check failed or a step stopped).

    Raises:
        ConfigurationError: No complete backup under the root, a PostgreSQL source without a
            scratch database (or with the live one), or a scratch folder that is not empty.
        StorageUnavailableError: The backup root cannot be reached.
    """
    started, clock = datetime.now(UTC), time.perf_counter()
    report = DrillReport()
    if scratch_database_url is not None and scratch_database_url == settings.database_url:
        raise errors.ConfigurationError("the scratch database must not be the live one")
    if settings.database_url and scratch_database_url is None:
        raise errors.ConfigurationError(
            "the live store is PostgreSQL, and a restore loads only into the same kind: name an "
            "empty scratch database with --scratch-database-url (it is emptied afterwards)"
        )
    archives = archive_root(settings, root)
    found = newest_complete(await archives.archives())
    if found is None:
        raise errors.ConfigurationError(f"no complete backup under {archives.where}")
    report.backup = found.name
    if scratch is not None and scratch.exists() and any(scratch.iterdir()):
        raise errors.ConfigurationError(f"scratch folder {scratch} is not empty")
    base = scratch if scratch is not None else Path(tempfile.mkdtemp(prefix="novamind-drill-"))
    restored: RestoreReport | None = None
    scratch_env: TwinSettings | None = None
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        data_dir = base / "data"
        data_dir.mkdir(mode=0o700)
        _link("keys", settings, data_dir)
        _link("secrets", settings, data_dir)
        progress(f"fetching {found.name} from {archives.where}")
        folder = await archives.fetch(found.name, base / "archive")
        try:
            manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            manifest = {}  # the restore names what is wrong with it
        report.backup_id = str(manifest["backup_id"]) if "backup_id" in manifest else None
        snapshot_at = _snapshot_time(manifest, found.at)
        report.backup_at = snapshot_at.isoformat()
        report.rpo_s = round((started - snapshot_at).total_seconds(), 3)
        if manifest.get("source") == "postgres" and scratch_database_url is None:
            raise errors.ConfigurationError(
                "this backup is of a PostgreSQL store: name an empty scratch database with "
                "--scratch-database-url"
            )
        scratch_env = scratch_settings(settings, data_dir, database_url=scratch_database_url)
        progress(f"restoring into {base}")
        try:
            restored = await restore(scratch_env, folder)
        except Exception as exc:  # reported, not raised: the drill's answer is "not ok"
            report.error = f"restore failed: {type(exc).__name__}: {exc}"
            return report
        report.erasures_reapplied = restored.erasures_reapplied
        report.erasures_failed = restored.erasures_failed
        progress("verifying the audit chain against the anchors")
        audit_ok = await _verify_audit(settings, scratch_env, restored, report)
        progress("comparing event counts with the archive and the live environment")
        patients, counts = await _restored_counts(scratch_env)
        report.restored_patients = len(patients)
        report.events = sum(counts.values())
        keyed = set(patients)
        report.event_count_mismatches = sum(
            counts.get(p, 0) != restored.patient_events.get(p, 0) for p in patients
        ) + sum(1 for p in counts if p not in keyed)  # events of a patient erased again
        await _compare_live(settings, restored, patients, report)
        progress("comparing restored twins with their rebuild from the log")
        with_events = [p for p in patients if counts.get(p, 0)]
        await _compare_twins(scratch_env, _sample(with_events, twins), report)
        report.rto_s = round(time.perf_counter() - clock, 3)
        report.ok = audit_ok and not (
            report.event_count_mismatches
            or report.live_behind_backup
            or report.twin_mismatches
            or report.erasures_failed
        )
        if not report.ok and report.error is None:
            report.error = "a check failed (see the counts)"
        return report
    finally:
        if keep_scratch:
            progress(f"scratch kept: {base}")
        else:
            if scratch_env is not None and restored is not None and scratch_database_url:
                try:
                    await _empty_scratch_database(scratch_env, restored)
                except Exception as exc:
                    report.ok = False
                    report.error = (
                        f"{report.error + '; ' if report.error else ''}the scratch database "
                        f"could not be emptied ({type(exc).__name__}); empty it by hand"
                    )
            shutil.rmtree(base, ignore_errors=True)
