"""``novamind backup`` and ``novamind restore``: an encrypted, consistent logical backup.

What a backup holds (one archive folder, see :mod:`storage.sealed.archive`):

- ``checkpoints``: the newest intact checkpoint of every patient with a data key, read
  *before* the database snapshot. A checkpoint is therefore never ahead of the backed-up event
  log, and a restored twin is exactly checkpoint + replay of the events after it.
- ``table-*``: the event log, wrapped data keys, registry, twin index and audit trail from one
  read snapshot of the relational store (a single transaction). The manifest's ``snapshot_at``
  is the UTC time just before that snapshot was taken: nothing committed after it is in the
  backup (what ``novamind dr-drill`` measures the RPO from).
- ``documents``: every document through the DocumentStore port (MongoDB or the relational table).

Everything in the archive is AES-256-GCM encrypted under a fresh key wrapped by the configured
key provider (KMS in production). Key-encryption keys are never in a backup: the environment
restored into must reach the same KEK (the KMS multi-Region replica in the DR region; the local
key folder's own escrow copy when embedded), otherwise nothing decrypts, by design.

A restore needs an empty environment (migrated, no data): it verifies the manifest seal and
every part's digest first, loads all tables in one transaction (all or nothing), puts documents
and checkpoints, then recomputes the audit chain and compares its head with the backup's.
Last, it erases again every patient the erasure ledger names (``ports.ErasureLedger``, kept
with the keys and never in a backup): a backup made before an erasure holds that patient's
wrapped data key, and must not bring them back.

A restore is all or nothing as a whole, not only its table import: when a step after the import
fails (a store refuses a document or a checkpoint, the restored audit chain does not verify,
the ledger cannot be applied), it removes the checkpoints and documents it put and undoes the
import (``DatabaseSnapshot.undo_import``), then raises the error. The environment is empty
again, so the same restore can be run once the cause is fixed; a half-restored environment
would refuse it (not empty) while serving an incomplete copy.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployments.bootstrap import BackupStores, open_backup_stores
from storage.sealed import ArchiveReader, ArchiveWriter
from twin import audit_log, errors, ports
from twin.domain.audit import GENESIS
from twin.service.erasure_ledger import apply_erasure_ledger
from twin.settings import TwinSettings

__all__ = ["BackupReport", "RestoreReport", "backup", "restore", "restore_into"]

_CHECKPOINTS = "checkpoints"
_DOCUMENTS = "documents"
_TABLE = "table-"
_CHECKPOINT_COLUMNS = ("patient_id", "seq", "model_version", "data")
_DOCUMENT_COLUMNS = ("collection", "doc_id", "patient_id", "body", "created_at")


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What a backup wrote.

    Attributes:
        directory: The archive folder.
        backup_id: The archive's id.
        tables: Rows per table.
        documents: Documents written.
        checkpoints: Checkpoints written.
        checkpoints_unreadable: Checkpoints left out because they failed their integrity check
            (their twins are rebuilt by replaying the log).
        audit_entries: Audit entries in the backup (the chain's last ``seq``).
        audit_head: Hash of the last audit entry.
        bytes: Size of the archive, bytes.
        seconds: Wall time, s.
    """

    directory: Path
    backup_id: str
    tables: dict[str, int]
    documents: int
    checkpoints: int
    checkpoints_unreadable: int
    audit_entries: int
    audit_head: str
    bytes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What a restore loaded and verified.

    Attributes:
        backup_id: The archive restored.
        tables: Rows per table.
        documents: Documents put.
        checkpoints: Checkpoints put.
        checkpoints_skipped: Checkpoints of patients erased before the snapshot (not restored).
        audit_entries: Entries in the verified audit chain.
        audit_head: Its head hash (equal to the backup's).
        seconds: Wall time from opening the archive to the erasure ledger applied, s.
        erasures_reapplied: Restored patients the erasure ledger names, erased again.
        erasures_failed: Erasures that stopped half-way and failed again (still incomplete:
            the service's next start, or ``novamind erasures apply``, retries them).
        patient_events: Events per patient in the archive (before the erasure ledger).
        patient_last_seq: Each patient's last event ``seq`` in the archive.
    """

    backup_id: str
    tables: dict[str, int]
    documents: int
    checkpoints: int
    checkpoints_skipped: int
    audit_entries: int
    audit_head: str
    seconds: float
    erasures_reapplied: int = 0
    erasures_failed: int = 0
    patient_events: dict[str, int] = field(default_factory=dict)
    patient_last_seq: dict[str, int] = field(default_factory=dict)


async def _write_checkpoints(stores: BackupStores, archive: ArchiveWriter) -> tuple[int, int]:
    part = archive.part(_CHECKPOINTS, _CHECKPOINT_COLUMNS)
    unreadable = 0
    for patient_id in await stores.snapshot.patient_ids():
        try:
            checkpoint = await stores.checkpoints.latest(patient_id)
        except errors.CheckpointCorruptError:
            unreadable += 1  # derived data: the twin is rebuilt from the log on restore
            continue
        if checkpoint is not None:
            part.write(
                [(checkpoint.patient_id, checkpoint.seq, checkpoint.model_version, checkpoint.data)]
            )
    return part.rows, unreadable


async def _write_documents(stores: BackupStores, archive: ArchiveWriter) -> int:
    part = archive.part(_DOCUMENTS, _DOCUMENT_COLUMNS)
    after: tuple[str, str] | None = None
    while page := await stores.documents.scan(after=after, limit=500):
        part.write([(d.collection, d.doc_id, d.patient_id, d.body, d.created_at) for d in page])
        after = (page[-1].collection, page[-1].doc_id)
    return part.rows


async def backup(settings: TwinSettings, directory: Path) -> BackupReport:
    """Write an encrypted, consistent backup of the configured environment to ``directory``.

    Raises:
        ConfigurationError: ``directory`` exists and is not empty.
        StorageUnavailableError: A store cannot be reached (nothing is left behind).
    """
    started = time.perf_counter()
    async with open_backup_stores(settings) as stores:
        archive = await ArchiveWriter.create(directory, stores.keys, source=stores.snapshot.kind)
        try:
            checkpoints, unreadable = await _write_checkpoints(stores, archive)
            tables: dict[str, int] = {}
            head: dict[str, Any] = {"seq": 0, "hash": GENESIS}
            writers: dict[str, Any] = {}
            # Before the export's transaction begins: its snapshot is this instant or later.
            snapshot_at = datetime.now(UTC).isoformat()
            async for batch in stores.snapshot.export():
                if batch.table not in writers:
                    writers[batch.table] = archive.part(_TABLE + batch.table, batch.columns)
                writers[batch.table].write(batch.rows)
                tables[batch.table] = tables.get(batch.table, 0) + len(batch.rows)
                if batch.table == "audit_log":
                    head = dict(zip(batch.columns, batch.rows[-1], strict=True))
            documents = await _write_documents(stores, archive)
            archive.finish(
                tables=tables,
                documents=documents,
                checkpoints=checkpoints,
                audit={"entries": int(head["seq"]), "head_hash": str(head["hash"])},
                snapshot_at=snapshot_at,
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)  # never leave a half-written archive
            raise
    size = sum(p.stat().st_size for p in directory.iterdir())
    return BackupReport(
        directory=directory,
        backup_id=archive.backup_id,
        tables=tables,
        documents=documents,
        checkpoints=checkpoints,
        checkpoints_unreadable=unreadable,
        audit_entries=int(head["seq"]),
        audit_head=str(head["hash"]),
        bytes=size,
        seconds=time.perf_counter() - started,
    )


async def _table_batches(
    reader: ArchiveReader, last_seq: dict[str, int], counts: dict[str, int]
) -> AsyncIterator[ports.TableRows]:
    """The archived tables as batches; records each patient's last event ``seq`` and count."""
    for name, entry in reader.parts.items():
        if not name.startswith(_TABLE):
            continue
        table, columns = name[len(_TABLE) :], tuple(entry["columns"])
        for rows in reader.batches(name):
            if table == "events":
                patient, seq = columns.index("patient_id"), columns.index("seq")
                for row in rows:
                    last_seq[row[patient]] = max(last_seq.get(row[patient], 0), int(row[seq]))
                    counts[row[patient]] = counts.get(row[patient], 0) + 1
            yield ports.TableRows(table, columns, rows)


@dataclass
class _Loaded:
    """What a restore has written so far: what undoing it removes.

    Attributes:
        tables: Rows per table of the committed import (``None``: nothing imported).
        documents: ``(collection, doc_id)`` of each document put or being put.
        checkpoints: Patients whose checkpoint was put or is being put.
    """

    tables: dict[str, int] | None = None
    documents: list[tuple[str, str]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)


async def _undo(stores: BackupStores, loaded: _Loaded) -> list[str]:
    """Remove what the restore wrote, derived data first; returns what is left (none: empty).

    A store that fails once is not tried again for the rest (it would fail each item after its
    own timeout); what it holds is reported instead.
    """
    left: list[str] = []
    try:
        for patient_id in loaded.checkpoints:
            await stores.checkpoints.delete_all(patient_id)
    except Exception as exc:
        left.append(f"checkpoints ({type(exc).__name__}: {exc})")
    try:
        for collection, doc_id in loaded.documents:
            await stores.documents.delete(collection, doc_id)
    except Exception as exc:
        left.append(f"documents ({type(exc).__name__}: {exc})")
    if loaded.tables is not None:
        try:
            await stores.snapshot.undo_import(loaded.tables)
        except Exception as exc:
            left.append(f"tables ({type(exc).__name__}: {exc})")
    return left


async def _check_no_checkpoints(stores: BackupStores, reader: ArchiveReader) -> None:
    for rows in reader.batches(_CHECKPOINTS):
        for patient_id, *_ in rows:
            if await stores.checkpoints.latest(patient_id) is not None:
                raise errors.ConfigurationError(
                    "restore needs an empty environment; the checkpoint store holds data"
                )


async def _check_no_documents(stores: BackupStores) -> None:
    if await stores.documents.scan(limit=1):
        raise errors.ConfigurationError(
            "restore needs an empty environment; the document store holds data"
        )


async def _restore_checkpoints(
    stores: BackupStores, reader: ArchiveReader, last_seq: dict[str, int], loaded: _Loaded
) -> tuple[int, int]:
    keyed = set(await stores.snapshot.patient_ids())
    restored = skipped = 0
    for rows in reader.batches(_CHECKPOINTS):
        for patient_id, seq, model_version, data in rows:
            if patient_id not in keyed:
                skipped += 1  # erased between the checkpoint read and the snapshot
                continue
            if seq > last_seq.get(patient_id, 0):
                raise errors.BackupCorruptError(
                    f"a checkpoint at seq {seq} is ahead of its restored event log"
                )
            loaded.checkpoints.append(patient_id)  # before the put: a failed put may leave one
            await stores.checkpoints.put(ports.Checkpoint(patient_id, seq, model_version, data))
            restored += 1
    return restored, skipped


async def _restore_documents(stores: BackupStores, reader: ArchiveReader, loaded: _Loaded) -> int:
    count = 0
    for rows in reader.batches(_DOCUMENTS):
        for collection, doc_id, patient_id, body, created_at in rows:
            loaded.documents.append((collection, doc_id))
            await stores.documents.put(
                ports.Document(collection, doc_id, patient_id, body, created_at)
            )
            count += 1
    return count


async def restore(settings: TwinSettings, directory: Path) -> RestoreReport:
    """Restore the backup in ``directory`` into the configured (empty) environment.

    See :func:`restore_into` (on the stores the settings name).
    """
    async with open_backup_stores(settings) as stores:
        return await restore_into(stores, directory)


async def restore_into(stores: BackupStores, directory: Path) -> RestoreReport:
    """Restore the backup in ``directory`` into ``stores`` (empty).

    Whatever fails after the table import is undone before the error is raised: the
    environment is empty again (a note on the error says so, or names what could not be
    removed, when a store is unreachable for the undo too).

    Raises:
        BackupCorruptError: The archive fails an integrity check, or the restored audit chain
            does not verify to the backed-up head.
        KeyAccessError: This environment cannot unwrap the archive key (other KEK).
        ConfigurationError: The environment is not empty, or is another kind of store.
        StorageUnavailableError: A store cannot be reached.
    """
    started = time.perf_counter()
    reader = await ArchiveReader.open(directory, stores.keys)
    manifest = reader.manifest
    if manifest["source"] != stores.snapshot.kind:
        raise errors.ConfigurationError(
            f"this backup is of a {manifest['source']} store; the target is {stores.snapshot.kind}"
        )
    reader.verify_digests()
    if not await stores.snapshot.is_empty():
        raise errors.ConfigurationError("restore needs an empty environment; it holds data")
    # The ledger must be reachable before anything is loaded: a restore that could not
    # apply it would leave revived patients live in an environment it cannot restore again.
    await stores.erasures.erased()
    await _check_no_checkpoints(stores, reader)
    await _check_no_documents(stores)
    last_seq: dict[str, int] = {}
    counts: dict[str, int] = {}
    loaded = _Loaded()
    try:
        tables = await stores.snapshot.import_all(_table_batches(reader, last_seq, counts))
        loaded.tables = tables
        expected = {name: int(rows) for name, rows in manifest["tables"].items()}
        if {t: n for t, n in tables.items() if n} != expected:
            raise errors.BackupCorruptError(f"restored rows {tables} differ from {expected}")
        documents = await _restore_documents(stores, reader, loaded)
        checkpoints, skipped = await _restore_checkpoints(stores, reader, last_seq, loaded)
        audit = manifest["audit"]
        report = await audit_log.verify_audit_log(
            stores.audit, None, expected_head=str(audit["head_hash"])
        )
        if not report.ok or report.entries != int(audit["entries"]):
            raise errors.BackupCorruptError(
                f"the restored audit chain does not verify: {report.reason or report.entries}"
            )
        applied = await apply_erasure_ledger(
            stores.erasures, stores.snapshot, stores.index, stores.eraser
        )
    except BaseException as exc:  # also an interrupted restore: nothing half-restored stays
        left = await _undo(stores, loaded)
        exc.add_note(
            "the restore was undone: this environment is empty again"
            if not left
            else "the restore could not be undone; still holding what it loaded: "
            + "; ".join(left)
            + ". Empty these stores before restoring again."
        )
        raise
    return RestoreReport(
        backup_id=str(manifest["backup_id"]),
        tables=tables,
        documents=documents,
        checkpoints=checkpoints,
        checkpoints_skipped=skipped,
        audit_entries=report.entries,
        audit_head=report.head_hash,
        seconds=time.perf_counter() - started,
        erasures_reapplied=applied.revived,
        erasures_failed=len(applied.failed),
        patient_events=counts,
        patient_last_seq=last_seq,
    )
