"""Ports: the narrow async interfaces the core owns, implemented by ``storage/`` adapters.

This module holds the ports (Protocols) and the value types they exchange, nothing else. The
rules that every adapter of a port follows live once beside it: :mod:`twin.event_log` (how
an append is planned and an event sealed), :mod:`twin.patient_registry` (how identifiers are
sealed), :mod:`twin.audit_log` (reading the chain whole) and :mod:`twin.domain.patients`
(what a patient id looks like).

- :class:`EventStore`: the truth. Append-only, per-patient sequence numbers, idempotency keys.
- :class:`CheckpointStore`: derived snapshots; never replaces a newer one with an older one.
- :class:`KeyProvider`: wraps and unwraps per-patient data keys with a key-encryption key.
- :class:`DataKeyStore`: where the wrapped data keys live; deleting one crypto-shreds a patient.
- :class:`Sealer`: envelope encryption of a patient's stored objects under their data key.
- :class:`ErasureLedger`: the erased patients, kept apart from everything a backup restores.
- :class:`TwinIndex`: searchable twin summaries (severity, risk, alerts), no identifiers.
- :class:`ChangeFeed`: best-effort twin-changed notifications and a summary cache.
- :class:`AuditLog`: the hash-chained, append-only audit trail.
- :class:`AuditAnchorStore`: heads of the audit chain, kept where its writers cannot reach.
- :class:`PatientRegistry`: patients, care teams, sealed identifiers and identifier links.
- :class:`DocumentStore`: documents by collection and id (reports, grants, jobs, prior sets).
- :class:`DatabaseSnapshot`: the relational store whole: consistent export, import when empty,
  and the undoing of an import whose restore failed later.
- :class:`PriorRegistry`: versioned population prior sets (read side of the model registry).

Every port but :class:`PriorRegistry` (implemented once, over the :class:`DocumentStore`, by
:class:`twin.service.priors.DocumentPriorRegistry`) has a contract suite in ``tests/contract/``
that runs on each of its adapters and on its in-memory implementation where there is one
(:mod:`twin.testing.fakes`; the change feed's is the embedded adapter, :mod:`storage.memory`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from twin import errors
from twin.domain import events
from twin.domain.audit import AnchorScan, AuditAnchor, AuditEntry, AuditRecord
from twin.domain.patients import Identifiers
from twin.model.priors import PriorSet

__all__ = [
    "AppendRefusal",
    "AppendResult",
    "AuditAnchorStore",
    "AuditLog",
    "ChangeFeed",
    "Checkpoint",
    "CheckpointStore",
    "DataKeyStore",
    "DatabaseSnapshot",
    "Document",
    "DocumentStore",
    "ErasureLedger",
    "EventStore",
    "IndexEntry",
    "KeyProvider",
    "NewEvent",
    "PatientRegistry",
    "PriorRegistry",
    "Sealer",
    "TableRows",
    "TwinIndex",
    "WrappedKey",
]


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: what happened and when, with the client's idempotency key.

    Attributes:
        idempotency_key: Client-chosen key (1..128 chars); a retry with the same key for the
            same patient returns the original sequence number and appends nothing.
        day: Time, days since the twin's origin.
        payload: What happened.
    """

    idempotency_key: str
    day: float
    payload: events.Payload


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The acknowledged sequence number of one appended event.

    Attributes:
        seq: Per-patient sequence number (1, 2, ...).
        duplicate: True when the idempotency key had been seen: nothing new was appended.
    """

    seq: int
    duplicate: bool


#: Why :meth:`EventStore.append_many` refused one patient's batch (the others stand).
AppendRefusal = errors.EventOrderError | errors.KeyAccessError


@runtime_checkable
class EventStore(Protocol):
    """Append-only per-patient event log (the truth; RPO 0 for acknowledged events)."""

    async def append(self, patient_id: str, batch: Sequence[NewEvent]) -> list[AppendResult]:
        """Durably append ``batch`` in order; return once committed (the acknowledgement).

        Raises:
            EventOrderError: An event is older than the patient's latest event.
            KeyAccessError: The patient was erased (checked in the append's own transaction
                where the store keeps the registry: an erasure and an append never interleave).
            StorageUnavailableError: The store cannot be reached (retryable).
        """
        ...

    async def append_many(
        self, batches: Sequence[tuple[str, Sequence[NewEvent]]]
    ) -> list[list[AppendResult] | AppendRefusal]:
        """Append several patients' batches, each by :meth:`append`'s rules, in one go.

        Bulk writers use it to pay for one durable commit per group of patients instead of one
        per patient (adapters that cannot group commit each batch alone). A batch refused for
        its order, or because its patient was erased, writes nothing; the others are still
        appended.

        Args:
            batches: ``(patient_id, batch)`` pairs, one per patient.

        Returns:
            Per pair, in order: the batch's results, or the error that refused it
            (:data:`AppendRefusal`).

        Raises:
            InvalidInputError: A patient appears twice, or an idempotency key is invalid
                (``ObservationRangeError``); nothing is appended.
            StorageUnavailableError: The store cannot be reached (retryable; nothing of this
                call is acknowledged).
        """
        ...

    async def read(
        self, patient_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[events.Event]:
        """The patient's events with ``seq > after_seq``, in sequence order.

        ``limit`` caps how many are read (the first ones); ``None`` reads them all.
        """
        ...

    async def last_seq(self, patient_id: str) -> int:
        """The patient's latest sequence number (0 when none)."""
        ...

    async def forget(self, patient_id: str) -> int:
        """Delete an erased patient's events (erasure); returns how many.

        The payloads are sealed under a key erasure destroys; their idempotency keys (which
        clients may build from identifiers), days and sequence numbers are not, so the rows go.
        """
        ...


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A stored snapshot: opaque (encrypted) bytes valid as of event ``seq``."""

    patient_id: str
    seq: int
    model_version: str
    data: bytes


@runtime_checkable
class CheckpointStore(Protocol):
    """Derived snapshots of twin state, newest wins."""

    async def put(self, checkpoint: Checkpoint) -> bool:
        """Store ``checkpoint`` unless one with a higher or equal ``seq`` exists.

        Returns:
            True when written; False when a newer (or equal) checkpoint is already stored.
        """
        ...

    async def latest(self, patient_id: str) -> Checkpoint | None:
        """The newest intact checkpoint, or ``None``.

        Raises:
            CheckpointCorruptError: The newest stored object is damaged (never returned).
        """
        ...

    async def delete_all(self, patient_id: str) -> int:
        """Remove every checkpoint of a patient; returns how many were removed."""
        ...


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key encrypted under a key-encryption key.

    Attributes:
        kek_id: Which key-encryption key wrapped it (for rotation).
        blob: The wrapped key bytes.
    """

    kek_id: str
    blob: bytes


@runtime_checkable
class KeyProvider(Protocol):
    """Key-encryption keys: AWS KMS in production, a local key file embedded."""

    async def wrap(self, data_key: bytes, *, context: str) -> WrappedKey:
        """Encrypt a data key under the current key-encryption key, bound to ``context``."""
        ...

    async def unwrap(self, wrapped: WrappedKey, *, context: str) -> bytes:
        """Decrypt a data key.

        Raises:
            KeyAccessError: The blob was not wrapped for ``context`` or is damaged.
        """
        ...

    async def current_kek_id(self) -> str:
        """Identifier of the key-encryption key used by :meth:`wrap`."""
        ...


@runtime_checkable
class DataKeyStore(Protocol):
    """Per-patient wrapped data keys. Deleting a key makes the patient's ciphertext unreadable.

    Six methods rather than four: re-wrapping under a new key-encryption key needs the paged
    listing, the compare-and-swap and the per-KEK count, and belongs with the keys it changes.
    """

    async def get(self, patient_id: str) -> WrappedKey | None:
        """The patient's wrapped data key, or ``None``."""
        ...

    async def put_if_absent(self, patient_id: str, key: WrappedKey) -> WrappedKey:
        """Store ``key`` unless the patient has one; return the stored key (race-safe)."""
        ...

    async def replace_if(self, patient_id: str, expected: WrappedKey, new: WrappedKey) -> bool:
        """Swap the wrapped key for ``new`` only while the stored one still equals ``expected``.

        Rotation re-wraps (the data key itself is unchanged). The compare-and-swap is one atomic
        step, so a key destroyed meanwhile (the patient erased) is never written back, and a
        concurrent re-wrap is never overwritten.

        Returns:
            True when swapped; False when the key is gone or no longer ``expected``.
        """
        ...

    async def delete(self, patient_id: str) -> bool:
        """Destroy the patient's key (crypto-shredding); True when one existed."""
        ...

    async def scan(self, *, after: str | None, limit: int) -> list[tuple[str, WrappedKey]]:
        """A page of stored keys in patient-id order (keyset paging, for re-wrapping).

        Args:
            after: The last patient id of the previous page; ``None`` starts at the beginning.
            limit: Most rows returned (at least 1).

        Returns:
            ``(patient_id, key)`` pairs with ids greater than ``after``; fewer than ``limit``
            only at the end.
        """
        ...

    async def count_by_kek(self) -> dict[str, int]:
        """How many data keys each key-encryption key wraps (ids with none are absent)."""
        ...


@runtime_checkable
class Sealer(Protocol):
    """Envelope encryption of a patient's stored objects."""

    async def seal(self, patient_id: str, *, kind: str, version: int, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` under the patient's data key (created on first use).

        The associated data binds ``patient_id``, ``kind`` (e.g. ``"event"``, ``"checkpoint"``)
        and ``version`` (the event sequence), so a ciphertext moved elsewhere fails to open.
        """
        ...

    async def open(self, patient_id: str, *, kind: str, version: int, sealed: bytes) -> bytes:
        """Decrypt what :meth:`seal` produced for the same patient, kind and version.

        Raises:
            KeyAccessError: The patient's data key was destroyed or cannot be unwrapped.
            CheckpointCorruptError: The ciphertext was altered or belongs elsewhere.
        """
        ...

    async def shred(self, patient_id: str) -> bool:
        """Destroy the patient's data key: everything sealed for them becomes unreadable."""
        ...


@runtime_checkable
class ErasureLedger(Protocol):
    """The patients that were erased, kept apart from every store a backup restores.

    A backup holds wrapped data keys; restoring one would bring an erased patient's data back
    to life. The ledger lives with the key-encryption keys (the local key folder, or an object
    prefix replicated to the recovery region), never in a backup, and every restore erases
    again each patient it names before the service starts. It holds opaque patient ids only.
    """

    async def record(self, patient_id: str) -> None:
        """Note the patient as erased, durably, before anything of theirs is destroyed."""
        ...

    async def erased(self) -> list[str]:
        """Every erased patient id, sorted."""
        ...

    async def complete(self, patient_id: str) -> None:
        """Note that every place erased the patient (idempotent, durable)."""
        ...

    async def incomplete(self) -> list[str]:
        """Patients whose erasure began and was never marked complete, sorted."""
        ...


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """A searchable summary of one twin (no identifiers: keyed by the opaque patient id).

    Attributes:
        patient_id: Opaque patient id.
        last_seq: Last event the summary reflects.
        day: The twin's day.
        severity_mean: Posterior mean of latent severity, PHQ-9 points.
        severity_sd: Posterior SD of latent severity.
        p_episode: Posterior probability of a depressive episode.
        p_severe: Posterior probability that latent severity is >= 15 (moderately severe+).
        alert_flags: Rules that fired in the last 28 days, sorted.
        updated_at: Unix time of the update, seconds.
        record_start: Day of the twin's first event, whole days (research outputs count days
            from it); ``None`` for entries written before it was kept.
    """

    patient_id: str
    last_seq: int
    day: int
    severity_mean: float
    severity_sd: float
    p_episode: float
    p_severe: float
    alert_flags: tuple[str, ...]
    updated_at: float
    record_start: int | None = None


@runtime_checkable
class TwinIndex(Protocol):
    """Queryable twin summaries, updated as twins change (the basis for search)."""

    async def upsert(self, entry: IndexEntry) -> bool:
        """Store unless the stored entry reflects a later event; True when written."""
        ...

    async def get(self, patient_id: str) -> IndexEntry | None:
        """One twin's entry."""
        ...

    async def delete(self, patient_id: str) -> bool:
        """Remove a twin's entry (erasure); True when there was one."""
        ...

    async def search(
        self,
        *,
        min_severity: float | None = None,
        alert: str | None = None,
        patient_ids: Sequence[str] | None = None,
        updated_since: float | None = None,
        min_p_severe: float | None = None,
        limit: int = 100,
    ) -> list[IndexEntry]:
        """Entries by severity (``severity_mean >= min_severity``), alert flag and update time.

        ``updated_since`` is in Unix seconds; ``min_p_severe`` filters on the risk
        ``p_severe >= min_p_severe``.

        ``patient_ids`` restricts the search to those patients (a caller's scope). Most severe
        first, at most ``limit``.
        """
        ...


@runtime_checkable
class ChangeFeed(Protocol):
    """Twin-changed notifications and a summary cache.

    Best effort by design: a lost notification is recovered from the event log, so failures
    here never fail an ingest.
    """

    async def publish(self, patient_id: str, last_seq: int) -> None:
        """Announce that a twin reached ``last_seq``."""
        ...

    async def cache_summary(self, patient_id: str, data: bytes, *, ttl_s: int) -> None:
        """Cache a serialized summary."""
        ...

    async def cached_summary(self, patient_id: str) -> bytes | None:
        """A cached summary, or ``None`` (a miss)."""
        ...

    async def forget(self, patient_id: str) -> None:
        """Drop the patient's cached summary (erasure)."""
        ...


@runtime_checkable
class AuditLog(Protocol):
    """The hash-chained, append-only audit trail (see :mod:`twin.domain.audit`)."""

    async def append(self, record: AuditRecord) -> AuditEntry:
        """Durably append one record, chained to the newest entry."""
        ...

    async def append_many(self, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        """Durably append records in order, in one transaction (group commit)."""
        ...

    async def entries(self, *, after_seq: int = 0, limit: int = 10_000) -> list[AuditEntry]:
        """Entries in chain order."""
        ...


@runtime_checkable
class AuditAnchorStore(Protocol):
    """Anchors of the audit chain (:class:`~twin.domain.audit.AuditAnchor`), write-once.

    Kept apart from the database that holds the chain, where its writers cannot change them
    (S3 Object Lock in COMPLIANCE mode; locally an append-only, hash-linked file), so a chain
    rewritten and re-hashed whole is still caught (:func:`twin.audit_log.verify_audit_log`).
    """

    async def put(self, anchor: AuditAnchor) -> None:
        """Add an anchor durably; never overwrites or deletes an earlier one."""
        ...

    async def all(self) -> list[AuditAnchor]:
        """Every anchor, sorted by ``entries`` then ``at``.

        Raises:
            AuditAnchorCorruptError: A stored anchor is damaged, edited or was removed.
        """
        ...

    async def scan(self, *, min_entries: int = 0) -> AnchorScan:
        """The anchors of at least ``min_entries`` entries, and what is stored but unreadable.

        Unlike :meth:`all`, an item that is not an anchor does not hide the others: it is
        named (by its place, never its content) beside them. A store whose items are ordered
        by length reads only those from ``min_entries`` on (what anchoring needs: the latest),
        and may then list an anchor stored twice once.
        """
        ...


@runtime_checkable
class PatientRegistry(Protocol):
    """Patients, their care team and their identifiers (stored sealed only)."""

    async def create(
        self, identifiers: Identifiers, *, care_team: str, links: Sequence[str] = ()
    ) -> str:
        """Register a patient; returns a new opaque patient id.

        Args:
            identifiers: Sealed under the patient's new data key.
            care_team: The owning team.
            links: Keyed digests of the patient's external identifiers
                (:meth:`twin.domain.deidentify.Deidentifier.identifier_link`), stored in the
                same transaction.

        Raises:
            IdentifierTakenError: A link already names another patient (nothing is stored).
        """
        ...

    async def find(self, links: Sequence[str]) -> dict[str, str]:
        """The live patients that ``links`` name: link -> patient id (erased ones never)."""
        ...

    async def link(
        self, patient_id: str, links: Sequence[str], *, identifiers: Identifiers
    ) -> None:
        """Add identifier links to a live patient, and store ``identifiers`` (sealed) with them.

        In one transaction, so that the sealed identifiers always name every link (they are
        what the links are rebuilt from). Links the patient already holds are kept.

        Raises:
            IdentifierTakenError: A link names another patient (none is added).
            KeyAccessError: The patient is unknown or erased.
        """
        ...

    async def identifiers(self, patient_id: str) -> Identifiers:
        """The patient's identifiers.

        Raises:
            KeyAccessError: The patient was erased.
            InvalidInputError: No such patient.
        """
        ...

    async def care_team(self, patient_id: str) -> str | None:
        """The patient's care team, or ``None`` for an unknown or erased patient."""
        ...

    async def list_for_team(
        self, care_team: str, *, after: str | None = None, limit: int = 100
    ) -> list[str]:
        """Patient ids of a care team (erased patients excluded) in id order, after ``after``.

        Keyset pagination: pass the last id of a page as ``after`` to get the next one.
        """
        ...

    async def erase(self, patient_id: str) -> bool:
        """Crypto-shred the patient (data key destroyed), mark them erased, drop their links."""
        ...


@dataclass(frozen=True, slots=True)
class Document:
    """A stored document (a saved scenario comparison, an emergency-access grant, a report).

    Attributes:
        collection: Kind of document (``scenario``, ``break_glass``, ...), 1..64 chars.
        doc_id: Id unique within the collection, 1..200 chars.
        patient_id: The patient it belongs to (erasing them deletes it), or ``None``.
        body: Content; sealed under the patient's data key when it holds patient data.
        created_at: Unix time, seconds.
    """

    collection: str
    doc_id: str
    patient_id: str | None
    body: bytes
    created_at: float


@runtime_checkable
class DocumentStore(Protocol):
    """Documents by collection and id (MongoDB in production, a relational table embedded)."""

    async def put(self, document: Document) -> None:
        """Insert or replace the document (durable when this returns)."""
        ...

    async def get(self, collection: str, doc_id: str) -> Document | None:
        """One document, or ``None``."""
        ...

    async def scan(
        self, *, after: tuple[str, str] | None = None, limit: int = 1000
    ) -> list[Document]:
        """Every document of every collection in ``(collection, doc_id)`` order (backups).

        Args:
            after: Keyset cursor: the ``(collection, doc_id)`` of the last document seen.
            limit: Page size.
        """
        ...

    async def list(
        self,
        collection: str,
        *,
        patient_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Document]:
        """Documents of a collection (optionally one patient's) in ``doc_id`` order."""
        ...

    async def delete(self, collection: str, doc_id: str) -> bool:
        """Delete one document; returns whether it was there.

        A restore that fails after putting documents removes each one it put with this.
        """
        ...

    async def delete_patient(self, patient_id: str) -> int:
        """Delete every document of a patient; returns how many."""
        ...


@dataclass(frozen=True, slots=True)
class TableRows:
    """A batch of one table's rows, as the relational store holds them.

    Attributes:
        table: Table name.
        columns: Column names, in the order of each row's values.
        rows: Row values: ``str``, ``int``, ``float``, ``bytes``, ``None``, and where the store
            has them ``datetime`` (aware) and ``list[str]``.
    """

    table: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


@runtime_checkable
class DatabaseSnapshot(Protocol):
    """The relational store as a whole: consistent export, import when empty, and its undoing.

    ``kind`` names the adapter (``"sqlite"``, ``"postgres"``): an export restores into the same
    kind, whose column types it carries.
    """

    kind: str

    async def patient_ids(self) -> list[str]:
        """Every patient with a data key (i.e. not erased), sorted."""
        ...

    def export(self, *, batch_rows: int = 1000) -> AsyncIterator[TableRows]:
        """Every table's rows from one read snapshot (a single transaction), in key order."""
        ...

    async def is_empty(self) -> bool:
        """True when no table holds application data (a fresh, migrated store)."""
        ...

    async def import_all(self, batches: AsyncIterator[TableRows]) -> dict[str, int]:
        """Insert every batch in one transaction (all or nothing); returns rows per table.

        Raises:
            ConfigurationError: The store is not empty, or a table or column is unknown.
        """
        ...

    async def undo_import(self, imported: Mapping[str, int]) -> None:
        """Delete every row an :meth:`import_all` loaded, in one transaction: empty again.

        For a restore that fails after its import committed (a later step, or the restored
        audit chain, failed), so the environment is left as it was and the restore can run
        again. The audit trail is append-only for everything else; here its entries go too,
        which loses nothing: they are the archive's, and the archive still holds them. That is
        only so while nothing was written since the import, hence the refusal below.

        Args:
            imported: Rows per table, as :meth:`import_all` returned them.

        Raises:
            ConfigurationError: The store holds rows the import did not load (the audit trail
                has other entries, or a table has more rows): it was used since, and nothing
                is deleted.
            StorageUnavailableError: The store cannot be reached (nothing is deleted).
        """
        ...


@runtime_checkable
class PriorRegistry(Protocol):
    """Versioned population prior sets (the model registry): read side used by twins."""

    async def active(self) -> PriorSet:
        """The set new twins take."""
        ...

    async def get(self, version: str) -> PriorSet:
        """A set by version (``NotFoundError`` when unknown)."""
        ...

    async def for_patient(self, patient_id: str) -> PriorSet:
        """The set of the patient's twin.

        The one recorded at the twin's creation, else the active set, recorded now (durably, so
        a twin rebuilt from its log alone keeps its set).
        """
        ...
