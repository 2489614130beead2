"""The composition root: the only place adapters are chosen from settings.

Today the embedded defaults (SQLite event log and twin index, local checkpoint folder, local
key file, in-process change feed). The PostgreSQL, S3, KMS and Redis adapters exist and pass
their contract suites; choosing them from settings comes with the API (issue 4).
"""

from __future__ import annotations

from storage.local import LocalCheckpointStore, LocalKeyProvider
from storage.memory import InProcessChangeFeed
from storage.sealed import EnvelopeSealer
from storage.sqlite import SqliteDatabase, SqliteDataKeyStore, SqliteEventStore, SqliteTwinIndex
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
        index=SqliteTwinIndex(db),
        feed=InProcessChangeFeed(),
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
