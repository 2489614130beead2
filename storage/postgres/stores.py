"""PostgreSQL adapters of :class:`twin.ports.EventStore` and :class:`twin.ports.DataKeyStore`.

Appends lock the patients' head rows (an upsert that returns them, in patient order) so
concurrent writers for one patient serialise in the database, whatever process they run in; the
batch is written with ``COPY`` and committed with ``synchronous_commit = on`` before the call
returns (the acknowledgement). ``append_many`` does this for many patients in one transaction:
bulk ingest pays one commit per group of patients rather than one per patient. Payloads are
sealed (patient, ``"event"``, sequence) like the
SQLite adapter's. Server or network failures surface as
:class:`twin.errors.StorageUnavailableError` within the pool's timeout (retryable).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from storage.postgres.database import PostgresDatabase, connection
from twin import errors, event_log, patient_registry, ports
from twin.domain import events
from twin.domain.audit import AuditEntry, AuditRecord, chain, check_writable, record_from_json
from twin.domain.patients import ERASED, Identifiers, new_patient_id

__all__ = [
    "PostgresAuditLog",
    "PostgresDataKeyStore",
    "PostgresDocumentStore",
    "PostgresEventStore",
    "PostgresPatientRegistry",
    "PostgresTwinIndex",
]


async def _lock_heads(conn: Any, patient_ids: list[str]) -> dict[str, tuple[int, float]]:
    """Create the patients' head rows if needed and lock them for the transaction.

    One round trip; rows are locked in patient order, as every writer does, so two writers
    never wait on each other in a cycle. Returns ``patient -> (last_seq, last_day)``.
    """
    rows = await conn.fetch(
        "INSERT INTO patient_heads AS h (patient_id, last_seq, last_day) "
        "SELECT p, 0, 0 FROM unnest($1::text[]) AS p ORDER BY p "
        "ON CONFLICT (patient_id) DO UPDATE SET last_seq = h.last_seq "
        "RETURNING patient_id, last_seq, last_day",
        sorted(patient_ids),
    )
    return {str(r["patient_id"]): (int(r["last_seq"]), float(r["last_day"])) for r in rows}


async def _known_keys(
    conn: Any, patient_ids: list[str], keys: list[list[str]]
) -> dict[str, dict[str, int]]:
    """``patient -> key -> seq`` of the given keys already in the log (one round trip)."""
    rows = await conn.fetch(
        "SELECT e.patient_id, e.idempotency_key, e.seq FROM events AS e "
        "JOIN unnest($1::text[], $2::text[]) AS k (patient_id, idempotency_key) "
        "USING (patient_id, idempotency_key)",
        [patient_id for patient_id, ks in zip(patient_ids, keys, strict=True) for _ in ks],
        [key for ks in keys for key in ks],
    )
    known: dict[str, dict[str, int]] = {}
    for r in rows:
        known.setdefault(str(r["patient_id"]), {})[str(r["idempotency_key"])] = int(r["seq"])
    return known


class PostgresEventStore:
    """The event log in PostgreSQL."""

    def __init__(self, db: PostgresDatabase, sealer: ports.Sealer) -> None:
        self._db = db
        self._sealer = sealer

    async def append(
        self, patient_id: str, batch: Sequence[ports.NewEvent]
    ) -> list[ports.AppendResult]:
        """Append atomically and durably; idempotent per key; refuses older events."""
        (result,) = await self.append_many([(patient_id, batch)])
        if isinstance(result, errors.EventOrderError | errors.KeyAccessError):
            raise result
        return result

    async def append_many(
        self, batches: Sequence[tuple[str, Sequence[ports.NewEvent]]]
    ) -> list[list[ports.AppendResult] | ports.AppendRefusal]:
        """Every patient's batch in one transaction, one ``COPY`` and one durable commit."""
        event_log.check_batches(batches)
        if not batches:
            return []
        keys = [sorted({item.idempotency_key for item in batch}) for _, batch in batches]
        results: list[list[ports.AppendResult] | ports.AppendRefusal] = []
        async with connection(self._db) as conn, conn.transaction():
            heads = await _lock_heads(conn, [patient_id for patient_id, _ in batches])
            # The erasure tombstone, read under a share lock on the registry rows: an erasure
            # (which updates the row before it shreds the key) waits for this transaction, or
            # this transaction sees it and writes (and seals) nothing for that patient.
            erased = {
                str(r["patient_id"])
                for r in await conn.fetch(
                    "SELECT patient_id, erased_at FROM patients WHERE patient_id = ANY($1) "
                    "ORDER BY patient_id FOR SHARE",
                    [patient_id for patient_id, _ in batches],
                )
                if r["erased_at"] is not None
            }
            if erased:
                # Locking created their head rows again: nothing of an erased patient stays.
                await conn.execute(
                    "DELETE FROM patient_heads WHERE patient_id = ANY($1)", sorted(erased)
                )
            known = await _known_keys(conn, [patient_id for patient_id, _ in batches], keys)
            rows: list[tuple[str, int, str, float, bytes]] = []
            moved: list[tuple[str, int, float]] = []
            for patient_id, batch in batches:
                if patient_id in erased:
                    results.append(errors.KeyAccessError(ERASED))
                    continue
                head_seq, head_day = heads[patient_id]
                try:
                    result, planned = event_log.plan_append(
                        batch, known=known.get(patient_id, {}), head_seq=head_seq, head_day=head_day
                    )
                except errors.EventOrderError as exc:
                    results.append(exc)
                    continue
                results.append(result)
                rows += [
                    (patient_id, p.seq, p.idempotency_key, p.event.day,
                     await event_log.seal_event(self._sealer, patient_id, p))
                    for p in planned
                ]  # fmt: skip
                if planned:
                    moved.append((patient_id, planned[-1].seq, planned[-1].event.day))
            if rows:
                # COPY inside the transaction: the head-row locks already exclude racing
                # writers of these patients, and COPY is several times cheaper than INSERTs.
                await conn.copy_records_to_table(
                    "events",
                    records=rows,
                    columns=["patient_id", "seq", "idempotency_key", "day", "payload"],
                )
                await conn.execute(
                    "UPDATE patient_heads AS h SET last_seq = m.seq, last_day = m.day "
                    "FROM unnest($1::text[], $2::bigint[], $3::float8[]) "
                    "AS m (patient_id, seq, day) WHERE h.patient_id = m.patient_id",
                    *(list(column) for column in zip(*moved, strict=True)),
                )
        return results

    async def read(
        self, patient_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[events.Event]:
        """Events after ``after_seq`` (at most ``limit``), opened and validated."""
        async with connection(self._db) as conn:
            rows = await conn.fetch(
                "SELECT seq, day, payload FROM events WHERE patient_id = $1 AND seq > $2 "
                "ORDER BY seq LIMIT $3",
                patient_id,
                after_seq,
                limit,
            )
        return [
            await event_log.open_event(
                self._sealer, patient_id, int(r["seq"]), float(r["day"]), bytes(r["payload"])
            )
            for r in rows
        ]

    async def last_seq(self, patient_id: str) -> int:
        """The patient's latest sequence number."""
        async with connection(self._db) as conn:
            value = await conn.fetchval(
                "SELECT last_seq FROM patient_heads WHERE patient_id = $1", patient_id
            )
        return 0 if value is None else int(value)

    async def forget(self, patient_id: str) -> int:
        """Delete the patient's events and head row."""
        async with connection(self._db) as conn, conn.transaction():
            status = await conn.execute("DELETE FROM events WHERE patient_id = $1", patient_id)
            await conn.execute("DELETE FROM patient_heads WHERE patient_id = $1", patient_id)
        return int(str(status).split()[-1])


class PostgresDataKeyStore:
    """Wrapped per-patient data keys in PostgreSQL.

    Deleting a key marks its tuple dead; a ``VACUUM`` afterwards lets PostgreSQL reuse the space
    sooner. The wrapped blob is useless without the key-encryption key (KMS), which never
    leaves the key provider.
    """

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def get(self, patient_id: str) -> ports.WrappedKey | None:
        """The stored wrapped key, if any."""
        async with connection(self._db) as conn:
            row = await conn.fetchrow(
                "SELECT kek_id, blob FROM data_keys WHERE patient_id = $1", patient_id
            )
        return None if row is None else ports.WrappedKey(str(row["kek_id"]), bytes(row["blob"]))

    async def put_if_absent(self, patient_id: str, key: ports.WrappedKey) -> ports.WrappedKey:
        """Insert unless present; return what is stored (race-safe in one statement pair).

        Never for an erased patient (the registry's tombstone, read in the same statement):
        nothing sealed for them can be made readable again.

        Raises:
            KeyAccessError: The patient was erased.
        """
        async with connection(self._db) as conn:
            await conn.execute(
                "INSERT INTO data_keys (patient_id, kek_id, blob) SELECT $1, $2, $3 "
                "WHERE NOT EXISTS (SELECT 1 FROM patients WHERE patient_id = $1 "
                "AND erased_at IS NOT NULL) ON CONFLICT (patient_id) DO NOTHING",
                patient_id,
                key.kek_id,
                key.blob,
            )
        stored = await self.get(patient_id)
        if stored is None:  # erased, or deleted between the two statements
            raise errors.KeyAccessError(ERASED)
        return stored

    async def replace_if(
        self, patient_id: str, expected: ports.WrappedKey, new: ports.WrappedKey
    ) -> bool:
        """Swap in ``new`` while ``expected`` is stored.

        One UPDATE: it never re-creates a deleted row, and a concurrent DELETE or UPDATE of the
        row makes it re-check the condition on the row's latest version (READ COMMITTED).
        """
        async with connection(self._db) as conn:
            status = await conn.execute(
                "UPDATE data_keys SET kek_id = $2, blob = $3 "
                "WHERE patient_id = $1 AND kek_id = $4 AND blob = $5",
                patient_id,
                new.kek_id,
                new.blob,
                expected.kek_id,
                expected.blob,
            )
        return str(status) == "UPDATE 1"

    async def scan(self, *, after: str | None, limit: int) -> list[tuple[str, ports.WrappedKey]]:
        """A page of keys after ``after`` in patient-id order (the primary key's order)."""
        async with connection(self._db) as conn:
            if after is None:
                rows = await conn.fetch(
                    "SELECT patient_id, kek_id, blob FROM data_keys ORDER BY patient_id LIMIT $1",
                    max(limit, 1),
                )
            else:
                rows = await conn.fetch(
                    "SELECT patient_id, kek_id, blob FROM data_keys WHERE patient_id > $1 "
                    "ORDER BY patient_id LIMIT $2",
                    after,
                    max(limit, 1),
                )
        return [
            (str(r["patient_id"]), ports.WrappedKey(str(r["kek_id"]), bytes(r["blob"])))
            for r in rows
        ]

    async def count_by_kek(self) -> dict[str, int]:
        """Keys per key-encryption key."""
        async with connection(self._db) as conn:
            rows = await conn.fetch("SELECT kek_id, count(*) AS n FROM data_keys GROUP BY kek_id")
        return {str(r["kek_id"]): int(r["n"]) for r in rows}

    async def delete(self, patient_id: str) -> bool:
        """Destroy the key, then vacuum the table."""
        async with connection(self._db) as conn:
            status = await conn.execute("DELETE FROM data_keys WHERE patient_id = $1", patient_id)
            await conn.execute("VACUUM data_keys")
        return str(status).endswith(" 1")


_INDEX_COLUMNS = (
    "patient_id, last_seq, day, severity_mean, severity_sd, p_episode, p_severe, alert_flags, "
    "updated_at, record_start"
)


def _index_entry(row: Any) -> ports.IndexEntry:
    return ports.IndexEntry(
        str(row["patient_id"]), int(row["last_seq"]), int(row["day"]),
        float(row["severity_mean"]), float(row["severity_sd"]), float(row["p_episode"]),
        float(row["p_severe"]), tuple(row["alert_flags"]), float(row["updated_at"]),
        None if row["record_start"] is None else int(row["record_start"]),
    )  # fmt: skip


class PostgresTwinIndex:
    """Twin summaries in PostgreSQL (GIN index on the alert flags)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def delete(self, patient_id: str) -> bool:
        """Remove a twin's entry (erasure)."""
        async with connection(self._db) as conn:
            status = await conn.execute("DELETE FROM twin_index WHERE patient_id = $1", patient_id)
        return str(status) != "DELETE 0"

    async def upsert(self, entry: ports.IndexEntry) -> bool:
        """Insert or update unless the stored entry is newer.

        Derived data: committed with ``synchronous_commit = off`` for this transaction only (a
        crash may lose the newest updates, which the twin's next update repairs; the event log
        is committed with ``synchronous_commit = on``).
        """
        async with connection(self._db) as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit TO OFF")
            status = await conn.execute(
                f"INSERT INTO twin_index ({_INDEX_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                "ON CONFLICT (patient_id) DO UPDATE SET last_seq = excluded.last_seq, "
                "day = excluded.day, severity_mean = excluded.severity_mean, "
                "severity_sd = excluded.severity_sd, p_episode = excluded.p_episode, "
                "p_severe = excluded.p_severe, alert_flags = excluded.alert_flags, "
                "updated_at = excluded.updated_at, record_start = excluded.record_start "
                "WHERE excluded.last_seq >= twin_index.last_seq",
                entry.patient_id, entry.last_seq, entry.day, entry.severity_mean,
                entry.severity_sd, entry.p_episode, entry.p_severe, list(entry.alert_flags),
                entry.updated_at, entry.record_start,
            )  # fmt: skip
        return str(status).endswith(" 1")

    async def get(self, patient_id: str) -> ports.IndexEntry | None:
        """One twin's entry."""
        async with connection(self._db) as conn:
            row = await conn.fetchrow(
                f"SELECT {_INDEX_COLUMNS} FROM twin_index WHERE patient_id = $1", patient_id
            )
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
        async with connection(self._db) as conn:
            rows = await conn.fetch(
                f"SELECT {_INDEX_COLUMNS} FROM twin_index "
                "WHERE ($1::float8 IS NULL OR severity_mean >= $1) "
                "AND ($2::text IS NULL OR $2 = ANY(alert_flags)) "
                "AND ($3::text[] IS NULL OR patient_id = ANY($3)) "
                "AND ($4::float8 IS NULL OR updated_at >= $4) "
                "AND ($5::float8 IS NULL OR p_severe >= $5) "
                "ORDER BY severity_mean DESC, patient_id LIMIT $6",
                min_severity,
                alert,
                None if patient_ids is None else list(patient_ids),
                updated_since,
                min_p_severe,
                limit,
            )
        return [_index_entry(r) for r in rows]


class PostgresAuditLog:
    """The hash-chained audit trail in PostgreSQL.

    Appends lock the single ``audit_head`` row, so the chain has one writer at a time across all
    processes; triggers and revoked privileges refuse UPDATE, DELETE and TRUNCATE.
    """

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def append(self, record: AuditRecord) -> AuditEntry:
        """Chain and insert one record."""
        (entry,) = await self.append_many([record])
        return entry

    async def append_many(self, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        """Chain and insert in one transaction."""
        if not records:
            return []
        for record in records:  # before the transaction: a refused record opens none
            check_writable(record)
        async with connection(self._db) as conn, conn.transaction():
            head = await conn.fetchrow("SELECT seq, hash FROM audit_head FOR UPDATE")
            new = chain(str(head["hash"]), int(head["seq"]), records)
            await conn.executemany(
                "INSERT INTO audit_log (seq, record, prev_hash, hash) VALUES ($1, $2, $3, $4)",
                [
                    (e.seq, json.dumps(asdict(e.record), sort_keys=True), e.prev_hash, e.hash)
                    for e in new
                ],
            )
            await conn.execute(
                "UPDATE audit_head SET seq = $1, hash = $2", new[-1].seq, new[-1].hash
            )
        return new

    async def entries(self, *, after_seq: int = 0, limit: int = 10_000) -> list[AuditEntry]:
        """Entries in chain order."""
        async with connection(self._db) as conn:
            rows = await conn.fetch(
                "SELECT seq, record::text AS record, prev_hash, hash FROM audit_log "
                "WHERE seq > $1 ORDER BY seq LIMIT $2",
                after_seq,
                limit,
            )
        return [
            AuditEntry(
                int(r["seq"]),
                record_from_json(r["record"]),
                str(r["prev_hash"]),
                str(r["hash"]),
            )
            for r in rows
        ]


async def _insert_links(conn: Any, patient_id: str, links: Sequence[str]) -> None:
    """Insert links in the open transaction; one another patient holds refuses them all.

    In sorted order: two transactions linking the same identifiers lock them in one order, so
    they wait for each other instead of deadlocking.
    """
    for link in sorted(set(links)):
        holder = await conn.fetchval(
            "INSERT INTO patient_links (link, patient_id) VALUES ($1, $2) "
            "ON CONFLICT (link) DO UPDATE SET link = EXCLUDED.link RETURNING patient_id",
            link,
            patient_id,
        )
        if holder != patient_id:
            raise errors.IdentifierTakenError("an identifier already names another patient")


class PostgresPatientRegistry:
    """The patient registry in PostgreSQL (identifiers sealed)."""

    def __init__(self, db: PostgresDatabase, sealer: ports.Sealer) -> None:
        self._db = db
        self._sealer = sealer

    async def create(
        self, identifiers: Identifiers, *, care_team: str, links: Sequence[str] = ()
    ) -> str:
        """Register with ``links`` in one transaction; returns the new opaque id."""
        patient_id = new_patient_id()
        sealed = await patient_registry.seal_identifiers(self._sealer, patient_id, identifiers)
        async with connection(self._db) as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO patients (patient_id, care_team, identifiers) VALUES ($1, $2, $3)",
                patient_id,
                care_team,
                sealed,
            )
            await _insert_links(conn, patient_id, links)
        return patient_id

    async def find(self, links: Sequence[str]) -> dict[str, str]:
        """Live patients named by ``links``: link -> patient id."""
        async with connection(self._db) as conn:
            rows = await conn.fetch(
                "SELECT l.link, l.patient_id FROM patient_links l JOIN patients p "
                "ON p.patient_id = l.patient_id WHERE p.erased_at IS NULL "
                "AND l.link = ANY($1::text[])",
                list(dict.fromkeys(links)),
            )
        return {str(r["link"]): str(r["patient_id"]) for r in rows}

    async def link(
        self, patient_id: str, links: Sequence[str], *, identifiers: Identifiers
    ) -> None:
        """Add links to a live patient and store its identifiers with them (one transaction)."""
        sealed = await patient_registry.seal_identifiers(self._sealer, patient_id, identifiers)
        async with connection(self._db) as conn, conn.transaction():
            # The row update locks it: an erasure (which deletes the links) waits, or is seen.
            live = await conn.fetchval(
                "UPDATE patients SET identifiers = $2 WHERE patient_id = $1 "
                "AND erased_at IS NULL RETURNING 1",
                patient_id,
                sealed,
            )
            if live is None:
                raise errors.KeyAccessError(ERASED)
            await _insert_links(conn, patient_id, links)

    async def _row(self, patient_id: str) -> Any:
        async with connection(self._db) as conn:
            return await conn.fetchrow(
                "SELECT care_team, identifiers, erased_at FROM patients WHERE patient_id = $1",
                patient_id,
            )

    async def identifiers(self, patient_id: str) -> Identifiers:
        """Open the patient's identifiers."""
        row = await self._row(patient_id)
        if row is None:
            raise errors.InvalidInputError("no such patient")
        if row["erased_at"] is not None:
            raise errors.KeyAccessError("the patient was erased")
        return await patient_registry.open_identifiers(
            self._sealer, patient_id, bytes(row["identifiers"])
        )

    async def care_team(self, patient_id: str) -> str | None:
        """The care team of a live patient."""
        row = await self._row(patient_id)
        return None if row is None or row["erased_at"] is not None else str(row["care_team"])

    async def list_for_team(
        self, care_team: str, *, after: str | None = None, limit: int = 100
    ) -> list[str]:
        """Live patients of a team in id order, after ``after``."""
        async with connection(self._db) as conn:
            rows = await conn.fetch(
                "SELECT patient_id FROM patients WHERE care_team = $1 AND erased_at IS NULL "
                "AND patient_id > $2 ORDER BY patient_id LIMIT $3",
                care_team,
                after or "",
                limit,
            )
        return [str(r["patient_id"]) for r in rows]

    async def erase(self, patient_id: str) -> bool:
        """Mark the patient erased, then shred the data key.

        In that order, a write that checks the registry after this call begins finds the
        patient erased, and no data key can be created for them again (``put_if_absent``).
        """
        if await self._row(patient_id) is None:
            return False
        async with connection(self._db) as conn, conn.transaction():
            await conn.execute(
                # The row stays as the tombstone (id, team, time); the sealed identifiers go
                # (also from a tombstone written before they were blanked).
                "UPDATE patients SET erased_at = coalesce(erased_at, now()), "
                "identifiers = ''::bytea WHERE patient_id = $1",
                patient_id,
            )
            await conn.execute("DELETE FROM patient_links WHERE patient_id = $1", patient_id)
        await self._sealer.shred(patient_id)
        return True


def _document(row: Any) -> ports.Document:
    return ports.Document(
        str(row["collection"]),
        str(row["doc_id"]),
        row["patient_id"],
        bytes(row["body"]),
        float(row["created_at"]),
    )


_DOCUMENT_COLUMNS = "collection, doc_id, patient_id, body, created_at"


class PostgresDocumentStore:
    """Documents in PostgreSQL (when no MongoDB is configured)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def put(self, document: ports.Document) -> None:
        """Insert or replace (committed when this returns)."""
        async with connection(self._db) as conn:
            await conn.execute(
                f"INSERT INTO documents ({_DOCUMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (collection, doc_id) DO UPDATE SET patient_id = EXCLUDED.patient_id,"
                " body = EXCLUDED.body, created_at = EXCLUDED.created_at",
                document.collection,
                document.doc_id,
                document.patient_id,
                document.body,
                document.created_at,
            )

    async def get(self, collection: str, doc_id: str) -> ports.Document | None:
        """One document, or ``None``."""
        async with connection(self._db) as conn:
            row = await conn.fetchrow(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE collection = $1 AND doc_id = $2",
                collection,
                doc_id,
            )
        return None if row is None else _document(row)

    async def scan(
        self, *, after: tuple[str, str] | None = None, limit: int = 1000
    ) -> list[ports.Document]:
        """Every document in ``(collection, doc_id)`` order, after the keyset cursor."""
        collection, doc_id = after or ("", "")
        async with connection(self._db) as conn:
            rows = await conn.fetch(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE (collection, doc_id) > ($1, $2) "
                "ORDER BY collection, doc_id LIMIT $3",
                collection,
                doc_id,
                limit,
            )
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
        async with connection(self._db) as conn:
            rows = await conn.fetch(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE collection = $1 "
                "AND ($2::text IS NULL OR patient_id = $2) AND doc_id > $3 "
                "ORDER BY doc_id LIMIT $4",
                collection,
                patient_id,
                after or "",
                limit,
            )
        return [_document(r) for r in rows]

    async def delete(self, collection: str, doc_id: str) -> bool:
        """Delete one document."""
        async with connection(self._db) as conn:
            status = await conn.execute(
                "DELETE FROM documents WHERE collection = $1 AND doc_id = $2", collection, doc_id
            )
        return bool(status != "DELETE 0")

    async def delete_patient(self, patient_id: str) -> int:
        """Delete a patient's documents."""
        async with connection(self._db) as conn:
            status = await conn.execute("DELETE FROM documents WHERE patient_id = $1", patient_id)
        return int(status.split()[-1])
