"""The embedded SQLite store: event log, data keys, twin index and audit trail in one file."""

from storage.sqlite.database import SqliteDatabase
from storage.sqlite.snapshot import SqliteSnapshot
from storage.sqlite.stores import (
    SqliteAuditLog,
    SqliteDataKeyStore,
    SqliteDocumentStore,
    SqliteEventStore,
    SqlitePatientRegistry,
    SqliteTwinIndex,
)

__all__ = [
    "SqliteAuditLog",
    "SqliteDataKeyStore",
    "SqliteDatabase",
    "SqliteDocumentStore",
    "SqliteEventStore",
    "SqlitePatientRegistry",
    "SqliteSnapshot",
    "SqliteTwinIndex",
]
