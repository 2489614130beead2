"""The composition root: the services each entry point runs, built on the stores it opens.

The stores come from :mod:`deployments.stores` (the only place adapters are chosen from
settings); here they are composed into what an entry point serves: the API's services
(:func:`open_api_services`), the erasure over every place patient data lives
(:func:`build_eraser`) and what a backup or restore works on (:func:`open_backup_stores`). A
twin host's own stores are composed apart, in :mod:`deployments.host_ports`, so that a host's
process never imports the API. Besides the stores:

- ChangeFeed and rate-limit budgets: ``redis_url`` → Redis; else in-process.
- Tokens: ``jwks_url`` → the IdP's keys; else (local only) an HS256 secret (generated into
  ``data_dir/secrets`` when local and unset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial

from fastapi import FastAPI

from deployments.api.app import create_app
from deployments.api.audit_batch import GroupCommitAuditLog
from deployments.api.auth import TokenVerifier
from deployments.api.limiter import RateLimiter
from deployments.api.observability import Metrics, configure_json_logging
from deployments.api.services import ApiServices, Twins
from deployments.pipelines.cohort_erasure import erase_from_cohort_results
from deployments.stores import (
    Stores,
    anchoring_policy,
    audit_anchor_store,
    check_sources,
    checkpoint_store,
    erasure_ledger,
    ingest_root,
    key_provider,
    open_stores,
    research_key,
    research_key_if_any,
)
from storage.local import local_secret
from twin import errors, ports
from twin.analytics.budget import CohortBudget
from twin.audit_log import AnchoringAuditLog
from twin.domain.deidentify import Deidentifier
from twin.service.access import AccessPolicy
from twin.service.application import JobLimits, TwinService
from twin.service.erasure import Eraser, Place
from twin.service.erasure_ledger import ScratchErasureLedger, apply_erasure_ledger
from twin.service.fhir import ExportLimits, FhirService
from twin.settings import TwinSettings

__all__ = [
    "BackupStores",
    "api_app",
    "build_eraser",
    "jwt_secret",
    "open_api_services",
    "open_backup_stores",
    "open_scratch_stores",
    "token_verifier",
]

#: Seconds between attempts to complete erasures that failed part-way (while one fails).
ERASURE_RETRY_S = 600.0
_LOG = logging.getLogger("novamind.bootstrap")


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
        events: The event log (a drill replays restored twins from it).
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
    events: ports.EventStore


@asynccontextmanager
async def open_backup_stores(settings: TwinSettings) -> AsyncIterator[BackupStores]:
    """The stores a backup reads or a restore fills."""
    async with AsyncExitStack() as stack:
        stores = await open_stores(settings, stack)
        yield BackupStores(
            stores.snapshot,
            stores.documents,
            checkpoint_store(settings),
            stores.keys,
            stores.audit,
            erasure_ledger(settings),
            stores.registry,
            stores.sealer,
            stores.index,
            build_eraser(settings, stores),
            stores.events,
        )


@asynccontextmanager
async def open_scratch_stores(
    live: TwinSettings, scratch: TwinSettings
) -> AsyncIterator[BackupStores]:
    """What a disaster-recovery drill restores into: scratch stores that write nowhere else.

    The relational store, documents and checkpoints are the scratch settings' (a folder and a
    database of the drill's own). What is never in a backup is the live environment's, and
    only read: the key provider (KMS, or the live key folder, where no key is ever created),
    the erasure ledger (a :class:`ScratchErasureLedger`: erasures begin and complete in the
    scratch environment alone) and the research key (never generated). The eraser reaches the
    scratch stores alone: no twin in memory, and cohort result pages but not the outputs
    (``patients.parquet``) the restored run documents name, which are the live environment's.

    Raises:
        ConfigurationError: The scratch settings share a store with the live ones.
    """
    shared = [
        name
        for name, value in (
            ("s3_bucket", scratch.s3_bucket),
            ("mongo_url", scratch.mongo_url),
            ("redis_url", scratch.redis_url),
        )
        if value
    ]
    if scratch.database_url is not None and scratch.database_url == live.database_url:
        shared.append("database_url")
    if scratch.data_dir.resolve() == live.data_dir.resolve():
        shared.append("data_dir")
    if shared:
        raise errors.ConfigurationError(
            f"the scratch environment shares {', '.join(shared)} with the live one"
        )
    async with AsyncExitStack() as stack:
        stores = await open_stores(scratch, stack, keys=key_provider(live, create=False))
        ledger = ScratchErasureLedger(erasure_ledger(live))
        key = research_key_if_any(live)
        # No research key yet: no pseudonym was ever made with one, so no result page holds
        # one; a key of the drill's own (never stored) matches none either.
        deidentifier = Deidentifier(key or secrets.token_urlsafe(48).encode())
        eraser = build_eraser(
            scratch, stores, ledger=ledger, deidentifier=deidentifier, scratch=True
        )
        yield BackupStores(
            stores.snapshot,
            stores.documents,
            checkpoint_store(scratch),
            stores.keys,
            stores.audit,
            ledger,
            stores.registry,
            stores.sealer,
            stores.index,
            eraser,
            stores.events,
        )


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
    await asyncio.to_thread(check_sources, root, paths)


def build_eraser(
    settings: TwinSettings,
    stores: Stores,
    twins: Twins | None = None,
    *,
    ledger: ports.ErasureLedger | None = None,
    deidentifier: Deidentifier | None = None,
    scratch: bool = False,
) -> Eraser:
    """The registry of every place patient data lives, in erasure order (docs/operations.md §7).

    The tombstone first (no write, no new data key from then on), then the twin in memory when
    a runtime is given, then everything derived and stored, and the data key last (what is
    sealed under it is unreadable even where a copy survives: backups, replicas).

    Args:
        settings: Where the checkpoints (and cohort outputs) are.
        stores: The relational stores and documents.
        twins: The runtime holding twins in memory (``None``: that place is unreachable).
        ledger: The erasure ledger (default the settings').
        deidentifier: Research pseudonyms (default from the settings' research key).
        scratch: A drill's scratch environment: no runtime holds twins there (no twin place),
            and cohort runs' ``patients.parquet`` files are not rewritten (its restored run
            documents name the live environment's outputs); result pages are.
    """
    pseudonyms = deidentifier if deidentifier is not None else Deidentifier(research_key(settings))
    checkpoints = checkpoint_store(settings)
    erasures = ledger if ledger is not None else erasure_ledger(settings)

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
            erased = {pid, *await erasures.erased()}
            return await erase_from_cohort_results(
                settings,
                stores.documents,
                frozenset(map(pseudonyms.pseudonym, erased)),
                outputs=not scratch,
            )

    async def data_key(pid: str) -> int:
        await stores.sealer.shred(pid)
        return 1

    places = [
        Place("registry", "identifiers, identifier links, care team (a tombstone stays)",
              ("patients", "patient_links"), registry),
        *([] if scratch else [
            Place("twin", "the twin in memory, its cached summary and change feed", (), twin,
                  reachable=twins is not None),
        ]),
        Place("checkpoints", "sealed twin states", (), checkpoints.delete_all),
        Place("twin index", "severity, risk and alert flags (plain text)", ("twin_index",), index),
        Place("event log", "sealed events, idempotency keys, days", ("events", "patient_heads"),
              stores.events.forget),
        Place("documents", "scenario reports, emergency-access grants, FHIR export parts",
              ("documents",), stores.documents.delete_patient),
        Place("cohort results", "result pages and patients.parquet rows (by pseudonym)", (),
              cohort_results),
        Place("data key", "the key every sealed copy needs (backups included)", ("data_keys",),
              data_key),
    ]  # fmt: skip
    return Eraser(erasures, places)


async def _rate_limiter(
    settings: TwinSettings, stack: AsyncExitStack, metrics: Metrics
) -> RateLimiter:
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
        on_fallback=metrics.rate_limit_fallback,
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
        stores = await open_stores(settings, stack)
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

        anchors = audit_anchor_store(settings)
        anchoring = AnchoringAuditLog(
            stores.audit,
            anchors,
            every=settings.audit_anchor_every_entries,
            on_failure=lambda _exc: metrics.audit_anchor_failed(),
            on_age=metrics.audit_anchor_age,
            # Anchors written by the CronJob and other replicas are learnt this often: the
            # gauge lags by at most a quarter of the interval its alert allows twice of.
            refresh_s=settings.audit_anchor_interval_s / 4,
        )
        # Runs before the stores close (callbacks run last-in first-out).
        stack.push_async_callback(anchoring.aclose)
        audit = GroupCommitAuditLog(anchoring)
        deidentifier = Deidentifier(research_key(settings), dates=settings.research_dates)
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
        fhir = FhirService(
            policy=policy,
            registry=stores.registry,
            twins=twins,
            events=stores.events,
            documents=stores.documents,
            sealer=stores.sealer,
            limits=ExportLimits(per_caller=settings.jobs_per_caller),
        )
        yield ApiServices(
            verifier=token_verifier(settings),
            registry=stores.registry,
            audit=audit,
            anchors=anchors,
            twins=twins,
            events=stores.events,
            index=stores.index,
            documents=stores.documents,
            sealer=stores.sealer,
            deidentifier=deidentifier,
            limiter=await _rate_limiter(settings, stack, metrics),
            erasures=erasures,
            eraser=eraser,
            app=app,
            fhir=fhir,
            metrics=metrics,
            ready=ready,
            ingest_root=ingest_root(settings),
            streams_per_caller=settings.streams_per_caller,
            stream_recheck_s=settings.stream_recheck_s,
            public_base_url=settings.public_base_url,
            anchoring=anchoring_policy(settings),
        )


def api_app(
    settings: TwinSettings,
    metrics: Metrics,
    open_twins: Callable[[], AbstractAsyncContextManager[Twins]],
    *,
    twins_ready: Callable[[], Awaitable[bool]] | None = None,
) -> FastAPI:
    """The HTTP API of one process: its services open with the app and close with it.

    Both ways of serving it build it here: a Ray Serve replica (twins on the cluster's host
    actors) and a plain ASGI server (twins in an in-process host).

    Args:
        settings: The settings.
        metrics: Where request metrics go (Ray's metrics or prometheus-client).
        open_twins: Opens the twins the API serves (and closes them after the services).
        twins_ready: Whether the twins answer (readiness); ``None``: always.
    """

    @asynccontextmanager
    async def open_services() -> AsyncIterator[ApiServices]:
        configure_json_logging()
        async with (
            open_twins() as twins,
            open_api_services(settings, twins, metrics, twins_ready=twins_ready) as services,
        ):
            yield services

    return create_app(
        open_services=open_services,
        docs=settings.environment != "prod",
        cors_origins=tuple(settings.cors_origins),
    )
