"""``make up`` seeds the demo patients once, however often it runs (``seed_demo_patients``).

Each run is a fresh API process on the same embedded stores (as each ``make up`` is), seeding
through the SDK over real HTTP. What the stores hold is counted row by row, table by table,
leaving out only the audit trail (every run's reads are audited, by design) and the migration
tool's bookkeeping.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from deployments.asgi import build_app
from deployments.ops.platform import DEMO_TEAM, seed_demo_patients
from tests.integration.conftest import api_settings, bearer
from tests.servers import UvicornServer
from twin.client import Client

#: Tables whose growth on a second run is intended (audit) or not the application's (yoyo).
NOT_COUNTED = {"audit_log", "yoyo_lock", "_yoyo_log", "_yoyo_version", "_yoyo_migration"}


def _seed(data_dir: Path, state_file: Path) -> tuple[list[str], list[str]]:
    """One ``make up`` seeding: a new API process on ``data_dir``; ids seeded, ids of the team."""
    server = UvicornServer(build_app(api_settings(data_dir)))
    server.start(timeout_s=30)
    try:
        token = bearer("clinician", "demo", (DEMO_TEAM,))["Authorization"].split()[1]
        with Client(server.url, token=token) as api:
            seeded = seed_demo_patients(api, state_file, progress=lambda _: None)
            return seeded, sorted(api.iter_patients(DEMO_TEAM))
    finally:
        server.stop()


def _counts(data_dir: Path) -> dict[str, int]:
    with sqlite3.connect(data_dir / "novamind.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {
            table: db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            for table in tables
            if table not in NOT_COUNTED
        }
    db.close()
    return counts


def test_seeding_twice_creates_nothing_twice_even_when_the_ids_file_is_lost(tmp_path):
    data, state = tmp_path / "data", tmp_path / "data" / "demo" / "patients.json"
    pids, team = _seed(data, state)
    first = _counts(data)
    assert len(pids) == 3 and sorted(pids) == team
    assert first["patients"] == 3 and first["events"] > 1000  # eight weeks of three courses

    assert _seed(data, state) == (pids, team)  # again: nothing new
    assert _counts(data) == first

    # A run stopped after registering the second and third patients, before it wrote their
    # ids (Ctrl-C while seeding, or an answer lost on the way), leaves a file naming only the
    # first: the next run finds the others in the registry instead of registering them again.
    state.write_text(json.dumps({"DEMO-0001": pids[0]}))
    assert _seed(data, state) == (pids, team)
    assert _counts(data) == first
    assert set(json.loads(state.read_text()).values()) == set(pids)  # remembered again

    state.unlink()  # a new data folder against stores that hold them (a shared database)
    assert _seed(data, state) == (pids, team)
    assert _counts(data) == first
