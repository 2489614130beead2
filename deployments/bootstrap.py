"""The composition root: the only place adapters are chosen from settings.

- EventStore, DataKeyStore, TwinIndex: ``database_url`` → PostgreSQL; else a SQLite file in
  ``data_dir``.
- CheckpointStore: ``s3_bucket`` → S3 with SSE-KMS; else ``data_dir/checkpoints``.
- KeyProvider: ``kms_key_id`` → AWS KMS; else the key file in ``data_dir/keys``.
- ChangeFeed: ``redis_url`` → Redis; else in-process.

Settings outside ``local`` must name the production stores (``TwinSettings`` refuses otherwise).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from storage.kms import KmsKeyProvider
from storage.local import LocalCheckpointStore, LocalKeyProvider
from storage.memory import InProcessChangeFeed
from storage.postgres import (
    PostgresDatabase,
    PostgresDataKeyStore,
    PostgresEventStore,
    PostgresTwinIndex,
)
from storage.redis import RedisChangeFeed
from storage.s3 import S3CheckpointStore
from storage.sealed import EnvelopeSealer
from storage.sqlite import SqliteDatabase, SqliteDataKeyStore, SqliteEventStore, SqliteTwinIndex
from twin import ports
from twin.service.host import HostPorts, HostSettings
from twin.settings import TwinSettings

__all__ = ["build_host_ports", "host_settings"]


def _aws(settings: TwinSettings, service: str) -> Any:
    import boto3  # only when AWS stores are configured

    return boto3.client(
        service, region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url
    )


async def build_host_ports(settings: TwinSettings) -> HostPorts:
    """Open the stores of one host process (importable, so Ray actors can receive it)."""
    root = settings.data_dir
    closers: list[Callable[[], Awaitable[None]]] = []
    keys: ports.KeyProvider = (
        KmsKeyProvider(_aws(settings, "kms"), settings.kms_key_id)
        if settings.kms_key_id
        else LocalKeyProvider(root / "keys")
    )
    checkpoints: ports.CheckpointStore = (
        S3CheckpointStore(
            _aws(settings, "s3"),
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            kms_key_id=settings.s3_kms_key_id,
        )
        if settings.s3_bucket
        else LocalCheckpointStore(root / "checkpoints")
    )
    if settings.database_url:
        pg = await PostgresDatabase.open(settings.database_url)
        closers.append(pg.close)
        sealer = EnvelopeSealer(keys, PostgresDataKeyStore(pg))
        events: ports.EventStore = PostgresEventStore(pg, sealer)
        index: ports.TwinIndex = PostgresTwinIndex(pg)
    else:
        db = await SqliteDatabase.open(root / "novamind.db")
        closers.append(db.close)
        sealer = EnvelopeSealer(keys, SqliteDataKeyStore(db))
        events = SqliteEventStore(db, sealer)
        index = SqliteTwinIndex(db)
    feed: ports.ChangeFeed
    if settings.redis_url:
        import redis.asyncio as aioredis  # only when Redis is configured

        client = aioredis.from_url(
            settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        closers.append(client.aclose)
        feed = RedisChangeFeed(client)
    else:
        feed = InProcessChangeFeed()

    async def close() -> None:
        for closer in closers:
            await closer()

    return HostPorts(events, checkpoints, sealer, index, feed, close)


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
