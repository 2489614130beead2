"""Adapters under contract: every suite runs on the in-memory fake and on the real adapters.

PostgreSQL is a real server (Debian's binaries, started by :mod:`tests.servers`), one fresh
database per test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage.kms import KmsKeyProvider
from storage.local import LocalCheckpointStore, LocalKeyProvider
from storage.postgres import (
    PostgresAuditLog,
    PostgresDatabase,
    PostgresDataKeyStore,
    PostgresDocumentStore,
    PostgresEventStore,
    PostgresPatientRegistry,
    PostgresTwinIndex,
)
from storage.s3 import S3CheckpointStore
from storage.sealed import EnvelopeSealer
from storage.sqlite import (
    SqliteAuditLog,
    SqliteDatabase,
    SqliteDataKeyStore,
    SqliteDocumentStore,
    SqliteEventStore,
    SqlitePatientRegistry,
    SqliteTwinIndex,
)
from tests.servers import MotoServer, PostgresServer
from twin import ports
from twin.testing import fakes


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


def _s3_store(server: MotoServer) -> S3CheckpointStore:
    s3 = server.client("s3")
    kms = server.client("kms")
    bucket = f"ckpt-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]  # type: ignore[attr-defined]
    return S3CheckpointStore(s3, bucket, kms_key_id=key_id)


async def _postgres(request: pytest.FixtureRequest) -> PostgresDatabase:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return await PostgresDatabase.open(server.create_database(f"t_{uuid.uuid4().hex[:12]}"))


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    db = await SqliteDatabase.open(tmp_path / "novamind.db")
    yield db
    await db.close()


@pytest.fixture(params=["local", "kms"])
def key_provider(request: pytest.FixtureRequest, tmp_path: Path) -> ports.KeyProvider:
    if request.param == "local":
        return LocalKeyProvider(tmp_path / "keys")
    server: MotoServer = request.getfixturevalue("moto_server")
    kms = server.client("kms")
    return KmsKeyProvider(kms, kms.create_key()["KeyMetadata"]["KeyId"])  # type: ignore[attr-defined]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def event_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ports.EventStore]:
    keys = LocalKeyProvider(tmp_path / "keys")
    if request.param == "memory":
        yield fakes.MemoryEventStore()
    elif request.param == "sqlite":
        db = await SqliteDatabase.open(tmp_path / "events.db")
        yield SqliteEventStore(db, EnvelopeSealer(keys, SqliteDataKeyStore(db)))
        await db.close()
    else:
        pg = await _postgres(request)
        yield PostgresEventStore(pg, EnvelopeSealer(keys, PostgresDataKeyStore(pg)))
        await pg.close()


@pytest.fixture(params=["memory", "local", "s3"])
def checkpoint_store(request: pytest.FixtureRequest, tmp_path: Path) -> ports.CheckpointStore:
    if request.param == "memory":
        return fakes.MemoryCheckpointStore()
    if request.param == "s3":
        return _s3_store(request.getfixturevalue("moto_server"))
    return LocalCheckpointStore(tmp_path / "checkpoints")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def data_key_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ports.DataKeyStore]:
    if request.param == "memory":
        yield fakes.MemoryDataKeyStore()
    elif request.param == "sqlite":
        db = await SqliteDatabase.open(tmp_path / "keys.db")
        yield SqliteDataKeyStore(db)
        await db.close()
    else:
        pg = await _postgres(request)
        yield PostgresDataKeyStore(pg)
        await pg.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def twin_index(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ports.TwinIndex]:
    if request.param == "memory":
        yield fakes.MemoryTwinIndex()
    elif request.param == "sqlite":
        db = await SqliteDatabase.open(tmp_path / "index.db")
        yield SqliteTwinIndex(db)
        await db.close()
    else:
        pg = await _postgres(request)
        yield PostgresTwinIndex(pg)
        await pg.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def audit_log(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ports.AuditLog]:
    if request.param == "memory":
        yield fakes.MemoryAuditLog()
    elif request.param == "sqlite":
        db = await SqliteDatabase.open(tmp_path / "audit.db")
        yield SqliteAuditLog(db)
        await db.close()
    else:
        pg = await _postgres(request)
        yield PostgresAuditLog(pg)
        await pg.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def patient_registry(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ports.PatientRegistry]:
    keys = LocalKeyProvider(tmp_path / "keys")
    if request.param == "memory":
        yield fakes.MemoryPatientRegistry(EnvelopeSealer(keys, fakes.MemoryDataKeyStore()))
    elif request.param == "sqlite":
        db = await SqliteDatabase.open(tmp_path / "patients.db")
        yield SqlitePatientRegistry(db, EnvelopeSealer(keys, SqliteDataKeyStore(db)))
        await db.close()
    else:
        pg = await _postgres(request)
        yield PostgresPatientRegistry(pg, EnvelopeSealer(keys, PostgresDataKeyStore(pg)))
        await pg.close()


@pytest.fixture(params=["memory", "sqlite", "postgres", "mongo"])
async def document_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ports.DocumentStore]:
    if request.param == "memory":
        yield fakes.MemoryDocumentStore()
    elif request.param == "sqlite":
        db = await SqliteDatabase.open(tmp_path / "documents.db")
        yield SqliteDocumentStore(db)
        await db.close()
    elif request.param == "postgres":
        pg = await _postgres(request)
        yield PostgresDocumentStore(pg)
        await pg.close()
    else:
        # No MongoDB server can be installed here: the suite runs against a real server only.
        url = os.environ.get("NOVAMIND_TEST_MONGO_URL")
        if not url:
            pytest.skip("NOVAMIND_TEST_MONGO_URL is not set (no MongoDB server on this machine)")
        from pymongo import AsyncMongoClient

        from storage.mongo import MongoDocumentStore

        client: AsyncMongoClient = AsyncMongoClient(url, serverSelectionTimeoutMS=3000)
        database = client.get_database(f"novamind_test_{uuid.uuid4().hex[:8]}")
        store = MongoDocumentStore(database)
        await store.ensure_indexes()
        yield store
        await client.drop_database(database.name)
        await client.close()
