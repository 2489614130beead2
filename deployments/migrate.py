"""``python -m deployments.migrate``: apply the schema migrations and exit.

Migrations also run at start-up (idempotently); this command lets operators apply them ahead of
a deployment. With ``NOVAMIND_DATABASE_URL`` unset, the embedded SQLite file in the data
directory is migrated.
"""

from __future__ import annotations

import asyncio
import os
import sys

from storage.postgres import PostgresDatabase
from storage.sqlite import SqliteDatabase
from twin.settings import TwinSettings


async def _run() -> str:
    url = os.environ.get("NOVAMIND_DATABASE_URL")
    if url:
        pg = await PostgresDatabase.open(url)
        await pg.close()
        return "PostgreSQL"
    path = TwinSettings().data_dir / "novamind.db"
    db = await SqliteDatabase.open(path)
    await db.close()
    return f"SQLite at {path}"


def main() -> int:
    """Apply migrations; print where."""
    print(f"migrations applied: {asyncio.run(_run())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
