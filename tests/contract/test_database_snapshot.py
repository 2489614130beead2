"""DatabaseSnapshot contract (SQLite, PostgreSQL): export, import when empty, refuse, undo."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from storage.local import LocalKeyProvider
from storage.postgres import (
    PostgresAuditLog,
    PostgresDataKeyStore,
    PostgresEventStore,
    PostgresPatientRegistry,
    PostgresSnapshot,
    PostgresTwinIndex,
)
from storage.sealed import EnvelopeSealer
from storage.sqlite import (
    SqliteAuditLog,
    SqliteDatabase,
    SqliteDataKeyStore,
    SqliteEventStore,
    SqlitePatientRegistry,
    SqliteSnapshot,
    SqliteTwinIndex,
)
from tests.contract.conftest import _postgres
from twin import errors, ports
from twin.domain import events as E
from twin.domain.audit import AuditRecord
from twin.domain.patients import Identifiers

ADAPTERS: dict[str, Any] = {
    "sqlite": (SqliteSnapshot, SqliteEventStore, SqliteDataKeyStore, SqlitePatientRegistry,
               SqliteAuditLog, SqliteTwinIndex),
    "postgres": (PostgresSnapshot, PostgresEventStore, PostgresDataKeyStore,
                 PostgresPatientRegistry, PostgresAuditLog, PostgresTwinIndex),
}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
async def databases(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, Any, Any]]:
    if request.param == "sqlite":
        source = await SqliteDatabase.open(tmp_path / "a.db")
        target = await SqliteDatabase.open(tmp_path / "b.db")
    else:
        source: Any = await _postgres(request)  # type: ignore[no-redef]
        target = await _postgres(request)
    yield request.param, source, target
    await source.close()
    await target.close()


async def _fill(kind: str, db: Any, keys: LocalKeyProvider) -> list[str]:
    _, events_cls, data_keys_cls, registry_cls, audit_cls, index_cls = ADAPTERS[kind]
    sealer = EnvelopeSealer(keys, data_keys_cls(db))
    registry, events, audit = registry_cls(db, sealer), events_cls(db, sealer), audit_cls(db)
    pids = []
    for i in range(3):
        pid = await registry.create(
            Identifiers(f"N{i}", "1970-01-01", f"M{i}", None), care_team="t"
        )
        await events.append(pid, [ports.NewEvent(f"k{i}-{j}", j, E.Phq9(5 + j)) for j in range(4)])
        await audit.append(AuditRecord("u", "admin", "x", pid, "allowed", "t", "2026-01-01", "r"))
        await index_cls(db).upsert(
            ports.IndexEntry(pid, 4, 3, 9.5, 2.0, 0.3, 0.1, ("rising",), 1.7e9)
        )
        pids.append(pid)
    return pids


async def _rows(snapshot: Any) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    async for batch in snapshot.export(batch_rows=2):
        out.setdefault(batch.table, []).extend(batch.rows)
    return out


async def _replay(batches: Sequence[ports.TableRows]) -> AsyncIterator[ports.TableRows]:
    for batch in batches:
        yield batch


async def test_export_import_round_trip_and_refusals(databases, tmp_path):
    kind, source_db, target_db = databases
    snapshot_cls = ADAPTERS[kind][0]
    source, target = snapshot_cls(source_db), snapshot_cls(target_db)
    assert source.kind == kind and await source.is_empty()
    pids = await _fill(kind, source_db, LocalKeyProvider(tmp_path / "keys"))
    assert not await source.is_empty()
    assert await source.patient_ids() == sorted(pids)
    batches = [b async for b in source.export(batch_rows=2)]
    assert {b.table for b in batches} >= {"patients", "data_keys", "events", "audit_log"}
    assert all(len(b.rows) <= 2 for b in batches)
    # An unknown column rolls the whole import back.
    bad = [*batches, ports.TableRows("events", ("patient_id", "no_such_column"), [("p", 1)])]
    with pytest.raises(errors.ConfigurationError, match="does not fit"):
        await target.import_all(_replay(bad))
    assert await target.is_empty()
    counts = await target.import_all(_replay(batches))
    assert counts["events"] == 12 and counts["patients"] == 3
    assert await _rows(target) == await _rows(source)
    assert await target.patient_ids() == sorted(pids)
    with pytest.raises(errors.ConfigurationError, match="empty"):
        await target.import_all(_replay(batches))


async def _delete_audit_rows(kind: str, db: Any) -> None:
    """What the audit trail's triggers refuse (outside an undo): deleting its entries."""
    if kind == "sqlite":
        await db.conn.execute("DELETE FROM audit_log")
    else:
        async with db.pool.acquire() as conn:
            await conn.execute("DELETE FROM audit_log")


async def test_an_import_is_undone_whole_unless_the_store_was_used_since(databases, tmp_path):
    kind, source_db, target_db = databases
    snapshot_cls, _, _, _, audit_cls, _ = ADAPTERS[kind]
    source, target = snapshot_cls(source_db), snapshot_cls(target_db)
    await _fill(kind, source_db, LocalKeyProvider(tmp_path / "keys"))
    batches = [b async for b in source.export(batch_rows=2)]
    imported = await target.import_all(_replay(batches))
    # Undone: every table empty, the audit trail too (append-only as it otherwise is).
    await target.undo_import(imported)
    assert await target.is_empty() and await target.patient_ids() == []
    audit = audit_cls(target_db)
    assert await audit.entries() == []
    # The same import runs again into the emptied store.
    assert await target.import_all(_replay(batches)) == imported
    assert await _rows(target) == await _rows(source)
    # The audit trail's triggers are back: its entries cannot be deleted.
    with pytest.raises(Exception, match="append-only"):
        await _delete_audit_rows(kind, target_db)
    # A store used since the import (one more audit entry) is not emptied: nothing is deleted.
    await audit.append(AuditRecord("u", "admin", "x", None, "allowed", "t", "2026-01-02", "r"))
    with pytest.raises(errors.ConfigurationError, match="used since"):
        await target.undo_import(imported)
    rows = await _rows(target)
    assert len(rows["audit_log"]) == imported["audit_log"] + 1
    assert rows["events"] == (await _rows(source))["events"]
