"""The composition root: the only place adapters are chosen from settings.

- EventStore, DataKeyStore, TwinIndex, PatientRegistry, AuditLog, DocumentStore:
  ``database_url`` → PostgreSQL; else a SQLite file in ``data_dir``. Documents go to MongoDB
  when ``mongo_url`` is set.
- CheckpointStore: ``s3_bucket`` → S3 with SSE-KMS; else ``data_dir/checkpoints``.
- KeyProvider: ``kms_key_id`` → AWS KMS; else the key file in ``data_dir/keys``.
- ChangeFeed and rate-limit budgets: ``redis_url`` → Redis; else in-process.
- Tokens: ``jwks_url`` → the IdP's keys; else (local only) an HS256 secret; the research key
  likewise (generated into ``data_dir/secrets`` when local and unset).

Settings outside ``local`` must name the production stores (``TwinSettings`` refuses otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from deployments.api.audit_batch import GroupCommitAuditLog
from deployments.api.limiter import RateLimiter
from deployments.api.observability import Metrics
from deployments.api.services import ApiServices, Twins
from deployments.auth import TokenVerifier
from deployments.erasure import apply_erasure_ledger
from storage.kms import KmsKeyProvider
from storage.local import (
    LocalCheckpointStore,
    LocalErasureLedger,
    LocalKeyProvider,
    local_secret,
)
from storage.memory import InProcessChangeFeed
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
from storage.redis import RedisChangeFeed
from storage.s3 import S3CheckpointStore, S3ErasureLedger
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
from twin import ports
from twin.analytics.budget import CohortBudget
from twin.domain.deidentify import Deidentifier
from twin.service.access import AccessPolicy
from twin.service.application import JobLimits, TwinService
from twin.service.erasure import Eraser, Place
from twin.service.host import HostPorts, HostSettings
from twin.service.priors import DocumentPriorRegistry
from twin.settings import TwinSettings

__all__ = [
    "BackupStores",
    "build_host_ports",
    "host_settings",
    "ingest_root",
    "migrate",
    "open_api_services",
    "open_audit_log",
    "open_backup_stores",
    "open_cohort_stores",
    "open_documents",
    "open_event_writer",
    "open_twin_reader",
    "token_verifier",
]

#: Seconds between attempts to complete erasures that failed part-way (while one fails).
ERASURE_RETRY_S = 600.0
_LOG = logging.getLogger("novamind.bootstrap")


def _aws(settings: TwinSettings, service: str) -> Any:
    import boto3  # only when AWS stores are configured

    return boto3.client(
        service, region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url
    )


@dataclass(frozen=True, slots=True)
class _Stores:
    keys: ports.KeyProvider
    sealer: EnvelopeSealer
    events: ports.EventStore
    index: ports.TwinIndex
    registry: ports.PatientRegistry
    audit: ports.AuditLog
    documents: ports.DocumentStore
    snapshot: ports.DatabaseSnapshot


def _key_provider(settings: TwinSettings) -> ports.KeyProvider:
    if settings.kms_key_id:
        return KmsKeyProvider(_aws(settings, "kms"), settings.kms_key_id)
    return LocalKeyProvider(settings.data_dir / "keys")


def erasure_ledger(settings: TwinSettings) -> ports.ErasureLedger:
    """The erasure ledger: kept with the keys, never in a backup (docs/operations.md)."""
    where = settings.erasure_ledger
    if where is None and settings.s3_bucket:
        # One ledger per environment, even where environments share a bucket.
        where = f"s3://{settings.s3_bucket}/erasure-ledger/{settings.environment}"
    if where is not None and where.startswith("s3://"):
        bucket, _, prefix = where.removeprefix("s3://").partition("/")
        return S3ErasureLedger(
            _aws(settings, "s3"), bucket, prefix=prefix or "erasure-ledger",
            kms_key_id=settings.s3_kms_key_id,
        )  # fmt: skip
    return LocalErasureLedger(Path(where) if where else settings.data_dir / "keys" / "erased")


def _checkpoint_store(settings: TwinSettings) -> ports.CheckpointStore:
    if settings.s3_bucket:
        return S3CheckpointStore(
            _aws(settings, "s3"),
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            kms_key_id=settings.s3_kms_key_id,
        )
    return LocalCheckpointStore(settings.data_dir / "checkpoints")


async def _open_stores(settings: TwinSettings, stack: AsyncExitStack) -> _Stores:
    """The relational stores (and documents) behind one envelope sealer (no I/O but opening)."""
    keys = _key_provider(settings)
    db = await _open_database(settings, stack)
    if isinstance(db, PostgresDatabase):
        sealer = EnvelopeSealer(keys, PostgresDataKeyStore(db))
        stores = _Stores(
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
        stores = _Stores(
            keys,
            sealer,
            SqliteEventStore(db, sealer),
            SqliteTwinIndex(db),
            SqlitePatientRegistry(db, sealer),
            SqliteAuditLog(db),
            SqliteDocumentStore(db),
            SqliteSnapshot(db),
        )
    if settings.mongo_url:
        return replace(stores, documents=await _mongo_documents(settings.mongo_url, stack))
    return stores


async def _mongo_documents(url: str, stack: AsyncExitStack) -> ports.DocumentStore:
    from pymongo import AsyncMongoClient  # only when MongoDB is configured

    from storage.mongo import MongoDocumentStore

    client: Any = AsyncMongoClient(url, serverSelectionTimeoutMS=3000)
    stack.push_async_callback(client.close)
    mongo = MongoDocumentStore(client.get_default_database("novamind"))
    await mongo.ensure_indexes()
    return mongo


async def _open_database(
    settings: TwinSettings, stack: AsyncExitStack
) -> PostgresDatabase | SqliteDatabase:
    """The relational store (migrated on open): PostgreSQL when configured, else SQLite."""
    if settings.database_url:
        pg = await PostgresDatabase.open(settings.database_url)
        stack.push_async_callback(pg.close)
        return pg
    db = await SqliteDatabase.open(settings.data_dir / "novamind.db")
    stack.push_async_callback(db.close)
    return db


@asynccontextmanager
async def open_audit_log(settings: TwinSettings) -> AsyncIterator[ports.AuditLog]:
    """The audit trail alone (``novamind audit verify``: no keys or other stores needed)."""
    async with AsyncExitStack() as stack:
        db = await _open_database(settings, stack)
        yield PostgresAuditLog(db) if isinstance(db, PostgresDatabase) else SqliteAuditLog(db)


@asynccontextmanager
async def open_event_writer(
    settings: TwinSettings,
) -> AsyncIterator[tuple[ports.EventStore, ports.PatientRegistry]]:
    """The event store and the registry (bulk ingest: appends for registered patients)."""
    async with AsyncExitStack() as stack:
        stores = await _open_stores(settings, stack)
        yield stores.events, stores.registry


@asynccontextmanager
async def open_documents(settings: TwinSettings) -> AsyncIterator[ports.DocumentStore]:
    """The document store alone (job status documents)."""
    async with AsyncExitStack() as stack:
        yield (await _open_stores(settings, stack)).documents


@asynccontextmanager
async def open_twin_reader(
    settings: TwinSettings,
) -> AsyncIterator[
    tuple[ports.EventStore, ports.CheckpointStore, ports.Sealer, ports.PriorRegistry]
]:
    """Log, checkpoints, sealer and prior sets: enough to rebuild twins (batch jobs; no writes)."""
    async with AsyncExitStack() as stack:
        stores = await _open_stores(settings, stack)
        priors = DocumentPriorRegistry(stores.documents)
        yield stores.events, _checkpoint_store(settings), stores.sealer, priors


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
        stores = await _open_stores(settings, stack)
        yield CohortStores(
            stores.index, stores.registry, Deidentifier(_research_key(settings)), stores.documents
        )


@dataclass(frozen=True, slots=True)
class BackupStores:
    """What ``novamind backup`` and ``restore`` work on.

    Attributes:
        snapshot: The relational store as a whole (consistent export, all-or-nothing import).
        documents: The document store (MongoDB when configured, else the relational table).
        checkpoints: The checkpoint store.
        keys: The key provider that wraps the archive key (KMS in production).
        audit: The audit trail (verified after a restore).
        erasures: The erasure ledger (kept apart from backups; a restore applies it).
        registry: The patient registry (a restore marks the ledger's patients erased again).
        sealer: The envelope sealer (a restore shreds the ledger's patients' data keys again).
        index: The twin index (a restore deletes the ledger's patients' entries).
        eraser: Erasure over every place patient data lives (a restore erases the ledger's
            patients again).
    """

    snapshot: ports.DatabaseSnapshot
    documents: ports.DocumentStore
    checkpoints: ports.CheckpointStore
    keys: ports.KeyProvider
    audit: ports.AuditLog
    erasures: ports.ErasureLedger
    registry: ports.PatientRegistry
    sealer: ports.Sealer
    index: ports.TwinIndex
    eraser: Eraser


@asynccontextmanager
async def open_backup_stores(settings: TwinSettings) -> AsyncIterator[BackupStores]:
    """The stores a backup reads or a restore fills."""
    async with AsyncExitStack() as stack:
        stores = await _open_stores(settings, stack)
        yield BackupStores(
            stores.snapshot,
            stores.documents,
            _checkpoint_store(settings),
            stores.keys,
            stores.audit,
            erasure_ledger(settings),
            stores.registry,
            stores.sealer,
            stores.index,
            build_eraser(settings, stores),
        )


async def migrate(settings: TwinSettings) -> str:
    """Apply the schema migrations (opening the store does); returns where."""
    async with AsyncExitStack() as stack:
        db = await _open_database(settings, stack)
    return "PostgreSQL" if isinstance(db, PostgresDatabase) else f"SQLite at {db.path}"


async def build_host_ports(settings: TwinSettings) -> HostPorts:
    """Open the stores of one host process (importable, so Ray actors can receive it)."""
    stack = AsyncExitStack()
    stores = await _open_stores(settings, stack)
    checkpoints = _checkpoint_store(settings)
    feed: ports.ChangeFeed
    if settings.redis_url:
        import redis.asyncio as aioredis  # only when Redis is configured

        client = aioredis.from_url(
            settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        stack.push_async_callback(client.aclose)
        feed = RedisChangeFeed(client)
    else:
        feed = InProcessChangeFeed()
    return HostPorts(
        stores.events,
        checkpoints,
        stores.sealer,
        stores.index,
        feed,
        DocumentPriorRegistry(stores.documents),
        stack.aclose,
    )


def host_settings(settings: TwinSettings) -> HostSettings:
    """The host tuning part of the settings."""
    return HostSettings(
        particles=settings.particles,
        checkpoint_every_events=settings.checkpoint_every_events,
        checkpoint_every_s=settings.checkpoint_every_s,
        idle_passivate_s=settings.idle_passivate_s,
        max_active_twins=settings.max_active_twins,
        max_concurrent_activations=settings.max_concurrent_activations,
    )


def ingest_root(settings: TwinSettings) -> str:
    """Where API-submitted ingest jobs may read (``data_dir/inbox`` unless configured)."""
    if settings.ingest_root:
        return settings.ingest_root
    return str((settings.data_dir / "inbox").resolve())


def jwt_secret(settings: TwinSettings) -> str:
    """The HS256 secret (local only): configured, or generated in ``data_dir/secrets``."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    return local_secret(settings.data_dir / "secrets", "jwt")


def token_verifier(settings: TwinSettings) -> TokenVerifier:
    """Bearer-token verification from settings (JWKS in production, HS256 locally)."""
    if settings.jwks_url:
        return TokenVerifier(
            issuer=settings.jwt_issuer, audience=settings.jwt_audience, jwks_url=settings.jwks_url
        )
    return TokenVerifier(
        issuer=settings.jwt_issuer, audience=settings.jwt_audience, secret=jwt_secret(settings)
    )


async def _check_sources(root: str, paths: list[str]) -> None:
    """The API's check of ingest source paths: under the ingest root (a walk: off the loop)."""
    from deployments.jobs import check_sources

    await asyncio.to_thread(check_sources, root, paths)


def build_eraser(settings: TwinSettings, stores: _Stores, twins: Twins | None = None) -> Eraser:
    """The registry of every place patient data lives, in erasure order (docs/operations.md §7).

    The tombstone first (no write, no new data key from then on), then the twin in memory when
    a runtime is given, then everything derived and stored, and the data key last (what is
    sealed under it is unreadable even where a copy survives: backups, replicas).
    """
    from deployments.cohort_erasure import erase_from_cohort_results

    deidentifier = Deidentifier(_research_key(settings))
    checkpoints = _checkpoint_store(settings)
    ledger = erasure_ledger(settings)

    async def registry(pid: str) -> int:
        return int(await stores.registry.erase(pid))

    async def twin(pid: str) -> int:
        assert twins is not None  # the place is unreachable without a runtime
        await twins.erase(pid)
        return 1

    async def index(pid: str) -> int:
        return int(await stores.index.delete(pid))

    # Erasures rewrite shared result pages: two at once would each write back the other's
    # patient (a lost update), so in one process they take turns.
    rewriting = asyncio.Lock()

    async def cohort_results(pid: str) -> int:
        async with rewriting:
            erased = {pid, *await ledger.erased()}
            return await erase_from_cohort_results(
                settings, stores.documents, frozenset(map(deidentifier.pseudonym, erased))
            )

    async def data_key(pid: str) -> int:
        await stores.sealer.shred(pid)
        return 1

    places = [
        Place("registry", "identifiers, identifier links, care team (a tombstone stays)",
              ("patients", "patient_links"), registry),
        Place("twin", "the twin in memory, its cached summary and change feed", (), twin,
              reachable=twins is not None),
        Place("checkpoints", "sealed twin states", (), checkpoints.delete_all),
        Place("twin index", "severity, risk and alert flags (plain text)", ("twin_index",), index),
        Place("event log", "sealed events, idempotency keys, days", ("events", "patient_heads"),
              stores.events.forget),
        Place("documents", "scenario reports, emergency-access grants", ("documents",),
              stores.documents.delete_patient),
        Place("cohort results", "result pages and patients.parquet rows (by pseudonym)", (),
              cohort_results),
        Place("data key", "the key every sealed copy needs (backups included)", ("data_keys",),
              data_key),
    ]  # fmt: skip
    return Eraser(ledger, places)


def _research_key(settings: TwinSettings) -> bytes:
    if settings.research_key is not None:
        return settings.research_key.get_secret_value().encode()
    return local_secret(settings.data_dir / "secrets", "research").encode()


async def _rate_limiter(settings: TwinSettings, stack: AsyncExitStack) -> RateLimiter:
    if not settings.redis_url:
        return RateLimiter(
            settings.rate_limit_per_minute,
            failures_per_minute=settings.auth_failures_per_minute,
        )
    import redis.asyncio as aioredis  # only when Redis is configured
    from limits.aio.storage import RedisStorage

    # Our own pool (closed with the services); limits runs its Lua scripts over it.
    pool = aioredis.ConnectionPool.from_url(
        settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
    )
    stack.push_async_callback(pool.aclose)
    uri = settings.redis_url.replace("redis://", "async+redis://", 1).replace(
        "rediss://", "async+rediss://", 1
    )
    return RateLimiter(
        settings.rate_limit_per_minute,
        RedisStorage(uri, implementation="redispy", connection_pool=pool),
        failures_per_minute=settings.auth_failures_per_minute,
    )


@asynccontextmanager
async def open_api_services(
    settings: TwinSettings,
    twins: Twins,
    metrics: Metrics,
    *,
    twins_ready: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[ApiServices]:
    """Open everything the API uses in this process; closes it on exit."""
    async with AsyncExitStack() as stack:
        stores = await _open_stores(settings, stack)
        erasures = erasure_ledger(settings)
        eraser = build_eraser(settings, stores, twins)
        ledger_applied = asyncio.Event()

        async def twins_up() -> bool:
            try:
                return twins_ready is None or await twins_ready()
            except Exception:  # not up yet
                return False

        async def apply_ledger() -> None:
            # Before anything is served, a restored database must not bring an erased patient
            # back. The ledger's store being briefly out must not stop the service from
            # starting either: then it keeps trying, and the service is not ready meanwhile.
            delay = 1.0
            while True:
                try:
                    await apply_erasure_ledger(
                        erasures, stores.snapshot, stores.index, eraser, incomplete=False
                    )
                except Exception as exc:  # whatever it is, not ready, logged, tried again
                    _LOG.warning("erasure ledger not applied yet (%r); retrying", exc)
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, 60.0)
                else:
                    ledger_applied.set()
                    break
            # Then, while serving and once the twins are up (erasure reaches them too),
            # erasures that stopped half-way (their data key is gone, so nothing sealed is
            # readable) are completed, and tried again every ERASURE_RETRY_S while one fails.
            while True:
                if await twins_up():
                    try:
                        done = await apply_erasure_ledger(
                            erasures, stores.snapshot, stores.index, eraser
                        )
                    except Exception as exc:
                        _LOG.warning("unfinished erasures not completed (%r)", exc)
                    else:
                        if not done.failed:
                            return
                        _LOG.warning("%d unfinished erasure(s) failed again", len(done.failed))
                    await asyncio.sleep(ERASURE_RETRY_S)
                else:
                    await asyncio.sleep(5.0)

        ledger_task = asyncio.ensure_future(apply_ledger())

        async def stop_ledger_task() -> None:
            # Before the stores close (the exit stack runs this first): cancel and wait.
            ledger_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ledger_task

        stack.push_async_callback(stop_ledger_task)
        # Not ready until it is applied; past 30 s the service starts and the task keeps trying.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ledger_applied.wait(), timeout=30.0)

        async def ready() -> bool:
            if not ledger_applied.is_set():
                return False
            try:
                await stores.registry.care_team("readiness-probe")
                await stores.documents.get("readiness", "probe")
            except Exception:  # any failing dependency means not ready
                return False
            return twins_ready is None or await twins_ready()

        audit = GroupCommitAuditLog(stores.audit)
        deidentifier = Deidentifier(_research_key(settings))
        policy = AccessPolicy(
            audit,
            stores.registry,
            stores.documents,
            stores.sealer,
            break_glass_max_minutes=settings.break_glass_max_minutes,
        )
        app = TwinService(
            policy=policy,
            registry=stores.registry,
            twins=twins,
            documents=stores.documents,
            sealer=stores.sealer,
            index=stores.index,
            erasures=erasures,
            eraser=eraser,
            deidentifier=deidentifier,
            job_limits=JobLimits(
                budget=CohortBudget(settings.cohort_max_particle_days, settings.cohort_max_rows),
                stored_particles=settings.particles,
                per_caller=settings.jobs_per_caller,
                check_sources=partial(_check_sources, ingest_root(settings)),
            ),
        )
        yield ApiServices(
            verifier=token_verifier(settings),
            registry=stores.registry,
            audit=audit,
            twins=twins,
            events=stores.events,
            index=stores.index,
            documents=stores.documents,
            sealer=stores.sealer,
            deidentifier=deidentifier,
            limiter=await _rate_limiter(settings, stack),
            erasures=erasures,
            eraser=eraser,
            app=app,
            metrics=metrics,
            ready=ready,
            ingest_root=ingest_root(settings),
            streams_per_caller=settings.streams_per_caller,
            stream_recheck_s=settings.stream_recheck_s,
        )
