"""The PostgreSQL store as a whole: a consistent export and an all-or-nothing import (backups).

Export reads every table inside one ``REPEATABLE READ, READ ONLY`` transaction (one snapshot;
writers carry on) through server-side cursors, so memory stays bounded. Import checks the
target is empty and loads everything with ``COPY`` in one transaction; the single
``audit_head`` row (created by the migration) is updated rather than inserted. Undoing an import
(its restore failed later) truncates every table and resets ``audit_head`` in one transaction,
the audit trail's append-only triggers set aside inside that transaction alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from storage.postgres.database import PostgresDatabase, connection
from twin import errors, ports
from twin.domain.audit import GENESIS

__all__ = ["PostgresSnapshot"]

#: Application tables and their key order. Not here: yoyo's bookkeeping, and ``documents``
#: (backed up through the DocumentStore port, which may be MongoDB).
TABLES = {
    "patients": "patient_id",
    "patient_links": "link",
    "data_keys": "patient_id",
    "patient_heads": "patient_id",
    "events": "patient_id, seq",
    "twin_index": "patient_id",
    "audit_log": "seq",
    "audit_head": "id",
}
_SINGLETONS = {"audit_head"}


class PostgresSnapshot:
    """:class:`twin.ports.DatabaseSnapshot` over one PostgreSQL database."""

    kind = "postgres"

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    @staticmethod
    async def _columns(conn: object, table: str) -> tuple[str, ...]:
        rows = await conn.fetch(  # type: ignore[attr-defined]
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            table,
        )
        return tuple(str(r["column_name"]) for r in rows)

    async def patient_ids(self) -> list[str]:
        """Patients with a data key, sorted."""
        async with connection(self._db) as conn:
            rows = await conn.fetch("SELECT patient_id FROM data_keys ORDER BY patient_id")
        return [str(r["patient_id"]) for r in rows]

    async def export(self, *, batch_rows: int = 1000) -> AsyncIterator[ports.TableRows]:
        """Every table from one snapshot."""
        async with (
            connection(self._db) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            for table, order in TABLES.items():
                columns = await self._columns(conn, table)
                cursor = await conn.cursor(
                    f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"
                )
                while rows := await cursor.fetch(batch_rows):
                    yield ports.TableRows(table, columns, [tuple(r.values()) for r in rows])

    async def is_empty(self) -> bool:
        """True when no table holds data and the audit head is the genesis."""
        async with connection(self._db) as conn:
            return await self._empty(conn)

    @staticmethod
    async def _empty(conn: object) -> bool:
        for table in TABLES:
            if table in _SINGLETONS:
                continue
            if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):  # type: ignore[attr-defined]
                return False
        seq = await conn.fetchval("SELECT seq FROM audit_head")  # type: ignore[attr-defined]
        return bool(seq == 0)

    async def import_all(self, batches: AsyncIterator[ports.TableRows]) -> dict[str, int]:
        """COPY every batch in one transaction; refuses a store that holds data."""
        counts = dict.fromkeys(TABLES, 0)
        async with (
            connection(self._db) as conn,
            conn.transaction(),
        ):
            # Serialise with the application's audit appends while checking emptiness.
            await conn.execute("LOCK TABLE audit_head, events, patients IN EXCLUSIVE MODE")
            if not await self._empty(conn):
                raise errors.ConfigurationError("restore needs an empty store; this one holds data")
            known = {table: await self._columns(conn, table) for table in TABLES}
            async for batch in batches:
                if batch.table not in known or not set(batch.columns) <= set(known[batch.table]):
                    raise errors.ConfigurationError(
                        f"backup table {batch.table} {batch.columns} does not fit this store"
                    )
                if batch.table in _SINGLETONS:
                    (row,) = batch.rows
                    values = dict(zip(batch.columns, row, strict=True))
                    await conn.execute(
                        "UPDATE audit_head SET seq = $1, hash = $2", values["seq"], values["hash"]
                    )
                else:
                    await conn.copy_records_to_table(
                        batch.table, records=batch.rows, columns=list(batch.columns)
                    )
                counts[batch.table] += len(batch.rows)
        return counts

    async def undo_import(self, imported: Mapping[str, int]) -> None:
        """Empty every table the import loaded, in one transaction; refuses one used since."""
        tables = [table for table in TABLES if table not in _SINGLETONS]
        async with connection(self._db) as conn, conn.transaction():
            # Nothing may write while the rows are counted and removed.
            await conn.execute(f"LOCK TABLE {', '.join(TABLES)} IN ACCESS EXCLUSIVE MODE")
            for table in tables:
                held = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
                loaded = int(imported.get(table, 0))
                if held > loaded or (table == "audit_log" and held != loaded):
                    raise errors.ConfigurationError(
                        f"table {table} holds {held} rows where the import loaded {loaded}: "
                        "the store was used since, so the import is not undone"
                    )
            # The audit trail's triggers refuse DELETE and TRUNCATE. Disabling them is part of
            # this transaction (DDL is transactional here, under the lock above): no other
            # session ever sees them off, and they are on again before it commits.
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
            await conn.execute(f"TRUNCATE {', '.join(tables)}")
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
            await conn.execute("UPDATE audit_head SET seq = 0, hash = $1", GENESIS)
