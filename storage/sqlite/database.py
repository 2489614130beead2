"""One SQLite database file: migrations, pragmas for durability, one serialised connection.

Why these libraries: ``aiosqlite`` runs the standard ``sqlite3`` module on its own thread so the
event loop never blocks; ``yoyo-migrations`` applies the versioned SQL files in
``migrations/`` and records them (no hand-rolled bookkeeping).

Durability: WAL journal with ``synchronous=FULL`` (each commit is fsynced before it returns, so an
acknowledged append survives power loss); ``secure_delete`` so a shredded data key is overwritten
rather than left in free pages, and a WAL checkpoint after deletions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from storage.migrations import apply_migrations
from twin import errors

__all__ = ["SqliteDatabase"]


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
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction under :attr:`lock`: committed on exit, rolled back on error."""
        async with self.lock:
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                yield self.conn
                await self.conn.execute("COMMIT")
            except BaseException:
                # Also after a cancelled BEGIN or COMMIT: the shared connection must not stay
                # inside a transaction; a failing rollback does not hide the first error.
                if self.conn.in_transaction:
                    with contextlib.suppress(aiosqlite.Error):
                        await self.conn.execute("ROLLBACK")
                raise

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        """Migrate (idempotent) and connect.

        Raises:
            StorageUnavailableError: The file cannot be opened or migrated.
        """
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
            raise errors.StorageUnavailableError(f"SQLite store unavailable: {exc}") from None
        return cls(conn, path)

    async def close(self) -> None:
        """Close the connection."""
        await self.conn.close()
