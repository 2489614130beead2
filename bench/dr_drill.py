"""Disaster-recovery drill at a size: backup and restore times, embedded and PostgreSQL.

``python -m bench.dr_drill [--patients N] [--events E]``: builds an environment of N patients
with E events each (assimilated by a TwinHost with the default 2000 particles, every twin
checkpointed, a third of them with events after their checkpoint), backs it up with
``novamind backup``'s code, restores into an empty environment, and checks that sampled twins
are equal byte for byte. Runs on SQLite (local checkpoints) and on PostgreSQL (Debian's server,
started here) with local checkpoints. The last line is one JSON object; the contract it is read
against is RTO 4 h / RPO 1 h (docs/operations.md), and its ratio ``restore_s_per_1k_events``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from deployments.host_ports import build_host_ports
from deployments.ops.backup import backup, restore
from tests.servers import PostgresServer
from twin.domain import events as E
from twin.ports import NewEvent
from twin.service.host import TwinHost
from twin.settings import TwinSettings


async def _populate(settings: TwinSettings, patients: int, events: int) -> list[str]:
    rng = random.Random(7)
    stores = await build_host_ports(settings)
    try:
        host = TwinHost(stores, settings=settings.host)
        pids = [f"pt_{i:06d}" for i in range(patients)]
        for pid in pids:
            batch = [
                NewEvent(f"{pid}-{j}", j * 1.0, E.Phq9(rng.randint(0, 27))) for j in range(events)
            ]
            await host.ingest(pid, batch)
            await host.passivate(pid)
        for pid in pids[::3]:  # events after the checkpoint: the restore replays them
            await host.ingest(pid, [NewEvent(f"{pid}-late", events * 1.0, E.Gad7(9))])
        return pids
    finally:
        await stores.aclose()


async def _states(settings: TwinSettings, pids: list[str]) -> list[bytes]:
    stores = await build_host_ports(settings)
    try:
        host = TwinHost(stores, settings=settings.host)
        return [(await host.state(pid)).to_bytes() for pid in pids]
    finally:
        await stores.aclose()


async def _drill(
    source: TwinSettings, target: TwinSettings, archive: Path, n: int, e: int
) -> dict[str, Any]:
    started = time.perf_counter()
    pids = await _populate(source, n, e)
    populate_s = time.perf_counter() - started
    made = await backup(source, archive)
    shutil.copytree(source.data_dir / "keys", target.data_dir / "keys")  # the KEK's escrow
    restored = await restore(target, archive)
    sample = pids[:: max(1, n // 20)]
    equal = await _states(source, sample) == await _states(target, sample)
    events_total = made.tables.get("events", 0)
    return {
        "events": events_total,
        "checkpoints": made.checkpoints,
        "archive_mib": round(made.bytes / 2**20, 2),
        "populate_s": round(populate_s, 1),
        "backup_s": round(made.seconds, 3),
        "restore_s": round(restored.seconds, 3),
        "restore_s_per_1k_events": round(1000 * restored.seconds / max(events_total, 1), 4),
        "twins_equal": equal,
        "audit_verified": restored.audit_head == made.audit_head,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()
    results: dict[str, Any] = {"patients": args.patients, "events_per_patient": args.events}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results["sqlite"] = asyncio.run(
            _drill(
                TwinSettings(data_dir=root / "a"),
                TwinSettings(data_dir=root / "b"),
                root / "archive-sqlite",
                args.patients,
                args.events,
            )
        )
        print("sqlite", results["sqlite"], flush=True)
        pg = PostgresServer()
        pg.start()
        try:
            results["postgres"] = asyncio.run(
                _drill(
                    TwinSettings(data_dir=root / "c", database_url=pg.create_database("dr_a")),
                    TwinSettings(data_dir=root / "d", database_url=pg.create_database("dr_b")),
                    root / "archive-postgres",
                    args.patients,
                    args.events,
                )
            )
        finally:
            pg.destroy()
        print("postgres", results["postgres"], flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
