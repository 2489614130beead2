"""PostgreSQL adapters (asyncpg): event log, data keys, twin index and audit trail."""

from storage.postgres.database import PostgresDatabase
from storage.postgres.scratch import claim_scratch_database, clear_scratch_database
from storage.postgres.snapshot import PostgresSnapshot
from storage.postgres.stores import (
    PostgresAuditLog,
    PostgresDataKeyStore,
    PostgresDocumentStore,
    PostgresEventStore,
    PostgresPatientRegistry,
    PostgresTwinIndex,
)

__all__ = [
    "PostgresAuditLog",
    "PostgresDataKeyStore",
    "PostgresDatabase",
    "PostgresDocumentStore",
    "PostgresEventStore",
    "PostgresPatientRegistry",
    "PostgresSnapshot",
    "PostgresTwinIndex",
    "claim_scratch_database",
    "clear_scratch_database",
]
