"""Schema migrations on open: a lock a killed process left behind stops nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from storage.sqlite import SqliteDatabase


async def test_a_lock_left_by_a_killed_process_does_not_stop_the_next_start(tmp_path: Path):
    path = tmp_path / "novamind.db"
    await (await SqliteDatabase.open(path)).close()  # migrated
    # A host killed while it held the migration lock (found by SIGKILL tests): its row stays.
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, '2026-01-01', 1)")

    reopened = await asyncio.wait_for(SqliteDatabase.open(path), timeout=10)

    await reopened.close()
