"""Adapters under contract: every suite runs on the in-memory fake and on the real adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.local import LocalCheckpointStore, LocalKeyProvider
from storage.sealed import EnvelopeSealer
from storage.sqlite import SqliteDatabase, SqliteDataKeyStore, SqliteEventStore
from twin import ports
from twin.testing import fakes


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    db = await SqliteDatabase.open(tmp_path / "novamind.db")
    yield db
    await db.close()


@pytest.fixture
def key_provider(tmp_path: Path) -> LocalKeyProvider:
    return LocalKeyProvider(tmp_path / "keys")


@pytest.fixture(params=["memory", "sqlite"])
async def event_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ports.EventStore]:
    if request.param == "memory":
        yield fakes.MemoryEventStore()
        return
    db = await SqliteDatabase.open(tmp_path / "events.db")
    sealer = EnvelopeSealer(LocalKeyProvider(tmp_path / "keys"), SqliteDataKeyStore(db))
    yield SqliteEventStore(db, sealer)
    await db.close()


@pytest.fixture(params=["memory", "local"])
def checkpoint_store(request: pytest.FixtureRequest, tmp_path: Path) -> ports.CheckpointStore:
    if request.param == "memory":
        return fakes.MemoryCheckpointStore()
    return LocalCheckpointStore(tmp_path / "checkpoints")


@pytest.fixture(params=["memory", "sqlite"])
async def data_key_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ports.DataKeyStore]:
    if request.param == "memory":
        yield fakes.MemoryDataKeyStore()
        return
    db = await SqliteDatabase.open(tmp_path / "keys.db")
    yield SqliteDataKeyStore(db)
    await db.close()
