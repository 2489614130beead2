"""A PostgreSQL database a disaster-recovery drill may fill with a restored backup and empty again.

A drill restores production data (PHI) into the scratch database it is given, and removes it
afterwards. A database URL is only a string: the wrong one (another environment's database, an
unrelated application's) would be migrated and filled, and a cleanup that drops tables would
destroy what it holds. So before anything is written, :func:`claim_scratch_database` requires
the database to be either completely empty (no table, view or sequence in any schema) or marked
as a drill's by the table :data:`MARKER`, which it creates in an empty database. Everything else
in a marked database is the drill's own: :func:`clear_scratch_database` drops it all (tables,
views, sequences and functions of the current schema; the marker stays), whatever state a
drill left it in: a restore undone or not, twins compared, a drill killed half-way. Dropping,
unlike deleting the rows the import loaded, cannot be refused by rows a later step added.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from storage.postgres.database import unavailable
from twin import errors

__all__ = ["MARKER", "claim_scratch_database", "clear_scratch_database"]

#: The table that marks a database as a drill's scratch database (it holds one row: why).
MARKER = "novamind_drill_scratch"

# Relations in every schema but the server's own: r table, p partitioned table, v view,
# m materialized view, f foreign table, S sequence.
_RELATIONS = """
SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
"""


async def _connect(dsn: str) -> Any:
    try:
        return await asyncpg.connect(dsn, timeout=5.0, command_timeout=60.0)
    except Exception as exc:
        if unavailable(exc):
            raise errors.StorageUnavailableError(
                f"scratch database unavailable: {type(exc).__name__}"
            ) from None
        raise


async def _marked(conn: Any) -> tuple[bool, list[Any]]:
    """Whether the marker is in the current schema, and every other relation."""
    schema = await conn.fetchval("SELECT current_schema()")
    if schema is None:
        raise errors.ConfigurationError("scratch database: the role has no current schema")
    found = await conn.fetch(_RELATIONS)
    marked = any(r["schema"] == schema and r["name"] == MARKER for r in found)
    others = [r for r in found if not (r["schema"] == schema and r["name"] == MARKER)]
    return marked, others


async def _drop_all_but_marker(conn: Any) -> None:
    """In one transaction: views, tables, sequences and functions of the current schema."""
    schema = await conn.fetchval("SELECT current_schema()")
    async with conn.transaction():
        for kinds, what in (
            ("v", "VIEW"),
            ("m", "MATERIALIZED VIEW"),
            ("f", "FOREIGN TABLE"),
            ("rp", "TABLE"),
            ("S", "SEQUENCE"),  # those a table owned went with it
        ):
            _, others = await _marked(conn)
            names = [
                _qualified(r["schema"], r["name"])
                for r in others
                if r["schema"] == schema and r["kind"] in kinds
            ]
            if names:
                await conn.execute(f"DROP {what} IF EXISTS {', '.join(names)} CASCADE")
        functions = await conn.fetch(
            "SELECT p.oid::regprocedure::text AS signature FROM pg_catalog.pg_proc p "
            "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 "
            # An extension's functions are the extension's, not the drill's.
            "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
            "WHERE d.objid = p.oid AND d.deptype = 'e')",
            schema,
        )
        for row in functions:  # the audit trail's append-only trigger function
            await conn.execute(f"DROP FUNCTION IF EXISTS {row['signature']} CASCADE")


def _qualified(schema: str, name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


async def claim_scratch_database(dsn: str) -> None:
    """Make sure ``dsn`` is a drill's scratch database, and leave nothing in it but the marker.

    An empty database (no relation in any schema) is marked as the drill's; a marked one is
    emptied of whatever an earlier drill left (one that was killed before it cleaned up).

    Raises:
        ConfigurationError: The database holds relations and no marker (it is not a drill's:
            nothing is written to it), or a marked one holds relations outside the current
            schema (not the drill's).
        StorageUnavailableError: The database cannot be reached.
    """
    conn = await _connect(dsn)
    try:
        marked, others = await _marked(conn)
        if not marked and others:
            raise errors.ConfigurationError(
                f"the scratch database holds {len(others)} table(s) or other relation(s) and "
                f"no {MARKER} table: it is not a drill's scratch database, and nothing is "
                "written to it; name an empty database"
            )
        schema = await conn.fetchval("SELECT current_schema()")
        foreign = sorted({r["schema"] for r in others if r["schema"] != schema})
        if foreign:
            raise errors.ConfigurationError(
                f"the scratch database holds relations in schema(s) {', '.join(foreign)}: not "
                "the drill's; name a database that holds nothing else"
            )
        if not marked:
            await conn.execute(
                f"CREATE TABLE {MARKER} (note text NOT NULL, "
                "created_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute(
                f"INSERT INTO {MARKER} (note) VALUES ($1)",
                "novamind dr-drill restores backups here and drops everything else after",
            )
        else:
            await _drop_all_but_marker(conn)
    finally:
        await conn.close()


async def clear_scratch_database(dsn: str) -> None:
    """Drop everything in a marked scratch database but the marker.

    Raises:
        ConfigurationError: The database holds no marker (it is not a drill's): nothing is
            dropped.
        StorageUnavailableError: The database cannot be reached.
    """
    conn = await _connect(dsn)
    try:
        marked, _ = await _marked(conn)
        if not marked:
            raise errors.ConfigurationError(
                f"the scratch database holds no {MARKER} table: nothing of it is dropped"
            )
        await _drop_all_but_marker(conn)
    finally:
        await conn.close()
