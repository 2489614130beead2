"""AuditLog contract: a verifiable chain; the stores refuse updates and deletes."""

import asyncio

import pytest

from twin.domain.audit import AuditRecord, verify_chain


def record(i: int) -> AuditRecord:
    return AuditRecord(f"u{i}", "clinician", "twin.read", f"p{i}", "allowed", "treatment",
                       "2026-11-29T01:00:00Z", f"r{i}")  # fmt: skip


async def test_appends_form_a_verifiable_chain(audit_log):
    for i in range(5):
        entry = await audit_log.append(record(i))
        assert entry.seq == i + 1
    await asyncio.gather(*(audit_log.append(record(i)) for i in range(5, 15)))
    entries = await audit_log.entries()
    assert [e.seq for e in entries] == list(range(1, 16))
    assert verify_chain(entries).ok
    assert [e.seq for e in await audit_log.entries(after_seq=10, limit=2)] == [11, 12]
    assert entries[0].record == record(0)


async def test_group_appends_chain_in_order_in_one_call(audit_log):
    await audit_log.append(record(0))
    assert await audit_log.append_many([]) == []
    group = await audit_log.append_many([record(i) for i in range(1, 4)])
    assert [e.seq for e in group] == [2, 3, 4]
    assert [e.record for e in group] == [record(i) for i in range(1, 4)]
    entries = await audit_log.entries()
    assert entries[1:] == group and verify_chain(entries).ok


async def test_group_commit_batches_concurrent_requests(audit_log):
    from deployments.api.audit_batch import GroupCommitAuditLog

    calls: list[int] = []
    original = audit_log.append_many

    async def counted(records):
        calls.append(len(records))
        return await original(records)

    audit_log.append_many = counted
    batched = GroupCommitAuditLog(audit_log)
    entries = await asyncio.gather(*(batched.append(record(i)) for i in range(40)))
    assert [e.seq for e in entries] == list(range(1, 41))  # each caller gets its own entry
    assert sum(calls) == 40 and len(calls) < 40  # fewer transactions than appends
    assert verify_chain(await batched.entries()).ok


async def test_sqlite_refuses_changes_and_detects_tampering_behind_its_back(sqlite_db):
    import aiosqlite

    from storage.sqlite import SqliteAuditLog

    log = SqliteAuditLog(sqlite_db)
    for i in range(6):
        await log.append(record(i))
    for statement in (
        "UPDATE audit_log SET hash = 'x' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 3",
    ):
        with pytest.raises(aiosqlite.Error, match="append-only"):
            await sqlite_db.conn.execute(statement)
    # Someone with the file drops the trigger and edits an entry: verification finds it.
    await sqlite_db.conn.execute("DROP TRIGGER audit_log_no_update")
    await sqlite_db.conn.execute(
        "UPDATE audit_log SET record = replace(record, 'allowed', 'denied') WHERE seq = 4"
    )
    report = verify_chain(await log.entries())
    assert not report.ok and report.first_bad_seq == 4


async def test_postgres_refuses_update_delete_truncate(postgres_server):
    import uuid

    import asyncpg

    from storage.postgres import PostgresAuditLog, PostgresDatabase

    db = await PostgresDatabase.open(postgres_server.create_database(f"a_{uuid.uuid4().hex[:10]}"))
    log = PostgresAuditLog(db)
    for i in range(4):
        await log.append(record(i))
    async with db.pool.acquire() as conn:
        for statement in (
            "UPDATE audit_log SET hash = 'x'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute(statement)
    assert verify_chain(await log.entries()).ok
    await db.close()
