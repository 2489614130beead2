"""SQLite adapters of :class:`twin.ports.EventStore` and :class:`twin.ports.DataKeyStore`.

Event payloads are stored sealed (:class:`twin.ports.Sealer`, bound to patient, ``"event"`` and
the sequence number), so the database file holds no readable clinical values and erasing a
patient's data key makes their log unreadable too.

Appends for one patient are serialised in this process; across processes, the write transaction
(``BEGIN IMMEDIATE``) re-checks the patient's last sequence and retries the plan if another
writer got in first.

Every statement runs under :meth:`SqliteDatabase.locked` or :meth:`SqliteDatabase.write`, so a
full disk is :class:`twin.errors.StorageFullError` and an unusable file
:class:`twin.errors.StorageUnavailableError` from every adapter here (both retryable).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import aiosqlite

from storage.sqlite.database import SqliteDatabase, raise_storage_error
from twin import errors, event_log, patient_registry, ports
from twin.domain import events
from twin.domain.audit import (
    GENESIS,
    AuditEntry,
    AuditRecord,
    chain,
    check_writable,
    record_from_json,
)
from twin.domain.patients import ERASED, Identifiers, new_patient_id

__all__ = [
    "SqliteAuditLog",
    "SqliteDataKeyStore",
    "SqliteDocumentStore",
    "SqliteEventStore",
    "SqlitePatientRegistry",
    "SqliteTwinIndex",
]

_RETRIES = 5


class SqliteEventStore:
    """The event log in SQLite."""

    def __init__(self, db: SqliteDatabase, sealer: ports.Sealer) -> None:
        self._db = db
        self._sealer = sealer
        self._patient_locks: dict[str, asyncio.Lock] = {}

    async def _head(self, patient_id: str) -> tuple[int, float]:
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "SELECT seq, day FROM events WHERE patient_id = ? ORDER BY seq DESC LIMIT 1",
                (patient_id,),
            )
            row = await cursor.fetchone()
        return (0, 0.0) if row is None else (int(row[0]), float(row[1]))

    async def _known_keys(self, patient_id: str, keys: list[str]) -> dict[str, int]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                f"SELECT idempotency_key, seq FROM events "
                f"WHERE patient_id = ? AND idempotency_key IN ({marks})",
                (patient_id, *keys),
            )
            rows = await cursor.fetchall()
        return {str(k): int(s) for k, s in rows}

    async def append(
        self, patient_id: str, batch: Sequence[ports.NewEvent]
    ) -> list[ports.AppendResult]:
        """Append atomically; idempotent per key; refuses events older than the log's head."""
        keys = [event_log.check_idempotency_key(item.idempotency_key) for item in batch]
        lock = self._patient_locks.setdefault(patient_id, asyncio.Lock())
        async with lock:
            for _ in range(_RETRIES):
                head_seq, head_day = await self._head(patient_id)
                known = await self._known_keys(patient_id, sorted(set(keys)))
                results, planned = event_log.plan_append(
                    batch, known=known, head_seq=head_seq, head_day=head_day
                )
                rows = [
                    (patient_id, p.seq, p.idempotency_key, p.event.day,
                     await event_log.seal_event(self._sealer, patient_id, p))
                    for p in planned
                ]  # fmt: skip
                if not rows:
                    return results
                if await self._commit(patient_id, head_seq, rows):
                    return results
            raise errors.StorageUnavailableError("event log kept changing under this writer; retry")

    async def append_many(
        self, batches: Sequence[tuple[str, Sequence[ports.NewEvent]]]
    ) -> list[list[ports.AppendResult] | ports.AppendRefusal]:
        """Each batch alone (SQLite has one writer at a time; local development)."""
        return await event_log.append_each(self, batches)

    async def _commit(
        self, patient_id: str, head_seq: int, rows: list[tuple[str, int, str, float, bytes]]
    ) -> bool:
        conn = self._db.conn
        async with self._db.locked():
            try:
                await conn.execute("BEGIN IMMEDIATE")
                cursor = await conn.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM events WHERE patient_id = ?", (patient_id,)
                )
                row = await cursor.fetchone()
                if row is None or int(row[0]) != head_seq:
                    await conn.execute("ROLLBACK")
                    return False
                # The erasure tombstone, in the write transaction itself (SQLite has one
                # writer). Sealing before it cannot re-create an erased patient's key either:
                # the key store refuses that (``put_if_absent``).
                cursor = await conn.execute(
                    "SELECT 1 FROM patients WHERE patient_id = ? AND erased_at IS NOT NULL",
                    (patient_id,),
                )
                if await cursor.fetchone() is not None:
                    await conn.execute("ROLLBACK")
                    raise errors.KeyAccessError(ERASED)
                await conn.executemany(
                    "INSERT INTO events (patient_id, seq, idempotency_key, day, payload) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                await conn.execute("COMMIT")
            except BaseException as exc:
                # Also when cancelled mid-transaction: the shared connection must not stay
                # inside it (every later BEGIN would fail).
                await self._db.rollback()
                if not isinstance(exc, aiosqlite.Error):
                    raise
                # A full disk says so (StorageFullError), a file that cannot be used now is
                # retryable (nothing of the batch was kept, and its keys make a retry safe); a
                # damaged file or a violated constraint stays what it is: an incident.
                raise_storage_error(exc)
        return True

    async def read(
        self, patient_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[events.Event]:
        """Events after ``after_seq`` (at most ``limit``), opened and validated."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "SELECT seq, day, payload FROM events WHERE patient_id = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (patient_id, after_seq, -1 if limit is None else limit),
            )
            rows = await cursor.fetchall()
        return [
            await event_log.open_event(
                self._sealer, patient_id, int(seq), float(day), bytes(sealed)
            )
            for seq, day, sealed in rows
        ]

    async def last_seq(self, patient_id: str) -> int:
        """The patient's latest sequence number."""
        return (await self._head(patient_id))[0]

    async def forget(self, patient_id: str) -> int:
        """Delete the patient's events (overwritten on disk: ``secure_delete``)."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "DELETE FROM events WHERE patient_id = ?", (patient_id,)
            )
            return int(cursor.rowcount)


class SqliteDataKeyStore:
    """Wrapped per-patient data keys in SQLite (deleted rows are overwritten: secure_delete)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def get(self, patient_id: str) -> ports.WrappedKey | None:
        """The stored wrapped key, if any."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "SELECT kek_id, blob FROM data_keys WHERE patient_id = ?", (patient_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else ports.WrappedKey(str(row[0]), bytes(row[1]))

    async def put_if_absent(self, patient_id: str, key: ports.WrappedKey) -> ports.WrappedKey:
        """Insert unless present; return what is stored.

        Never for an erased patient (the registry's tombstone, read in the same statement):
        nothing sealed for them can be made readable again.

        Raises:
            KeyAccessError: The patient was erased.
        """
        async with self._db.locked():
            await self._db.conn.execute(
                "INSERT OR IGNORE INTO data_keys (patient_id, kek_id, blob) SELECT ?, ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM patients WHERE patient_id = ? "
                "AND erased_at IS NOT NULL)",
                (patient_id, key.kek_id, key.blob, patient_id),
            )
        stored = await self.get(patient_id)
        if stored is None:  # erased, or deleted between the two statements
            raise errors.KeyAccessError(ERASED)
        return stored

    async def replace_if(
        self, patient_id: str, expected: ports.WrappedKey, new: ports.WrappedKey
    ) -> bool:
        """Swap in ``new`` while ``expected`` is stored (one UPDATE: never re-creates a row)."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "UPDATE data_keys SET kek_id = ?, blob = ? "
                "WHERE patient_id = ? AND kek_id = ? AND blob = ?",
                (new.kek_id, new.blob, patient_id, expected.kek_id, expected.blob),
            )
            return cursor.rowcount == 1

    async def scan(self, *, after: str | None, limit: int) -> list[tuple[str, ports.WrappedKey]]:
        """A page of keys after ``after`` in patient-id order (the primary key's order)."""
        async with self._db.locked():
            if after is None:
                cursor = await self._db.conn.execute(
                    "SELECT patient_id, kek_id, blob FROM data_keys ORDER BY patient_id LIMIT ?",
                    (max(limit, 1),),
                )
            else:
                cursor = await self._db.conn.execute(
                    "SELECT patient_id, kek_id, blob FROM data_keys WHERE patient_id > ? "
                    "ORDER BY patient_id LIMIT ?",
                    (after, max(limit, 1)),
                )
            rows = await cursor.fetchall()
        return [(str(r[0]), ports.WrappedKey(str(r[1]), bytes(r[2]))) for r in rows]

    async def count_by_kek(self) -> dict[str, int]:
        """Keys per key-encryption key."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "SELECT kek_id, count(*) FROM data_keys GROUP BY kek_id"
            )
            rows = await cursor.fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    async def delete(self, patient_id: str) -> bool:
        """Destroy the key and flush the WAL so no copy of it stays on disk."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "DELETE FROM data_keys WHERE patient_id = ?", (patient_id,)
            )
            deleted = cursor.rowcount > 0
            await self._db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted


_INDEX_COLUMNS = (
    "patient_id, last_seq, day, severity_mean, severity_sd, p_episode, p_severe, alert_flags, "
    "updated_at, record_start"
)


def _index_row(entry: ports.IndexEntry) -> tuple[object, ...]:
    flags = "," + ",".join(entry.alert_flags) + "," if entry.alert_flags else ""
    return (
        entry.patient_id, entry.last_seq, entry.day, entry.severity_mean, entry.severity_sd,
        entry.p_episode, entry.p_severe, flags, entry.updated_at, entry.record_start,
    )  # fmt: skip


def _index_entry(row: Any) -> ports.IndexEntry:
    flags = tuple(f for f in str(row[7]).split(",") if f)
    return ports.IndexEntry(
        str(row[0]), int(row[1]), int(row[2]), float(row[3]), float(row[4]),
        float(row[5]), float(row[6]), flags, float(row[8]),
        None if row[9] is None else int(row[9]),
    )  # fmt: skip


class SqliteTwinIndex:
    """Twin summaries in SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def upsert(self, entry: ports.IndexEntry) -> bool:
        """Insert or update unless the stored entry is newer.

        The index is derived data: its writes do not wait for the disk (``synchronous=NORMAL``
        for this statement only). A crash may lose the newest updates; the twin's next update
        repairs its entry, and the event log, written with ``synchronous=FULL``, is the truth.
        """
        async with self._db.locked():
            await self._db.conn.execute("PRAGMA synchronous=NORMAL")
            try:
                cursor = await self._upsert(entry)
            finally:
                await self._db.conn.execute("PRAGMA synchronous=FULL")
            return bool(cursor.rowcount > 0)

    async def delete(self, patient_id: str) -> bool:
        """Remove a twin's entry (erasure)."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "DELETE FROM twin_index WHERE patient_id = ?", (patient_id,)
            )
            return bool(cursor.rowcount > 0)

    async def _upsert(self, entry: ports.IndexEntry) -> Any:
        return await self._db.conn.execute(
            f"INSERT INTO twin_index ({_INDEX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (patient_id) DO UPDATE SET last_seq = excluded.last_seq, "
            "day = excluded.day, severity_mean = excluded.severity_mean, "
            "severity_sd = excluded.severity_sd, p_episode = excluded.p_episode, "
            "p_severe = excluded.p_severe, alert_flags = excluded.alert_flags, "
            "updated_at = excluded.updated_at, record_start = excluded.record_start "
            "WHERE excluded.last_seq >= twin_index.last_seq",
            _index_row(entry),
        )

    async def get(self, patient_id: str) -> ports.IndexEntry | None:
        """One twin's entry."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                f"SELECT {_INDEX_COLUMNS} FROM twin_index WHERE patient_id = ?", (patient_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else _index_entry(row)

    async def search(
        self,
        *,
        min_severity: float | None = None,
        alert: str | None = None,
        patient_ids: Sequence[str] | None = None,
        updated_since: float | None = None,
        min_p_severe: float | None = None,
        limit: int = 100,
    ) -> list[ports.IndexEntry]:
        """Filter by severity, alert flag, scope, update time and risk; most severe first."""
        scope = None if patient_ids is None else json.dumps(list(patient_ids))
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                f"SELECT {_INDEX_COLUMNS} FROM twin_index "
                "WHERE (? IS NULL OR severity_mean >= ?) AND (? IS NULL OR alert_flags LIKE ?) "
                "AND (? IS NULL OR patient_id IN (SELECT value FROM json_each(?))) "
                "AND (? IS NULL OR updated_at >= ?) AND (? IS NULL OR p_severe >= ?) "
                "ORDER BY severity_mean DESC, patient_id LIMIT ?",
                (
                    min_severity,
                    min_severity,
                    alert,
                    f"%,{alert},%",
                    scope,
                    scope,
                    updated_since,
                    updated_since,
                    min_p_severe,
                    min_p_severe,
                    limit,
                ),
            )
            rows = await cursor.fetchall()
        return [_index_entry(r) for r in rows]


def _audit_entry(seq: Any, record: Any, prev: Any, digest: Any) -> AuditEntry:
    return AuditEntry(int(seq), record_from_json(record), str(prev), str(digest))


class SqliteAuditLog:
    """The hash-chained audit trail in SQLite (triggers refuse updates and deletes)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def append(self, record: AuditRecord) -> AuditEntry:
        """Chain and insert one record."""
        (entry,) = await self.append_many([record])
        return entry

    async def append_many(self, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        """Chain and insert in one write transaction (appends are serialised)."""
        if not records:
            return []
        for record in records:  # before BEGIN: a refused record leaves no transaction open
            check_writable(record)
        conn = self._db.conn
        async with self._db.locked():
            try:
                await conn.execute("BEGIN IMMEDIATE")
                cursor = await conn.execute(
                    "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
                )
                row = await cursor.fetchone()
                last, prev = (0, GENESIS) if row is None else (int(row[0]), str(row[1]))
                new = chain(prev, last, records)
                await conn.executemany(
                    "INSERT INTO audit_log (seq, record, prev_hash, hash) VALUES (?, ?, ?, ?)",
                    [
                        (e.seq, json.dumps(asdict(e.record), sort_keys=True), e.prev_hash, e.hash)
                        for e in new
                    ],
                )
                await conn.execute("COMMIT")
            except BaseException as exc:
                await self._db.rollback()  # as in the event append
                if not isinstance(exc, aiosqlite.Error):
                    raise
                raise_storage_error(exc)
        return new

    async def entries(self, *, after_seq: int = 0, limit: int = 10_000) -> list[AuditEntry]:
        """Entries in chain order."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "SELECT seq, record, prev_hash, hash FROM audit_log WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            rows = await cursor.fetchall()
        return [_audit_entry(*row) for row in rows]


class SqlitePatientRegistry:
    """The patient registry in SQLite (identifiers sealed)."""

    def __init__(self, db: SqliteDatabase, sealer: ports.Sealer) -> None:
        self._db = db
        self._sealer = sealer

    async def create(
        self, identifiers: Identifiers, *, care_team: str, links: Sequence[str] = ()
    ) -> str:
        """Register with ``links`` in one transaction; returns the new opaque id."""
        patient_id = new_patient_id()
        sealed = await patient_registry.seal_identifiers(self._sealer, patient_id, identifiers)
        async with self._db.write() as conn:
            await conn.execute(
                "INSERT INTO patients (patient_id, care_team, identifiers) VALUES (?, ?, ?)",
                (patient_id, care_team, sealed),
            )
            await self._insert_links(patient_id, links)
        return patient_id

    async def _insert_links(self, patient_id: str, links: Sequence[str]) -> None:
        """Insert links in the open transaction; one another patient holds refuses them all."""
        conn = self._db.conn
        for link in sorted(set(links)):
            cursor = await conn.execute(
                "SELECT patient_id FROM patient_links WHERE link = ?", (link,)
            )
            row = await cursor.fetchone()
            if row is not None and str(row[0]) != patient_id:
                raise errors.IdentifierTakenError("an identifier already names another patient")
            if row is None:
                await conn.execute(
                    "INSERT INTO patient_links (link, patient_id) VALUES (?, ?)", (link, patient_id)
                )

    async def find(self, links: Sequence[str]) -> dict[str, str]:
        """Live patients named by ``links``: link -> patient id."""
        wanted = list(dict.fromkeys(links))
        found: dict[str, str] = {}
        async with self._db.locked():
            for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                chunk = wanted[start : start + 500]
                cursor = await self._db.conn.execute(
                    "SELECT l.link, l.patient_id FROM patient_links l JOIN patients p "
                    "ON p.patient_id = l.patient_id WHERE p.erased_at IS NULL AND l.link IN "
                    f"({', '.join('?' * len(chunk))})",
                    chunk,
                )
                found.update((str(r[0]), str(r[1])) for r in await cursor.fetchall())
        return found

    async def link(
        self, patient_id: str, links: Sequence[str], *, identifiers: Identifiers
    ) -> None:
        """Add links to a live patient and store its identifiers with them (one transaction)."""
        sealed = await patient_registry.seal_identifiers(self._sealer, patient_id, identifiers)
        async with self._db.write() as conn:
            cursor = await conn.execute(
                "UPDATE patients SET identifiers = ? WHERE patient_id = ? AND erased_at IS NULL",
                (sealed, patient_id),
            )
            if cursor.rowcount != 1:
                raise errors.KeyAccessError(ERASED)
            await self._insert_links(patient_id, links)

    async def _row(self, patient_id: str) -> Any:
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "SELECT care_team, identifiers, erased_at FROM patients WHERE patient_id = ?",
                (patient_id,),
            )
            return await cursor.fetchone()

    async def identifiers(self, patient_id: str) -> Identifiers:
        """Open the patient's identifiers."""
        row = await self._row(patient_id)
        if row is None:
            raise errors.InvalidInputError("no such patient")
        if row[2] is not None:
            raise errors.KeyAccessError("the patient was erased")
        return await patient_registry.open_identifiers(self._sealer, patient_id, bytes(row[1]))

    async def care_team(self, patient_id: str) -> str | None:
        """The care team of a live patient."""
        row = await self._row(patient_id)
        return None if row is None or row[2] is not None else str(row[0])

    async def list_for_team(
        self, care_team: str, *, after: str | None = None, limit: int = 100
    ) -> list[str]:
        """Live patients of a team in id order, after ``after``."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "SELECT patient_id FROM patients WHERE care_team = ? AND erased_at IS NULL "
                "AND patient_id > ? ORDER BY patient_id LIMIT ?",
                (care_team, after or "", limit),
            )
            rows = await cursor.fetchall()
        return [str(r[0]) for r in rows]

    async def erase(self, patient_id: str) -> bool:
        """Mark the patient erased, then shred the data key (see the PostgreSQL registry)."""
        if await self._row(patient_id) is None:
            return False
        # One transaction: links are never left on an erased patient (they would keep the
        # identifiers taken for ever).
        async with self._db.write() as conn:
            await conn.execute(
                # The row stays as the tombstone (id, team, time); the sealed identifiers go
                # (also from a tombstone written before they were blanked).
                "UPDATE patients SET erased_at = coalesce(erased_at, "
                "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), identifiers = X'' WHERE patient_id = ?",
                (patient_id,),
            )
            await conn.execute("DELETE FROM patient_links WHERE patient_id = ?", (patient_id,))
        await self._sealer.shred(patient_id)
        return True


def _document(row: Any) -> ports.Document:
    return ports.Document(str(row[0]), str(row[1]), row[2], bytes(row[3]), float(row[4]))


class SqliteDocumentStore:
    """Documents in SQLite (the embedded default of :class:`twin.ports.DocumentStore`)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def put(self, document: ports.Document) -> None:
        """Insert or replace."""
        async with self._db.locked():
            await self._db.conn.execute(
                "INSERT OR REPLACE INTO documents "
                "(collection, doc_id, patient_id, body, created_at) VALUES (?, ?, ?, ?, ?)",
                (
                    document.collection,
                    document.doc_id,
                    document.patient_id,
                    document.body,
                    document.created_at,
                ),
            )

    async def get(self, collection: str, doc_id: str) -> ports.Document | None:
        """One document, or ``None``."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "SELECT collection, doc_id, patient_id, body, created_at FROM documents "
                "WHERE collection = ? AND doc_id = ?",
                (collection, doc_id),
            )
            row = await cursor.fetchone()
        return None if row is None else _document(row)

    async def scan(
        self, *, after: tuple[str, str] | None = None, limit: int = 1000
    ) -> list[ports.Document]:
        """Every document in ``(collection, doc_id)`` order, after the keyset cursor."""
        collection, doc_id = after or ("", "")
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "SELECT collection, doc_id, patient_id, body, created_at FROM documents "
                "WHERE (collection, doc_id) > (?, ?) ORDER BY collection, doc_id LIMIT ?",
                (collection, doc_id, limit),
            )
            rows = await cursor.fetchall()
        return [_document(r) for r in rows]

    async def list(
        self,
        collection: str,
        *,
        patient_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[ports.Document]:
        """Documents in ``doc_id`` order."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "SELECT collection, doc_id, patient_id, body, created_at FROM documents "
                "WHERE collection = ? AND (? IS NULL OR patient_id = ?) AND doc_id > ? "
                "ORDER BY doc_id LIMIT ?",
                (collection, patient_id, patient_id, after or "", limit),
            )
            rows = await cursor.fetchall()
        return [_document(r) for r in rows]

    async def delete(self, collection: str, doc_id: str) -> bool:
        """Delete one document."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "DELETE FROM documents WHERE collection = ? AND doc_id = ?", (collection, doc_id)
            )
        return bool(cursor.rowcount)

    async def delete_patient(self, patient_id: str) -> int:
        """Delete a patient's documents."""
        async with self._db.locked():
            cursor = await self._db.conn.execute(
                "DELETE FROM documents WHERE patient_id = ?", (patient_id,)
            )
        return int(cursor.rowcount)
