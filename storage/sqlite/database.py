"""One SQLite database file: migrations, pragmas for durability, one serialised connection.

Why these libraries: ``aiosqlite`` runs the standard ``sqlite3`` module on its own thread so the
event loop never blocks; ``yoyo-migrations`` applies the versioned SQL files in
``migrations/`` and records them (no hand-rolled bookkeeping).

Durability: WAL journal with ``synchronous=FULL`` (each commit is fsynced before it returns, so an
acknowledged append survives power loss); ``secure_delete`` so a shredded data key is overwritten
rather than left in free pages, and a WAL checkpoint after deletions.

Failures of the file itself (a full disk, an I/O error, a lock held too long) become retryable
errors in one place, :func:`storage_error`, for every statement run under :meth:`locked` or
:meth:`write`: a full disk is :class:`twin.errors.StorageFullError`, never an unexpected
exception. SQLite keeps the file intact when a write does not fit: the statement or
transaction is rolled back and nothing of it is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NoReturn

import aiosqlite

from storage.disk import os_error
from storage.migrations import apply_migrations
from twin import errors

__all__ = ["STORE", "SqliteDatabase", "raise_storage_error", "storage_error"]

#: How errors name this store (one file holds the log, registry, audit trail and documents).
STORE = "SQLite store"
#: SQLITE_FULL: "database or disk is full".
_FULL = 13
#: Primary result codes that say the file cannot be used now, not that a statement is wrong:
#: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_READONLY (a file system remounted
#: read-only after errors), SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_PROTOCOL.
_UNAVAILABLE = frozenset({5, 6, 7, 8, 10, 14, 15})


def storage_error(exc: BaseException) -> errors.StorageUnavailableError | None:
    """The retryable error a failure of the database file means; ``None`` for any other.

    A constraint, a malformed statement or a damaged file is not retryable and stays what it
    is (the caller's bug or an incident, not a condition that passes).

    Args:
        exc: What SQLite (or the operating system) raised.
    """
    if isinstance(exc, OSError):
        mapped = os_error(exc, STORE)
        return mapped if isinstance(mapped, errors.StorageUnavailableError) else None
    if not isinstance(exc, sqlite3.Error):
        return None
    # The extended result code's low byte is the primary code (SQLITE_IOERR_WRITE -> IOERR).
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == _FULL:
        return errors.StorageFullError(STORE)
    if primary in _UNAVAILABLE:
        return errors.StorageUnavailableError(f"{STORE} unavailable: {exc}")
    return None


def raise_storage_error(exc: BaseException) -> NoReturn:
    """Raise the retryable error a failure of the database file means, else ``exc`` itself."""
    mapped = storage_error(exc)
    if mapped is None:
        raise exc
    raise mapped from None


def _migrate(path: Path) -> None:
    apply_migrations(f"sqlite:///{path}", "storage.sqlite")


class SqliteDatabase:
    """An open, migrated database. Use :meth:`open`; every statement goes through :attr:`lock`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        #: Serialises statement groups and transactions on the shared connection.
        self.lock = asyncio.Lock()

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection under :attr:`lock`; failures of the file become retryable errors.

        Raises:
            StorageFullError: The disk has no space left for a write (nothing of it is kept).
            StorageUnavailableError: The file cannot be read or written now.
        """
        async with self.lock:
            try:
                yield self.conn
            except (sqlite3.Error, OSError) as exc:
                raise_storage_error(exc)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction under :meth:`locked`: committed on exit, rolled back on error.

        Raises:
            StorageFullError: The transaction does not fit on the disk (it was rolled back).
            StorageUnavailableError: The file cannot be written now (rolled back).
        """
        async with self.locked():
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                yield self.conn
                await self.conn.execute("COMMIT")
            except BaseException:
                # Also after a cancelled BEGIN or COMMIT, or a full disk (SQLite may have
                # rolled back already): the shared connection must not stay inside a
                # transaction; a failing rollback does not hide the first error.
                await self.rollback()
                raise

    async def rollback(self) -> None:
        """End the open transaction, if any, keeping nothing of it (never raises a failure)."""
        if self.conn.in_transaction:
            with contextlib.suppress(aiosqlite.Error):
                await self.conn.execute("ROLLBACK")

    @classmethod
    async def open(cls, path: Path, *, read_only: bool = False) -> SqliteDatabase:
        """Migrate (idempotent) and connect.

        Args:
            path: The database file.
            read_only: Neither migrate nor create anything, and refuse every write (another
                environment's store, read by a disaster-recovery drill).

        Raises:
            StorageUnavailableError: The file cannot be opened or migrated (or, read-only, is
                not there).
        """
        if read_only:
            return await cls._open_read_only(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            await asyncio.to_thread(_migrate, path)
            conn = await aiosqlite.connect(path, isolation_level=None)
            for pragma in (
                "PRAGMA journal_mode=WAL",
                "PRAGMA synchronous=FULL",
                "PRAGMA secure_delete=ON",
                "PRAGMA busy_timeout=5000",
            ):
                await conn.execute(pragma)
            # Owner-only whatever the umask (the folder is too): the file and its -wal and -shm
            # hold sealed PHI and the wrapped data keys. Set once SQLite has made them, since
            # several processes may be opening the same new database at once.
            for part in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
                if part.exists():
                    os.chmod(part, 0o600)
        except (OSError, aiosqlite.Error) as exc:
            # A migration that does not fit on the disk is a full store like any write.
            full = storage_error(exc)
            if isinstance(full, errors.StorageFullError):
                raise full from None
            raise errors.StorageUnavailableError(f"SQLite store unavailable: {exc}") from None
        return cls(conn, path)

    @classmethod
    async def _open_read_only(cls, path: Path) -> SqliteDatabase:
        # mode=ro: SQLite itself refuses writes and never creates the file; query_only also
        # refuses them on this connection. Journal and sync pragmas are the writers' to set.
        try:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            for pragma in ("PRAGMA query_only=ON", "PRAGMA busy_timeout=5000"):
                await conn.execute(pragma)
        except (OSError, aiosqlite.Error) as exc:
            raise errors.StorageUnavailableError(f"SQLite store unavailable: {exc}") from None
        return cls(conn, path)

    async def close(self) -> None:
        """Close the connection."""
        await self.conn.close()
