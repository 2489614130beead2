"""The stores the settings name, opened for what each entry point needs.

The only place adapters are chosen from settings:

- EventStore, DataKeyStore, TwinIndex, PatientRegistry, AuditLog, DocumentStore:
  ``database_url`` → PostgreSQL; else a SQLite file in ``data_dir``. Documents go to MongoDB
  when ``mongo_url`` is set.
- CheckpointStore: ``s3_bucket`` → S3 with SSE-KMS; else ``data_dir/checkpoints``.
- KeyProvider: ``kms_key_id`` → AWS KMS; else the key file in ``data_dir/keys``.
- The erasure ledger: ``erasure_ledger`` or the S3 bucket; else ``data_dir/keys/erased``.
- The audit anchors: ``audit_anchors`` as ``s3://bucket/prefix`` → S3 Object Lock
  (COMPLIANCE); else an append-only file (default ``data_dir/keys/audit-anchors.jsonl``).
- The research key: configured, or (local only) generated into ``data_dir/secrets``.

When the process traces, every store handed out here is wrapped at its port
(:func:`deployments.telemetry.traced`): one span per call, whatever the adapter.

Each opener opens what its caller uses (the audit trail alone for ``novamind audit verify``, the
document store for a job's status, the event writer for bulk ingest); the services built on the
stores are composed in :mod:`deployments.bootstrap`. Settings outside ``local`` must name the
production stores (``TwinSettings`` refuses otherwise).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployments.telemetry import traced
from storage.kms import KmsKeyProvider
from storage.local import (
    LocalAuditAnchorStore,
    LocalCheckpointStore,
    LocalErasureLedger,
    LocalKeyProvider,
    local_secret,
    read_local_secret,
)
from storage.postgres import (
    PostgresAuditLog,
    PostgresDatabase,
    PostgresDataKeyStore,
    PostgresDocumentStore,
    PostgresEventStore,
    PostgresPatientRegistry,
    PostgresSnapshot,
    PostgresTwinIndex,
)
from storage.s3 import S3AuditAnchorStore, S3CheckpointStore, S3ErasureLedger
from storage.sealed import EnvelopeSealer
from storage.sqlite import (
    SqliteAuditLog,
    SqliteDatabase,
    SqliteDataKeyStore,
    SqliteDocumentStore,
    SqliteEventStore,
    SqlitePatientRegistry,
    SqliteSnapshot,
    SqliteTwinIndex,
)
from twin import errors, ports
from twin.audit_log import AnchoringAuditLog
from twin.domain.audit import AnchoringPolicy
from twin.domain.deidentify import Deidentifier
from twin.service.priors import DocumentPriorRegistry
from twin.settings import TwinSettings

__all__ = [
    "MAX_SOURCE_ENTRIES",
    "CohortStores",
    "KeyStores",
    "Stores",
    "anchoring_policy",
    "audit_anchor_store",
    "check_sources",
    "checkpoint_store",
    "erasure_ledger",
    "erasure_ledger_location",
    "ingest_root",
    "key_provider",
    "migrate",
    "open_audit_log",
    "open_audit_reader",
    "open_cohort_stores",
    "open_database",
    "open_documents",
    "open_event_writer",
    "open_key_stores",
    "open_log_reader",
    "open_stores",
    "open_twin_reader",
    "research_key",
    "research_key_if_any",
    "unusable_keks",
]


def aws_client(settings: TwinSettings, service: str) -> Any:
    """A boto3 client of ``service`` in the configured region (and endpoint, in tests)."""
    import boto3  # only when AWS stores are configured

    return boto3.client(
        service, region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url
    )


def s3_location(where: str, default_prefix: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of an ``s3://bucket/prefix`` location (``default_prefix`` if none)."""
    bucket, _, prefix = where.removeprefix("s3://").partition("/")
    return bucket, prefix or default_prefix


@dataclass(frozen=True, slots=True)
class Stores:
    """The relational stores (and documents) behind one envelope sealer."""

    keys: ports.KeyProvider
    sealer: ports.Sealer
    events: ports.EventStore
    index: ports.TwinIndex
    registry: ports.PatientRegistry
    audit: ports.AuditLog
    documents: ports.DocumentStore
    snapshot: ports.DatabaseSnapshot


def key_provider(settings: TwinSettings, *, create: bool = True) -> ports.KeyProvider:
    """The key provider: AWS KMS (``kms_key_id``), else the key files in ``data_dir/keys``.

    Args:
        settings: The settings.
        create: Whether a local key folder and its first KEK may be created when missing
            (``False``: another environment's keys, only read).
    """
    keys: ports.KeyProvider
    if settings.kms_key_id:
        keys = KmsKeyProvider(aws_client(settings, "kms"), settings.kms_key_id)
    else:
        keys = LocalKeyProvider(settings.data_dir / "keys", create=create)
    return traced(keys, ports.KeyProvider, "keys")


async def unusable_keks(settings: TwinSettings, kek_ids: list[str]) -> dict[str, str]:
    """Which of ``kek_ids`` the settings' key provider cannot unwrap under now, and why.

    Local: a KEK is usable when its file is in the live key folder, whole (not in ``retired/``,
    not damaged, not lost). KMS: when ``DescribeKey`` says the key is ``Enabled``. Only read:
    no key is created, enabled or moved.

    Returns:
        KEK id -> why it is unusable (``"in retired/"``, ``"damaged"``, ``"not in the key
        folder"``, or the KMS key state).

    Raises:
        StorageUnavailableError: KMS cannot be reached.
    """
    if settings.kms_key_id:
        kms = KmsKeyProvider(aws_client(settings, "kms"), settings.kms_key_id)
        found: dict[str, str] = {}
        for kek_id in kek_ids:
            try:
                state = await kms.key_state(kek_id)
            except errors.KeyUnavailableError as exc:
                found[kek_id] = str(exc)
                continue
            if state != "Enabled":
                found[kek_id] = f"KMS key state {state}" if state else "no such KMS key"
        return found
    try:
        folder = await LocalKeyProvider(settings.data_dir / "keys", create=False).folder()
    except errors.KeyUnavailableError:
        return dict.fromkeys(kek_ids, "not in the key folder")
    usable = set(folder.live) - set(folder.damaged)
    why = dict.fromkeys(folder.retired, "in retired/") | dict.fromkeys(folder.damaged, "damaged")
    return {k: why.get(k, "not in the key folder") for k in kek_ids if k not in usable}


def erasure_ledger_location(settings: TwinSettings) -> str:
    """Where the settings' erasure ledger is: ``s3://bucket/prefix`` or an absolute folder."""
    if settings.erasure_ledger is not None:
        where = settings.erasure_ledger
        return where if where.startswith("s3://") else str(Path(where).resolve())
    if settings.s3_bucket:
        # One ledger per environment, even where environments share a bucket.
        return f"s3://{settings.s3_bucket}/erasure-ledger/{settings.environment}"
    return str((settings.data_dir / "keys" / "erased").resolve())


def erasure_ledger(settings: TwinSettings) -> ports.ErasureLedger:
    """The erasure ledger: kept with the keys, never in a backup (docs/operations.md)."""
    where = erasure_ledger_location(settings)
    ledger: ports.ErasureLedger
    if where.startswith("s3://"):
        bucket, prefix = s3_location(where, "erasure-ledger")
        ledger = S3ErasureLedger(
            aws_client(settings, "s3"), bucket, prefix=prefix,
            kms_key_id=settings.s3_kms_key_id,
        )  # fmt: skip
    else:
        ledger = LocalErasureLedger(Path(where))
    return traced(ledger, ports.ErasureLedger, "erasure_ledger")


def anchoring_policy(settings: TwinSettings) -> AnchoringPolicy:
    """How recently the audit chain must have been anchored: a failure outside local use."""
    return AnchoringPolicy(
        every_entries=settings.audit_anchor_every_entries,
        interval_s=settings.audit_anchor_interval_s,
        strict=settings.environment != "local",
    )


def audit_anchor_store(settings: TwinSettings) -> ports.AuditAnchorStore:
    """Where heads of the audit chain are anchored (``audit_anchors``; docs/operations.md §7)."""
    where = settings.audit_anchors
    store: ports.AuditAnchorStore
    if where is not None and where.startswith("s3://"):
        bucket, prefix = s3_location(where, "audit-anchors")
        store = S3AuditAnchorStore(
            aws_client(settings, "s3"), bucket, prefix=prefix,
            retention_days=settings.audit_anchor_retention_days,
        )  # fmt: skip
    else:
        path = Path(where) if where else settings.data_dir / "keys" / "audit-anchors.jsonl"
        store = LocalAuditAnchorStore(path)
    return traced(store, ports.AuditAnchorStore, "audit_anchors")


def checkpoint_store(settings: TwinSettings) -> ports.CheckpointStore:
    """Sealed twin checkpoints: S3 with SSE-KMS when a bucket is named, else ``data_dir``."""
    store: ports.CheckpointStore
    if settings.s3_bucket:
        store = S3CheckpointStore(
            aws_client(settings, "s3"),
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            kms_key_id=settings.s3_kms_key_id,
        )
    else:
        store = LocalCheckpointStore(settings.data_dir / "checkpoints")
    return traced(store, ports.CheckpointStore, "checkpoints")


async def open_stores(
    settings: TwinSettings, stack: AsyncExitStack, *, keys: ports.KeyProvider | None = None
) -> Stores:
    """The relational stores (and documents) behind one envelope sealer (no I/O but opening).

    Args:
        settings: The settings.
        stack: Closes what is opened.
        keys: Another key provider than the settings' (a drill's scratch environment reads
            the live environment's keys and never creates one).
    """
    keys = keys if keys is not None else key_provider(settings)
    db = await open_database(settings, stack)
    if isinstance(db, PostgresDatabase):
        sealer = EnvelopeSealer(keys, PostgresDataKeyStore(db))
        stores = Stores(
            keys,
            sealer,
            PostgresEventStore(db, sealer),
            PostgresTwinIndex(db),
            PostgresPatientRegistry(db, sealer),
            PostgresAuditLog(db),
            PostgresDocumentStore(db),
            PostgresSnapshot(db),
        )
    else:
        sealer = EnvelopeSealer(keys, SqliteDataKeyStore(db))
        stores = Stores(
            keys,
            sealer,
            SqliteEventStore(db, sealer),
            SqliteTwinIndex(db),
            SqlitePatientRegistry(db, sealer),
            SqliteAuditLog(db),
            SqliteDocumentStore(db),
            SqliteSnapshot(db),
        )
    documents = stores.documents
    if settings.mongo_url:
        documents = await _mongo_documents(settings.mongo_url, stack)
    # The adapters keep the plain sealer: an append seals each event, one span per batch is
    # enough.
    return Stores(
        keys,
        traced(stores.sealer, ports.Sealer, "sealer"),
        traced(stores.events, ports.EventStore, "event_store"),
        traced(stores.index, ports.TwinIndex, "twin_index"),
        traced(stores.registry, ports.PatientRegistry, "registry"),
        traced(stores.audit, ports.AuditLog, "audit_log"),
        traced(documents, ports.DocumentStore, "documents"),
        stores.snapshot,  # backups and restores: whole-database work, not a request's path
    )


async def _mongo_documents(url: str, stack: AsyncExitStack) -> ports.DocumentStore:
    from pymongo import AsyncMongoClient  # only when MongoDB is configured

    from storage.mongo import MongoDocumentStore

    client: Any = AsyncMongoClient(url, serverSelectionTimeoutMS=3000)
    stack.push_async_callback(client.close)
    mongo = MongoDocumentStore(client.get_default_database("novamind"))
    await mongo.ensure_indexes()
    return mongo


async def open_database(
    settings: TwinSettings, stack: AsyncExitStack, *, read_only: bool = False
) -> PostgresDatabase | SqliteDatabase:
    """The relational store (migrated on open): PostgreSQL when configured, else SQLite.

    Args:
        settings: The settings.
        stack: Closes what is opened.
        read_only: Neither migrate nor write (sessions refuse writes; a SQLite file is not
            created): another environment's store, read by a disaster-recovery drill.
    """
    if settings.database_url:
        pg = await PostgresDatabase.open(settings.database_url, read_only=read_only)
        stack.push_async_callback(pg.close)
        return pg
    db = await SqliteDatabase.open(settings.data_dir / "novamind.db", read_only=read_only)
    stack.push_async_callback(db.close)
    return db


class _NoKeys:
    """A :class:`twin.ports.KeyProvider` for readers that never need a key (no key is read)."""

    async def wrap(self, data_key: bytes, *, context: str) -> ports.WrappedKey:
        raise errors.ConfigurationError("this reader neither wraps nor unwraps keys")

    async def unwrap(self, wrapped: ports.WrappedKey, *, context: str) -> bytes:
        raise errors.ConfigurationError("this reader neither wraps nor unwraps keys")

    async def current_kek_id(self) -> str:
        raise errors.ConfigurationError("this reader neither wraps nor unwraps keys")


@asynccontextmanager
async def open_log_reader(
    settings: TwinSettings,
) -> AsyncIterator[tuple[ports.DatabaseSnapshot, ports.EventStore]]:
    """The relational store read-only, never migrated: who has a data key, and log heads.

    For a disaster-recovery drill's look at the live environment: nothing is written there
    (the sessions refuse writes), no schema is changed, no key is read (sealed payloads
    cannot be opened through it) and no document store is opened.
    """
    async with AsyncExitStack() as stack:
        db = await open_database(settings, stack, read_only=True)
        if isinstance(db, PostgresDatabase):
            sealer = EnvelopeSealer(_NoKeys(), PostgresDataKeyStore(db))
            yield PostgresSnapshot(db), PostgresEventStore(db, sealer)
        else:
            sealer = EnvelopeSealer(_NoKeys(), SqliteDataKeyStore(db))
            yield SqliteSnapshot(db), SqliteEventStore(db, sealer)


@asynccontextmanager
async def open_audit_reader(settings: TwinSettings) -> AsyncIterator[ports.AuditLog]:
    """The audit trail read-only, never migrated (``novamind audit verify`` / ``anchor``).

    Both only read the chain (an anchor goes to the anchor store): a scheduled check must
    never change the schema of the database it checks (the anchor CronJob would otherwise
    migrate production every 15 minutes, possibly before the release that expects the new
    schema has rolled out). Sessions refuse writes; a missing SQLite file is an error, not
    created.
    """
    async with AsyncExitStack() as stack:
        db = await open_database(settings, stack, read_only=True)
        yield PostgresAuditLog(db) if isinstance(db, PostgresDatabase) else SqliteAuditLog(db)


@asynccontextmanager
async def open_audit_log(
    settings: TwinSettings, *, on_failure: Callable[[BaseException], None] | None = None
) -> AsyncIterator[AnchoringAuditLog]:
    """The audit trail alone, to append to (jobs' audit entries; no keys needed).

    Appends through it anchor the head each time the chain passes another
    ``audit_anchor_every_entries``; the anchor in flight is given up to 10 s on exit.

    Args:
        settings: Where the database and the anchors are.
        on_failure: Told of each background anchor that failed (a job's metric).
    """
    async with AsyncExitStack() as stack:
        db = await open_database(settings, stack)
        log = PostgresAuditLog(db) if isinstance(db, PostgresDatabase) else SqliteAuditLog(db)
        anchoring = AnchoringAuditLog(
            log,
            audit_anchor_store(settings),
            every=settings.audit_anchor_every_entries,
            on_failure=on_failure,
        )
        stack.push_async_callback(anchoring.aclose)
        yield anchoring


@dataclass(frozen=True, slots=True)
class KeyStores:
    """The key provider and the wrapped data keys (``novamind keys``).

    Attributes:
        keys: The key provider the settings name.
        local: The same provider when it is the local key folder (KEKs created and retired
            there); ``None`` under KMS.
        data_keys: The wrapped per-patient data keys.
    """

    keys: ports.KeyProvider
    local: LocalKeyProvider | None
    data_keys: ports.DataKeyStore


@asynccontextmanager
async def open_key_stores(settings: TwinSettings) -> AsyncIterator[KeyStores]:
    """The key provider and the data-key store alone (``novamind keys``).

    The local key folder is opened without creating key material: a missing or empty folder is
    an error there (:class:`storage.local.LocalKeyProvider`, ``create=False``).
    """
    async with AsyncExitStack() as stack:
        db = await open_database(settings, stack)
        data_keys: ports.DataKeyStore = (
            PostgresDataKeyStore(db) if isinstance(db, PostgresDatabase) else SqliteDataKeyStore(db)
        )
        if settings.kms_key_id:
            yield KeyStores(
                KmsKeyProvider(aws_client(settings, "kms"), settings.kms_key_id), None, data_keys
            )
        else:
            local = LocalKeyProvider(settings.data_dir / "keys", create=False)
            yield KeyStores(local, local, data_keys)


@asynccontextmanager
async def open_event_writer(
    settings: TwinSettings,
) -> AsyncIterator[tuple[ports.EventStore, ports.PatientRegistry]]:
    """The event store and the registry (bulk ingest: appends for registered patients)."""
    async with AsyncExitStack() as stack:
        stores = await open_stores(settings, stack)
        yield stores.events, stores.registry


@asynccontextmanager
async def open_documents(settings: TwinSettings) -> AsyncIterator[ports.DocumentStore]:
    """The document store alone (job status documents)."""
    async with AsyncExitStack() as stack:
        yield (await open_stores(settings, stack)).documents


@asynccontextmanager
async def open_twin_reader(
    settings: TwinSettings,
) -> AsyncIterator[
    tuple[ports.EventStore, ports.CheckpointStore, ports.Sealer, ports.PriorRegistry]
]:
    """Log, checkpoints, sealer and prior sets: enough to rebuild twins (batch jobs; no writes)."""
    async with AsyncExitStack() as stack:
        stores = await open_stores(settings, stack)
        priors = DocumentPriorRegistry(stores.documents)
        yield stores.events, checkpoint_store(settings), stores.sealer, priors


@dataclass(frozen=True, slots=True)
class CohortStores:
    """What a batch job's driver uses to select twins: index, registry, pseudonyms, documents."""

    index: ports.TwinIndex
    registry: ports.PatientRegistry
    deidentifier: Deidentifier
    documents: ports.DocumentStore


@asynccontextmanager
async def open_cohort_stores(settings: TwinSettings) -> AsyncIterator[CohortStores]:
    """The stores a cohort run's driver needs."""
    async with AsyncExitStack() as stack:
        stores = await open_stores(settings, stack)
        yield CohortStores(
            stores.index, stores.registry, Deidentifier(research_key(settings)), stores.documents
        )


async def migrate(settings: TwinSettings) -> str:
    """Apply the schema migrations (opening the store does); returns where."""
    async with AsyncExitStack() as stack:
        db = await open_database(settings, stack)
    return "PostgreSQL" if isinstance(db, PostgresDatabase) else f"SQLite at {db.path}"


def ingest_root(settings: TwinSettings) -> str:
    """Where API-submitted ingest jobs may read (``data_dir/inbox`` unless configured)."""
    if settings.ingest_root:
        return settings.ingest_root
    return str((settings.data_dir / "inbox").resolve())


def research_key(settings: TwinSettings) -> bytes:
    """The key of research pseudonyms and identifier links (configured, or local and generated)."""
    if settings.research_key is not None:
        return settings.research_key.get_secret_value().encode()
    return local_secret(settings.data_dir / "secrets", "research").encode()


def research_key_if_any(settings: TwinSettings) -> bytes | None:
    """The research key when it is configured or already generated; never generates one."""
    if settings.research_key is not None:
        return settings.research_key.get_secret_value().encode()
    stored = read_local_secret(settings.data_dir / "secrets", "research")
    return None if stored is None else stored.encode()


#: Entries a folder named as a source may hold (the check walks them all).
MAX_SOURCE_ENTRIES = 100_000


def check_sources(root: str, paths: list[str]) -> None:
    """Refuse any path outside ``root`` (an API caller names files, never arbitrary ones).

    A local path is judged by where it really leads: a symbolic link under the root that points
    outside it (the path itself or a folder on the way) is outside, and a folder named as a
    source may hold no link to a folder at all (a reader would follow it) and no link to a
    file outside the root. Called when a job is queued and again when it runs (links may
    change between; what remains is a link swapped in after the run-time check, and hard
    links, which no path check can see).

    Raises:
        InvalidInputError: A path is outside the ingest root, or a folder holds more than
            :data:`MAX_SOURCE_ENTRIES` entries.
    """
    import os
    from pathlib import PurePosixPath

    def under(real: str, top: str) -> bool:
        return real == top or real.startswith(top.rstrip("/") + "/")

    def refuse() -> None:
        raise errors.InvalidInputError(f"paths: every source must be under {root}")

    seen = 0
    for path in dict.fromkeys(paths):  # each distinct path once
        if root.startswith("s3://"):
            if not path.startswith(root.rstrip("/") + "/"):
                refuse()
            continue
        if not (PurePosixPath(path).is_absolute() and PurePosixPath(path).is_relative_to(root)):
            refuse()
        top = os.path.realpath(root)
        real = os.path.realpath(path)
        if not under(real, top):
            refuse()
        if not os.path.isdir(real):
            continue
        for folder, names, files in os.walk(real):  # links are listed, never descended
            for name in (*names, *files):
                seen += 1
                if seen > MAX_SOURCE_ENTRIES:
                    raise errors.InvalidInputError(
                        f"paths: at most {MAX_SOURCE_ENTRIES} files and folders in all"
                    )
                entry = os.path.join(folder, name)
                if os.path.islink(entry) and (
                    os.path.isdir(entry) or not under(os.path.realpath(entry), top)
                ):
                    refuse()
