"""The embedded SQLite store: event log and wrapped data keys in one database file."""

from storage.sqlite.database import SqliteDatabase
from storage.sqlite.stores import SqliteDataKeyStore, SqliteEventStore, SqliteTwinIndex

__all__ = ["SqliteDataKeyStore", "SqliteDatabase", "SqliteEventStore", "SqliteTwinIndex"]
