"""The composition root: the only place adapters are chosen from settings.

Today the embedded defaults (SQLite event log, local checkpoint folder, local key file); the
PostgreSQL, S3 and KMS adapters plug in here as they arrive.
"""

from __future__ import annotations

from storage.local import LocalCheckpointStore, LocalKeyProvider
from storage.sealed import EnvelopeSealer
from storage.sqlite import SqliteDatabase, SqliteDataKeyStore, SqliteEventStore
from twin.service.host import HostPorts, HostSettings
from twin.settings import TwinSettings

__all__ = ["build_host_ports", "host_settings"]


async def build_host_ports(settings: TwinSettings) -> HostPorts:
    """Open the stores of one host process (importable, so Ray actors can receive it)."""
    root = settings.data_dir
    db = await SqliteDatabase.open(root / "novamind.db")
    sealer = EnvelopeSealer(LocalKeyProvider(root / "keys"), SqliteDataKeyStore(db))
    return HostPorts(
        events=SqliteEventStore(db, sealer),
        checkpoints=LocalCheckpointStore(root / "checkpoints"),
        sealer=sealer,
        close=db.close,
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
