"""The SQLite store as a whole: a consistent export and an all-or-nothing import (backups).

Export runs in one read transaction: in WAL mode its first read fixes the snapshot, so writers
may go on while every table is read as of one instant. Import checks the target is empty and
inserts everything in one ``BEGIN IMMEDIATE`` transaction, so a failed import leaves nothing.
Undoing an import (its restore failed later) deletes every row in one transaction, the audit
trail's append-only triggers dropped and created again inside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from storage.sqlite.database import SqliteDatabase
from twin import errors, ports

__all__ = ["SqliteSnapshot"]

#: Application tables and their key order. Not here: yoyo's bookkeeping, and ``documents``
#: (backed up through the DocumentStore port, which may be MongoDB).
TABLES = {
    "patients": "patient_id",
    "patient_links": "link",
    "data_keys": "patient_id",
    "events": "patient_id, seq",
    "twin_index": "patient_id",
    "audit_log": "seq",
}


class SqliteSnapshot:
    """:class:`twin.ports.DatabaseSnapshot` over one SQLite database."""

    kind = "sqlite"

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def _columns(self, table: str) -> tuple[str, ...]:
        cursor = await self._db.conn.execute(f"PRAGMA table_info({table})")
        return tuple(str(row[1]) for row in await cursor.fetchall())

    async def patient_ids(self) -> list[str]:
        """Patients with a data key, sorted."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "SELECT patient_id FROM data_keys ORDER BY patient_id"
            )
            return [str(row[0]) for row in await cursor.fetchall()]

    async def export(self, *, batch_rows: int = 1000) -> AsyncIterator[ports.TableRows]:
        """Every table from one read snapshot."""
        async with self._db.locked():
            await self._db.conn.execute("BEGIN")
            try:
                for table, order in TABLES.items():
                    columns = await self._columns(table)
                    cursor = await self._db.conn.execute(
                        f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"
                    )
                    while rows := await cursor.fetchmany(batch_rows):
                        yield ports.TableRows(table, columns, [tuple(row) for row in rows])
            finally:
                await self._db.conn.execute("COMMIT")

    async def _count(self, table: str) -> int:
        cursor = await self._db.conn.execute(f"SELECT count(*) FROM {table}")
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def is_empty(self) -> bool:
        """True when every application table is empty."""
        async with self._db.locked():
            for table in TABLES:
                if await self._count(table):
                    return False
        return True

    async def import_all(self, batches: AsyncIterator[ports.TableRows]) -> dict[str, int]:
        """Insert every batch in one transaction; refuses a store that holds data."""
        counts = dict.fromkeys(TABLES, 0)
        async with self._db.locked():
            await self._db.conn.execute("BEGIN IMMEDIATE")
            try:
                for table in TABLES:
                    if await self._count(table):
                        raise errors.ConfigurationError(
                            f"restore needs an empty store; table {table} holds data"
                        )
                known = {table: await self._columns(table) for table in TABLES}
                async for batch in batches:
                    if batch.table not in known or not set(batch.columns) <= set(
                        known[batch.table]
                    ):
                        raise errors.ConfigurationError(
                            f"backup table {batch.table} {batch.columns} does not fit this store"
                        )
                    marks = ", ".join("?" * len(batch.columns))
                    await self._db.conn.executemany(
                        f"INSERT INTO {batch.table} ({', '.join(batch.columns)}) VALUES ({marks})",
                        batch.rows,
                    )
                    counts[batch.table] += len(batch.rows)
                await self._db.conn.execute("COMMIT")
            except BaseException:
                # Not a bare ROLLBACK: after a full disk SQLite may have rolled back already,
                # and "no transaction is active" would hide why the restore failed.
                await self._db.rollback()
                raise
        return counts

    async def undo_import(self, imported: Mapping[str, int]) -> None:
        """Delete every row the import loaded, in one transaction; refuses a store used since."""
        async with self._db.write() as conn:
            for table in TABLES:
                held, loaded = await self._count(table), int(imported.get(table, 0))
                if held > loaded or (table == "audit_log" and held != loaded):
                    raise errors.ConfigurationError(
                        f"table {table} holds {held} rows where the import loaded {loaded}: "
                        "the store was used since, so the import is not undone"
                    )
            # The audit trail's triggers refuse DELETE. SQLite cannot disable a trigger, but its
            # DDL is transactional: they are dropped and created again (from their own stored
            # SQL) inside this transaction, so no other connection ever sees them gone.
            cursor = await conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                ("audit_log",),
            )
            triggers = [(str(name), str(sql)) for name, sql in await cursor.fetchall()]
            for name, _ in triggers:
                await conn.execute(f'DROP TRIGGER "{name}"')
            for table in reversed(TABLES):  # patient_links before the patients they name
                await conn.execute(f"DELETE FROM {table}")
            for _, sql in triggers:
                await conn.execute(sql)
