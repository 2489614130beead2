"""A PostgreSQL connection pool with migrations and a durability check at start-up.

Why these libraries: ``asyncpg`` is the fastest asyncio driver (binary protocol, pipelined
``executemany``); ``yoyo-migrations`` applies the versioned SQL in ``migrations/`` (through
psycopg, its synchronous driver) and records what ran.

The service refuses to start unless the server is configured with ``fsync`` and
``full_page_writes`` on and ``synchronous_commit`` not ``off``: with any of them off, a committed
(acknowledged) event can be lost in a crash. Every connection also sets
``synchronous_commit = on`` for itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from storage.migrations import apply_migrations
from twin import errors

__all__ = ["PostgresDatabase", "connection", "unavailable"]

#: Driver failures that mean "the server cannot serve this now": mapped to a retryable error.
#: Refused and lost connections (SQLSTATE class 08); the server ending sessions (class 57, e.g.
#: 57P01 on a fast shutdown, a failover or pg_terminate_backend, and 57P03 while it starts);
#: the server out of resources (class 53: disk full, too many connections, out of memory); a
#: transaction rolled back for a serialization failure or a deadlock (class 40); a write sent
#: to a server that is read-only now (25006, a former primary after a switchover); and a pooled
#: connection caught between the server's goodbye and the socket closing, which asyncpg reports
#: as an interface or internal client error ("another operation is in progress"; the pool then
#: drops that connection). asyncpg's internal client errors also cover a statement cache made
#: stale by a schema change and no server of the wanted role (read-write) in a failover:
#: both pass on a retry.
_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.InternalClientError,
)
#: Interface errors that are the caller's: a value the driver cannot encode, a bad setting.
_NOT_UNAVAILABLE = (
    asyncpg.exceptions._base.DataError,  # exported under this name only
    asyncpg.exceptions.ClientConfigurationError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
)


def unavailable(exc: BaseException) -> bool:
    """Whether a driver failure means the server cannot serve this now (retry later)."""
    return isinstance(exc, _UNAVAILABLE) and not isinstance(exc, _NOT_UNAVAILABLE)


def _migrate(dsn: str) -> None:
    apply_migrations(dsn.replace("postgresql://", "postgresql+psycopg://", 1), "storage.postgres")


async def _init_connection(conn: Any) -> None:
    await conn.execute("SET synchronous_commit = on")


async def _init_read_only(conn: Any) -> None:
    # Every transaction of the session is read-only: the server refuses any write.
    await conn.execute("SET default_transaction_read_only = on")


class PostgresDatabase:
    """A migrated, durability-checked pool. Use :meth:`open`."""

    def __init__(self, pool: Any, *, timeout_s: float) -> None:
        self.pool = pool
        self.timeout_s = timeout_s

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout_s: float = 5.0,
        read_only: bool = False,
    ) -> PostgresDatabase:
        """Migrate, connect and verify durability settings.

        Args:
            dsn: The database.
            min_size: Connections kept open.
            max_size: Connections at most.
            timeout_s: Seconds a connection or a statement may take.
            read_only: Do not migrate, and make every session read-only (another
                environment's store, read by a disaster-recovery drill).

        Raises:
            StorageUnavailableError: The server cannot be reached.
            ConfigurationError: fsync, full_page_writes or synchronous_commit is off.
        """
        try:
            if not read_only:
                await asyncio.to_thread(_migrate, dsn)
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=timeout_s,
                timeout=timeout_s,
                init=_init_read_only if read_only else _init_connection,
            )
        except Exception as exc:
            if unavailable(exc):
                raise errors.StorageUnavailableError(
                    f"PostgreSQL unavailable: {type(exc).__name__}"
                ) from None
            if "connect" in str(exc).lower():  # yoyo/psycopg connection failures
                raise errors.StorageUnavailableError("PostgreSQL unavailable") from None
            raise
        db = cls(pool, timeout_s=timeout_s)
        try:
            await db.check_durability()
        except BaseException:
            await pool.close()
            raise
        return db

    async def check_durability(self) -> None:
        """Refuse settings under which an acknowledged commit could be lost."""
        async with self.pool.acquire(timeout=self.timeout_s) as conn:
            # reset_val: the server's configured value, not this session's SET.
            rows = await conn.fetch(
                "SELECT name, reset_val FROM pg_settings "
                "WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit')"
            )
        settings = {str(r["name"]): str(r["reset_val"]) for r in rows}
        unsafe = [
            name
            for name, value in settings.items()
            if (value == "off" if name == "synchronous_commit" else value != "on")
        ]
        if unsafe:
            raise errors.ConfigurationError(
                f"PostgreSQL would lose acknowledged data: {', '.join(unsafe)} must be on"
            )

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.close()


@asynccontextmanager
async def connection(db: PostgresDatabase) -> AsyncIterator[Any]:
    """A pooled connection of ``db``, for every statement the adapters run.

    Raises:
        StorageUnavailableError: The server cannot be reached, or stopped answering (within the
            pool's timeout, ``db.timeout_s``): retryable.
    """
    try:
        async with db.pool.acquire(timeout=db.timeout_s) as conn:
            yield conn
    except Exception as exc:
        if not unavailable(exc):
            raise
        raise errors.StorageUnavailableError(
            f"PostgreSQL unavailable ({type(exc).__name__}); retry"
        ) from None
