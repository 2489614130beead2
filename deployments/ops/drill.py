"""``novamind dr-drill``: the newest scheduled backup restored into a scratch environment, checked.

The drill copies the newest complete archive under the backup root into its scratch folder
(:mod:`deployments.ops.archives`; from S3 it is downloaded), restores it there
(:func:`deployments.ops.backup.restore_into`, which verifies every part, loads all or nothing,
verifies the audit chain to the backed-up head and applies the erasure ledger) into a scratch
environment, then checks what was restored:

- the audit chain against the audit anchors (:func:`twin.audit_log.verify_audit_log`): every
  anchor the restored chain covers must hold; anchors newer than the backup lie beyond the
  restored chain's length and are counted (``anchors_beyond_backup``), not failed. The anchors
  of an old backup are old by nature: no anchoring policy (freshness) is applied;
- events per patient: the restored log's against the archive's (patients the erasure ledger
  names excepted: the restore erased them again), each patient's restored log without a gap
  in its sequence numbers (1..n: a gap is an acknowledged event lost before the backup), and
  the live environment's against the backup's: for every patient not erased, live >= backup
  (the log only grows); patients with events newer than the backup are what losing the live
  environment now would cost;
- twins: for a sample (or all), the restored twin (restored checkpoint + replay of the events
  after it) against a twin rebuilt from the restored log alone, state byte for byte
  (:mod:`twin.service.rebuild`). The comparison writes nothing: no checkpoint, index entry,
  change-feed message or prior-set assignment.

A drill never writes to the live environment. The scratch environment
(:func:`deployments.bootstrap.open_scratch_stores`) has a relational store, documents and
checkpoints of its own (SQLite in the scratch folder, or the scratch PostgreSQL database named
by ``--scratch-database-url``, which must be empty or a drill's: see
:mod:`storage.postgres.scratch`), no Redis, no tracing and no S3 bucket. What is never in a
backup is the live environment's and only read: the key provider (no key is ever created in
the live key folder), the erasure ledger (what the scratch environment erases begins and
completes there alone), the research key and the audit anchors (through a view that refuses
every write). The live store is read through a read-only, unmigrated connection. The scratch
eraser reaches the scratch stores alone: cohort result pages, never the live
``patients.parquet`` files the restored run documents name.

Nothing restored (PHI) outlives the drill, whatever stops it: afterwards the scratch folder is
removed and a scratch database emptied (``--keep-scratch`` keeps both), also after an error, a
Ctrl-C or a SIGTERM (a Job's deadline: while the drill runs, SIGTERM stops it and lets it clean
up; by default the signal would end the process at once and skip every cleanup).

Times: ``rto_s`` runs from the drill's start until the restored environment is verified (the
archive fetched, restored, its audit chain checked against the anchors); ``restore_s`` is the
restore and that verification; ``checks_s`` the checks after it. ``rpo_s`` is the drill's start
minus the backup's snapshot time (the manifest's ``snapshot_at``, or the archive's start
time). ``within_objectives`` holds both against the objectives given (RPO 1 h and RTO 4 h by
default).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployments.bootstrap import BackupStores, open_scratch_stores
from deployments.ops.archives import MANIFEST, archive_root, in_future, newest_complete
from deployments.ops.backup import RestoreReport, restore_into
from deployments.stores import (
    audit_anchor_store,
    erasure_ledger,
    open_log_reader,
    unusable_keks,
)
from storage.postgres import claim_scratch_database, clear_scratch_database
from twin import errors, ports
from twin.audit_log import verify_audit_log
from twin.domain.audit import AnchorScan, AuditAnchor
from twin.service.host import HostPorts, TwinHost
from twin.service.priors import DocumentPriorRegistry
from twin.service.rebuild import differences, rebuilt_from_log
from twin.settings import TwinSettings

__all__ = [
    "MAX_OBJECTIVE_S",
    "MAX_TWINS",
    "RPO_OBJECTIVE_S",
    "RTO_OBJECTIVE_S",
    "DrillReport",
    "dr_drill",
    "scratch_settings",
]

#: Default recovery point objective: at most an hour of acknowledged data lost (hourly backups).
RPO_OBJECTIVE_S = 3600.0
#: Default recovery time objective: the restored environment verified within four hours.
RTO_OBJECTIVE_S = 14400.0
#: Objectives are bounded: a year.
MAX_OBJECTIVE_S = 366 * 86400.0
#: Restored twins compared, at most.
MAX_TWINS = 1_000_000


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
        twin_mismatches: Those whose restored state differs from the rebuild.
        twins_unreadable: Those that could not be read or rebuilt, by error class (a data key
            that does not unwrap is not a mismatch: see ``unavailable_keks``).
        data_keys_under_unavailable_kek: Restored data keys wrapped under a KEK the live key
            provider cannot unwrap under now (retired, disabled, lost).
        unavailable_keks: Those KEKs: id -> restored data keys under it.
        event_count_mismatches: Patients whose restored event count differs from the archive's.
        event_log_gaps: Restored patients whose sequence numbers are not 1..n (a lost event).
        erasures_reapplied: Restored patients the erasure ledger names, erased again.
        rto_s: Drill start to the restored environment verified, s.
        rpo_s: Drill start minus the backup's snapshot time, s.
        restore_s: The restore and the audit verification, s.
        checks_s: The checks after them (event counts, live environment, twins), s.
        rto_objective_s: The recovery time objective held against, s.
        rpo_objective_s: The recovery point objective held against, s.
        within_objectives: ``rto_s`` and ``rpo_s`` are known and within the objectives.
        backup: The archive's name under the root.
        future_archives: Complete archives named in the future (a wrong clock's), ignored.
        live_behind_backup: Patients not erased whose live log is shorter than the backup's.
        patients_changed_since_backup: Live patients with events newer than the backup.
        erasures_failed: Unfinished erasures that failed again in the scratch environment.
        error: Why the drill stopped early or what failed (``None``: it ran through and passed).
        ok: Every check passed (the objectives are ``within_objectives``).
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
    twins_unreadable: dict[str, int] = field(default_factory=dict)
    data_keys_under_unavailable_kek: int = 0
    unavailable_keks: dict[str, int] = field(default_factory=dict)
    event_count_mismatches: int = 0
    event_log_gaps: int = 0
    erasures_reapplied: int = 0
    rto_s: float | None = None
    rpo_s: float | None = None
    restore_s: float | None = None
    checks_s: float | None = None
    rto_objective_s: float = RTO_OBJECTIVE_S
    rpo_objective_s: float = RPO_OBJECTIVE_S
    within_objectives: bool = False
    backup: str | None = None
    future_archives: int = 0
    live_behind_backup: int = 0
    patients_changed_since_backup: int = 0
    erasures_failed: int = 0
    error: str | None = None
    ok: bool = False

    def line(self) -> str:
        """The report as one line of JSON."""
        return json.dumps(asdict(self), separators=(", ", ": "))

    def fail(self, why: str) -> None:
        """Record a failure (after any recorded before it)."""
        self.ok = False
        self.error = f"{self.error}; {why}" if self.error else why


class _ReadOnlyAnchors:
    """The live :class:`twin.ports.AuditAnchorStore`, read; the drill never anchors."""

    def __init__(self, inner: ports.AuditAnchorStore) -> None:
        self._inner = inner

    async def put(self, anchor: AuditAnchor) -> None:
        raise errors.ConfigurationError("the drill never writes an audit anchor")

    async def all(self) -> list[AuditAnchor]:
        return await self._inner.all()

    async def scan(self, *, min_entries: int = 0) -> AnchorScan:
        return await self._inner.scan(min_entries=min_entries)


class _ReadOnlyCheckpoints:
    """The restored checkpoints, read; the comparison of twins stores none and deletes none."""

    def __init__(self, inner: ports.CheckpointStore) -> None:
        self._inner = inner

    async def put(self, checkpoint: ports.Checkpoint) -> bool:
        return False  # not stored: the restored checkpoints stay as restored

    async def latest(self, patient_id: str) -> ports.Checkpoint | None:
        return await self._inner.latest(patient_id)

    async def delete_all(self, patient_id: str) -> int:
        raise errors.ConfigurationError("the drill's comparison of twins deletes nothing")


class _Sigterm:
    """While the drill runs, SIGTERM cancels it, so that its cleanup runs.

    A Kubernetes Job's deadline or a pod's deletion sends SIGTERM, whose default action ends
    the process at once: every ``finally`` skipped, the scratch (PHI) left behind. Once the
    cleanup has begun, a SIGTERM no longer interrupts it (it is only noted).
    """

    def __init__(self) -> None:
        self.received = False
        self.cleaning = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Any = None

    def install(self) -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is None:
            return
        try:
            previous = signal.getsignal(signal.SIGTERM)
        except ValueError:
            return
        if getattr(previous, "__module__", None) == "asyncio.unix_events":
            # An event loop's own SIGTERM handler (add_signal_handler): no public call reads
            # it back, so it could not be restored afterwards. The host's handling applies.
            return
        try:
            loop.add_signal_handler(signal.SIGTERM, self._stop, task)
        except (ValueError, RuntimeError, NotImplementedError):
            return  # not the main thread: the caller's own signal handling applies
        self._loop, self._previous = loop, previous

    def _stop(self, task: asyncio.Task[Any]) -> None:
        first = not self.received
        self.received = True
        if first and not self.cleaning:
            task.cancel()

    def remove(self) -> None:
        if self._loop is None:
            return
        self._loop.remove_signal_handler(signal.SIGTERM)
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        self._loop = None


def scratch_settings(
    live: TwinSettings, data_dir: Path, *, database_url: str | None = None
) -> TwinSettings:
    """The live settings with every place written moved into ``data_dir`` (or the database).

    The relational store (``database_url``, else SQLite in ``data_dir``), checkpoints (local),
    documents (the relational store), the erasure ledger and audit anchors a scratch process
    would write (files in ``data_dir``) are the scratch environment's; Redis, the S3 bucket,
    MongoDB and tracing are off. The live key provider, erasure ledger and anchors are read by
    :func:`deployments.bootstrap.open_scratch_stores` and the drill, never through these
    settings.
    """
    return live.model_copy(
        update={
            "data_dir": data_dir,
            "database_url": database_url,
            "s3_bucket": None,
            "mongo_url": None,
            "redis_url": None,
            "otel_exporter_otlp_endpoint": None,
            "erasure_ledger": str(data_dir / "erased"),
            "audit_anchors": str(data_dir / "audit-anchors.jsonl"),
        }
    )


async def _verify_audit(
    live: TwinSettings, stores: BackupStores, restored: RestoreReport, report: DrillReport
) -> bool:
    """The restored chain against the live anchors it covers.

    ``covered_only``: anchors above the restored chain's length (newer than the backup) are
    counted, not taken for a truncation. No anchoring policy is applied: the anchors an old
    backup covers are old by nature, and how recently the live chain was anchored is
    ``novamind audit verify``'s question, not the backup's.
    """
    chain = await verify_audit_log(
        stores.audit,
        _ReadOnlyAnchors(audit_anchor_store(live)),
        expected_head=restored.audit_head,
        policy=None,
        covered_only=True,
    )
    report.audit_entries = chain.entries
    report.anchors_checked = chain.anchors_checked
    report.anchors_beyond_backup = chain.anchors_beyond
    if not chain.ok:
        report.fail(f"the restored audit chain does not verify: {chain.reason}")
    return chain.ok


@dataclass(slots=True)
class _Restored:
    """What the restored relational store holds (one pass over its export)."""

    patients: list[str]
    counts: dict[str, int]
    gaps: set[str]
    by_kek: dict[str, int]


async def _restored_counts(stores: BackupStores) -> _Restored:
    """What the restored store holds: patients, events and data keys per KEK id.

    Patients with a data key, events per patient, patients whose seqs are not 1..n, and data
    keys per KEK id (each key's row is read where the export passes it).
    """
    counts: dict[str, int] = {}
    last: dict[str, int] = {}
    by_kek: dict[str, int] = {}
    patients = await stores.snapshot.patient_ids()
    async for batch in stores.snapshot.export():
        if batch.table == "data_keys":
            kek = batch.columns.index("kek_id")
            for row in batch.rows:
                by_kek[str(row[kek])] = by_kek.get(str(row[kek]), 0) + 1
        elif batch.table == "events":
            patient, seq = batch.columns.index("patient_id"), batch.columns.index("seq")
            for row in batch.rows:
                counts[row[patient]] = counts.get(row[patient], 0) + 1
                last[row[patient]] = max(last.get(row[patient], 0), int(row[seq]))
    # Sequence numbers are 1, 2, ... per patient, and distinct: n events up to seq n.
    gaps = {p for p, n in counts.items() if last[p] != n}
    return _Restored(patients, counts, gaps, by_kek)


async def _check_keks(live: TwinSettings, by_kek: dict[str, int], report: DrillReport) -> None:
    """Restored data keys under a KEK the live key provider cannot use now: a failed drill.

    A backup older than a key rotation holds data keys wrapped under the KEK of its day; once
    that KEK is retired (local) or disabled (KMS), such a backup restores rows that no twin
    can be read from. Named here, rather than as twins that fail to compare.
    """
    unusable = await unusable_keks(live, sorted(by_kek))
    if not unusable:
        return
    report.unavailable_keks = {k: by_kek[k] for k in sorted(unusable)}
    report.data_keys_under_unavailable_kek = sum(report.unavailable_keks.values())
    named = ", ".join(f"{k[:128]} ({unusable[k]})" for k in sorted(unusable))
    report.fail(
        f"{report.data_keys_under_unavailable_kek} restored data key(s) are wrapped under a "
        f"key-encryption key the live key provider cannot use: {named}. To restore this "
        "backup, make that KEK usable again (docs/operations.md §7): move it from "
        "keys/retired/ back into the key folder, or re-enable the KMS key"
    )


async def _compare_live(
    live: TwinSettings, restored: RestoreReport, patients: list[str], report: DrillReport
) -> None:
    """Live >= backup for every patient not erased; patients the live log has moved on for."""
    erased = set(await erasure_ledger(live).erased())
    backed_up = restored.patient_last_seq
    async with open_log_reader(live) as (snapshot, events):
        live_patients = await snapshot.patient_ids()
        for patient in sorted(set(patients) | set(live_patients)):
            if patient in erased:
                continue  # erased since: nothing of theirs is live, nor restored
            now = await events.last_seq(patient)
            then = backed_up.get(patient, 0)
            report.live_behind_backup += now < then
            report.patients_changed_since_backup += now > then


def _sample(patients: list[str], size: int) -> list[str]:
    """Up to ``size`` patients spread evenly over the sorted list."""
    if not patients:
        return []
    step = max(1, math.ceil(len(patients) / size))
    return patients[::step][:size]


async def _compare_twins(
    scratch: TwinSettings, stores: BackupStores, patients: list[str], report: DrillReport
) -> None:
    # Read-only ports: no checkpoint is stored, no index entry or change-feed message written
    # and no prior set assigned, so the scratch store holds exactly what was restored.
    ports_ = HostPorts(
        stores.events,
        _ReadOnlyCheckpoints(stores.checkpoints),
        stores.sealer,
        priors=DocumentPriorRegistry(stores.documents, assign=False),
    )
    for patient in patients:
        # A host per twin: only one twin's particles are held at a time.
        host = TwinHost(ports_, settings=scratch.host)
        try:
            held = (await host.summary(patient)).model_dump()
            state = await host.state_bytes(patient)
            rebuilt = await rebuilt_from_log(ports_, scratch.host, patient)
        except errors.TwinError as exc:
            # Not a mismatch: nothing was compared (a key unavailable, a store down).
            name = type(exc).__name__
            report.twins_unreadable[name] = report.twins_unreadable.get(name, 0) + 1
            report.twins_compared += 1
            continue
        report.twins_compared += 1
        report.twin_mismatches += bool(differences(held, state, rebuilt))


def _snapshot_time(manifest: dict[str, Any], fallback: datetime) -> datetime:
    try:
        at = datetime.fromisoformat(str(manifest["snapshot_at"]))
    except (KeyError, ValueError):
        return fallback  # an archive of an older backup: its start time (earlier: conservative)
    # A time without a zone is not one this code wrote: the archive's start time instead.
    return at if at.tzinfo is not None else fallback


def _check_arguments(
    settings: TwinSettings,
    scratch: Path | None,
    scratch_database_url: str | None,
    twins: int,
    rpo_objective_s: float,
    rto_objective_s: float,
) -> None:
    if not 1 <= twins <= MAX_TWINS:
        raise errors.InvalidInputError(f"twins: 1 to {MAX_TWINS}")
    for name, value in (("rpo_objective_s", rpo_objective_s), ("rto_objective_s", rto_objective_s)):
        if not (math.isfinite(value) and 0 < value <= MAX_OBJECTIVE_S):
            raise errors.InvalidInputError(f"{name}: more than 0 and at most {MAX_OBJECTIVE_S:g}")
    if scratch_database_url is not None and scratch_database_url == settings.database_url:
        raise errors.ConfigurationError("the scratch database must not be the live one")
    if settings.database_url and scratch_database_url is None:
        raise errors.ConfigurationError(
            "the live store is PostgreSQL, and a restore loads only into the same kind: name an "
            "empty scratch database with --scratch-database-url (it is emptied afterwards)"
        )
    if scratch is not None and scratch.exists() and any(scratch.iterdir()):
        raise errors.ConfigurationError(f"scratch folder {scratch} is not empty")


async def dr_drill(
    settings: TwinSettings,
    *,
    root: str | None = None,
    scratch: Path | None = None,
    scratch_database_url: str | None = None,
    twins: int = 100,
    keep_scratch: bool = False,
    rpo_objective_s: float = RPO_OBJECTIVE_S,
    rto_objective_s: float = RTO_OBJECTIVE_S,
    progress: Callable[[str], None] = lambda _: None,
) -> DrillReport:
    """Restore the newest complete backup under the root into a scratch environment; check it.

    Args:
        settings: The live environment's settings.
        root: Another backup root than the setting ``backup_root``.
        scratch: The scratch folder (absent or empty; default a new temporary folder).
        scratch_database_url: For a PostgreSQL source: a database that is empty or a drill's
            (:mod:`storage.postgres.scratch`); it is left holding nothing but its marker.
        twins: Restored twins compared with their rebuild (spread over the patients), 1 to
            :data:`MAX_TWINS`.
        keep_scratch: Keep the scratch folder and database afterwards (they hold PHI).
        rpo_objective_s: The recovery point objective, s.
        rto_objective_s: The recovery time objective, s.
        progress: Called with a line per step.

    Returns:
        The report. Once the drill has started, every failure is in it (``ok`` false and
        ``error`` set: the error's class and message for a Novamind error, its class alone for
        any other), including a stop by SIGTERM.

    Raises:
        InvalidInputError: ``twins`` or an objective out of bounds.
        ConfigurationError: A PostgreSQL source without a scratch database (or with the live
            one), or a scratch folder that is not empty. Nothing was read or written.
    """
    _check_arguments(
        settings, scratch, scratch_database_url, twins, rpo_objective_s, rto_objective_s
    )
    started, clock = datetime.now(UTC), time.perf_counter()
    report = DrillReport(rto_objective_s=rto_objective_s, rpo_objective_s=rpo_objective_s)
    sigterm = _Sigterm()
    sigterm.install()
    base: Path | None = None
    claimed = False
    try:
        archives = archive_root(settings, root)
        found_all = await archives.archives()
        report.future_archives = len(
            [a for a in found_all if a.complete and a.name in in_future(found_all, now=started)]
        )
        found = newest_complete(found_all, now=started)
        if found is None:
            raise errors.ConfigurationError(f"no complete backup under {archives.where}")
        report.backup = found.name
        base = scratch if scratch is not None else Path(tempfile.mkdtemp(prefix="novamind-drill-"))
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        data_dir = base / "data"
        data_dir.mkdir(mode=0o700)
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
        if scratch_database_url is not None:
            await claim_scratch_database(scratch_database_url)  # before anything is migrated
            claimed = True
        scratch_env = scratch_settings(settings, data_dir, database_url=scratch_database_url)
        progress(f"restoring into {base}")
        async with open_scratch_stores(settings, scratch_env) as stores:
            began = time.perf_counter()
            try:
                restored = await restore_into(stores, folder)
            except Exception as exc:  # reported: the drill's answer is "not ok"
                report.fail(f"restore failed: {_describe(exc)}")
                return report
            report.erasures_reapplied = restored.erasures_reapplied
            report.erasures_failed = restored.erasures_failed
            progress("verifying the audit chain against the anchors")
            audit_ok = await _verify_audit(settings, stores, restored, report)
            report.restore_s = round(time.perf_counter() - began, 3)
            report.rto_s = round(time.perf_counter() - clock, 3)
            checking = time.perf_counter()
            progress("comparing event counts with the archive and the live environment")
            restored_rows = await _restored_counts(stores)
            patients, counts = restored_rows.patients, restored_rows.counts
            gaps = restored_rows.gaps
            report.restored_patients = len(patients)
            report.events = sum(counts.values())
            keyed = set(patients)
            report.event_count_mismatches = sum(
                counts.get(p, 0) != restored.patient_events.get(p, 0) for p in patients
            ) + sum(1 for p in counts if p not in keyed)  # events of a patient erased again
            report.event_log_gaps = len(gaps)
            await _compare_live(settings, restored, patients, report)
            await _check_keks(settings, restored_rows.by_kek, report)
            progress("comparing restored twins with their rebuild from the log")
            with_events = [p for p in patients if counts.get(p, 0)]
            await _compare_twins(scratch_env, stores, _sample(with_events, twins), report)
            report.checks_s = round(time.perf_counter() - checking, 3)
        report.ok = audit_ok and not (
            report.event_count_mismatches
            or report.event_log_gaps
            or report.live_behind_backup
            or report.twin_mismatches
            or report.twins_unreadable
            or report.data_keys_under_unavailable_kek
            or report.erasures_failed
        )
        if not report.ok and report.error is None:
            report.error = "a check failed (see the counts)"
        return report
    except asyncio.CancelledError:
        if not sigterm.received:
            raise  # Ctrl-C or the caller's cancellation: cleaned up below, then passed on
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        report.fail("stopped by SIGTERM")
        return report
    except Exception as exc:  # after the start, every failure is the report's
        report.fail(_describe(exc))
        return report
    finally:
        sigterm.cleaning = True
        try:
            await _clean_up(base, scratch_database_url if claimed else None, keep_scratch,
                            report, progress)  # fmt: skip
        finally:
            sigterm.remove()
            report.within_objectives = (
                report.rto_s is not None
                and report.rpo_s is not None
                and report.rto_s <= rto_objective_s
                and report.rpo_s <= rpo_objective_s
            )


def _describe(exc: BaseException) -> str:
    """A Novamind error's class and message; any other's class alone (it may carry data)."""
    if isinstance(exc, errors.TwinError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


async def _clean_up(
    base: Path | None,
    scratch_database_url: str | None,
    keep: bool,
    report: DrillReport,
    progress: Callable[[str], None],
) -> None:
    """Remove the scratch folder and empty the scratch database (unless kept)."""
    if keep:
        progress(f"scratch kept: {base} (it holds restored patient data)")
        return
    if scratch_database_url is not None:
        try:
            await clear_scratch_database(scratch_database_url)
        except Exception as exc:
            report.fail(
                f"the scratch database could not be emptied ({type(exc).__name__}); run the "
                "drill again with it, or drop its tables by hand"
            )
    if base is not None:
        # In this thread, to the end: nothing may interrupt the removal of restored data.
        shutil.rmtree(base, ignore_errors=True)
