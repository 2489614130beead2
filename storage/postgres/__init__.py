"""PostgreSQL adapters (asyncpg): event log and wrapped data keys."""

from storage.postgres.database import PostgresDatabase
from storage.postgres.stores import PostgresDataKeyStore, PostgresEventStore, PostgresTwinIndex

__all__ = ["PostgresDataKeyStore", "PostgresDatabase", "PostgresEventStore", "PostgresTwinIndex"]
