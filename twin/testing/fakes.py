"""In-memory fakes of the ports, with state tests can inspect (no mocks).

They implement the same contracts as the real adapters (the contract suites in
``tests/contract/`` run on both), keep everything in dicts, and never touch the disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from twin import errors, event_log, patient_registry, ports
from twin.domain import events
from twin.domain.audit import (
    GENESIS,
    REPORT_LIST_MAX,
    AnchorScan,
    AuditAnchor,
    AuditEntry,
    AuditRecord,
    anchor_key,
    chain,
)
from twin.domain.patients import ERASED, Identifiers, is_patient_id, new_patient_id

__all__ = [
    "MemoryAuditAnchorStore",
    "MemoryAuditLog",
    "MemoryCheckpointStore",
    "MemoryDataKeyStore",
    "MemoryDocumentStore",
    "MemoryErasureLedger",
    "MemoryEventStore",
    "MemoryPatientRegistry",
    "MemoryTwinIndex",
    "PlainSealer",
]


@dataclass
class _Log:
    events: list[events.Event] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)


class MemoryEventStore:
    """An :class:`~twin.ports.EventStore` in a dict; ``logs`` is open for inspection."""

    def __init__(self) -> None:
        self.logs: dict[str, _Log] = {}

    async def append(
        self, patient_id: str, batch: Sequence[ports.NewEvent]
    ) -> list[ports.AppendResult]:
        log = self.logs.setdefault(patient_id, _Log())
        head_day = log.events[-1].day if log.events else 0.0
        results, planned = event_log.plan_append(
            batch, known=log.keys, head_seq=len(log.events), head_day=head_day
        )
        # All or nothing: planning raised before anything was written.
        for p in planned:
            log.events.append(events.Event(p.seq, p.event.day, p.event.payload))
            log.keys[p.idempotency_key] = p.seq
        return results

    async def append_many(
        self, batches: Sequence[tuple[str, Sequence[ports.NewEvent]]]
    ) -> list[list[ports.AppendResult] | ports.AppendRefusal]:
        return await event_log.append_each(self, batches)

    async def read(
        self, patient_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[events.Event]:
        log = self.logs.get(patient_id)
        end = None if limit is None else after_seq + limit
        return [] if log is None else list(log.events[after_seq:end])

    async def last_seq(self, patient_id: str) -> int:
        log = self.logs.get(patient_id)
        return 0 if log is None else len(log.events)

    async def forget(self, patient_id: str) -> int:
        log = self.logs.pop(patient_id, None)
        return 0 if log is None else len(log.events)


class MemoryCheckpointStore:
    """A :class:`~twin.ports.CheckpointStore` keeping the newest checkpoint per patient."""

    def __init__(self) -> None:
        self.checkpoints: dict[str, ports.Checkpoint] = {}

    async def put(self, checkpoint: ports.Checkpoint) -> bool:
        current = self.checkpoints.get(checkpoint.patient_id)
        if current is not None and current.seq >= checkpoint.seq:
            return False
        self.checkpoints[checkpoint.patient_id] = checkpoint
        return True

    async def latest(self, patient_id: str) -> ports.Checkpoint | None:
        return self.checkpoints.get(patient_id)

    async def delete_all(self, patient_id: str) -> int:
        return 1 if self.checkpoints.pop(patient_id, None) is not None else 0


class MemoryDataKeyStore:
    """A :class:`~twin.ports.DataKeyStore` in a dict.

    ``erased`` stands for the registry's tombstones, which the real stores read in the same
    statement as an insert: a patient named there is never given a key again.
    """

    def __init__(self) -> None:
        self.keys: dict[str, ports.WrappedKey] = {}
        self.erased: set[str] = set()

    async def get(self, patient_id: str) -> ports.WrappedKey | None:
        return self.keys.get(patient_id)

    async def put_if_absent(self, patient_id: str, key: ports.WrappedKey) -> ports.WrappedKey:
        if patient_id not in self.erased:
            self.keys.setdefault(patient_id, key)
        stored = self.keys.get(patient_id)
        if stored is None:
            raise errors.KeyAccessError(ERASED)
        return stored

    async def replace_if(
        self, patient_id: str, expected: ports.WrappedKey, new: ports.WrappedKey
    ) -> bool:
        if self.keys.get(patient_id) != expected:
            return False
        self.keys[patient_id] = new
        return True

    async def scan(self, *, after: str | None, limit: int) -> list[tuple[str, ports.WrappedKey]]:
        ids = sorted(p for p in self.keys if after is None or p > after)[: max(limit, 1)]
        return [(p, self.keys[p]) for p in ids]

    async def count_by_kek(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for key in self.keys.values():
            counts[key.kek_id] = counts.get(key.kek_id, 0) + 1
        return counts

    async def delete(self, patient_id: str) -> bool:
        return self.keys.pop(patient_id, None) is not None


class PlainSealer:
    """A :class:`~twin.ports.Sealer` that does not encrypt: for unit tests of other ports only.

    It still enforces the binding of patient, kind and version and honours shredding, so code
    written against it behaves as it will with the real envelope sealer.
    """

    def __init__(self) -> None:
        self.shredded: set[str] = set()

    @staticmethod
    def _label(patient_id: str, kind: str, version: int) -> bytes:
        return f"{patient_id}|{kind}|{version}|".encode()

    async def seal(self, patient_id: str, *, kind: str, version: int, plaintext: bytes) -> bytes:
        if patient_id in self.shredded:
            raise errors.KeyAccessError("the patient's data key was destroyed")
        return self._label(patient_id, kind, version) + plaintext

    async def open(self, patient_id: str, *, kind: str, version: int, sealed: bytes) -> bytes:
        if patient_id in self.shredded:
            raise errors.KeyAccessError("the patient's data key was destroyed")
        label = self._label(patient_id, kind, version)
        if not sealed.startswith(label):
            raise errors.CheckpointCorruptError("sealed object belongs to another patient or kind")
        return sealed[len(label) :]

    async def shred(self, patient_id: str) -> bool:
        new = patient_id not in self.shredded
        self.shredded.add(patient_id)
        return new


def matches(entry: ports.IndexEntry, min_severity: float | None, alert: str | None) -> bool:
    """The :meth:`TwinIndex.search` filter, shared by the fakes and adapter tests."""
    return (min_severity is None or entry.severity_mean >= min_severity) and (
        alert is None or alert in entry.alert_flags
    )


class MemoryTwinIndex:
    """A :class:`~twin.ports.TwinIndex` in a dict."""

    def __init__(self) -> None:
        self.entries: dict[str, ports.IndexEntry] = {}

    async def upsert(self, entry: ports.IndexEntry) -> bool:
        current = self.entries.get(entry.patient_id)
        if current is not None and current.last_seq > entry.last_seq:
            return False
        self.entries[entry.patient_id] = entry
        return True

    async def get(self, patient_id: str) -> ports.IndexEntry | None:
        return self.entries.get(patient_id)

    async def delete(self, patient_id: str) -> bool:
        return self.entries.pop(patient_id, None) is not None

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
        scope = None if patient_ids is None else set(patient_ids)
        found = [
            e
            for e in self.entries.values()
            if matches(e, min_severity, alert)
            and (scope is None or e.patient_id in scope)
            and (updated_since is None or e.updated_at >= updated_since)
            and (min_p_severe is None or e.p_severe >= min_p_severe)
        ]
        return sorted(found, key=lambda e: (-e.severity_mean, e.patient_id))[:limit]


class MemoryAuditLog:
    """An :class:`~twin.ports.AuditLog` in a list (``entries_`` open for tampering in tests)."""

    def __init__(self) -> None:
        self.entries_: list[AuditEntry] = []

    async def append(self, record: AuditRecord) -> AuditEntry:
        (entry,) = await self.append_many([record])
        return entry

    async def append_many(self, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        prev = self.entries_[-1].hash if self.entries_ else GENESIS
        new = chain(prev, len(self.entries_), records)
        self.entries_.extend(new)
        return new

    async def entries(self, *, after_seq: int = 0, limit: int = 10_000) -> list[AuditEntry]:
        return [e for e in self.entries_ if e.seq > after_seq][:limit]


class MemoryAuditAnchorStore:
    """An :class:`~twin.ports.AuditAnchorStore` in a list (``anchors`` open to tests).

    ``unreadable`` names stored items that are not anchors (tests put them there).
    """

    def __init__(self) -> None:
        self.anchors: list[AuditAnchor] = []
        self.unreadable: list[str] = []

    async def put(self, anchor: AuditAnchor) -> None:
        recorded = anchor.recorded_at or datetime.now(UTC)  # as a store records its writes
        self.anchors.append(replace(anchor, recorded_at=recorded))

    async def all(self) -> list[AuditAnchor]:
        if self.unreadable:
            raise errors.AuditAnchorCorruptError(f"{self.unreadable[0]} is not an anchor")
        return sorted(self.anchors, key=anchor_key)

    async def scan(self, *, min_entries: int = 0) -> AnchorScan:
        kept = sorted((a for a in self.anchors if a.entries >= min_entries), key=anchor_key)
        shown = tuple(self.unreadable[:REPORT_LIST_MAX])
        return AnchorScan(tuple(kept), shown, len(self.unreadable))


class MemoryPatientRegistry:
    """A :class:`~twin.ports.PatientRegistry` in dicts, sealing identifiers with ``sealer``."""

    def __init__(self, sealer: ports.Sealer) -> None:
        self._sealer = sealer
        self.rows: dict[str, tuple[str, bytes, bool]] = {}  # id -> (team, sealed, erased)
        self.links: dict[str, str] = {}  # identifier link -> patient id

    async def create(
        self, identifiers: Identifiers, *, care_team: str, links: Sequence[str] = ()
    ) -> str:
        patient_id = new_patient_id()
        self._check_links(patient_id, links)
        sealed = await patient_registry.seal_identifiers(self._sealer, patient_id, identifiers)
        self.rows[patient_id] = (care_team, sealed, False)
        self.links.update(dict.fromkeys(links, patient_id))
        return patient_id

    def _check_links(self, patient_id: str, links: Sequence[str]) -> None:
        if any(self.links.get(link, patient_id) != patient_id for link in links):
            raise errors.IdentifierTakenError("an identifier already names another patient")

    async def find(self, links: Sequence[str]) -> dict[str, str]:
        return {
            link: self.links[link]
            for link in links
            if link in self.links and not self.rows[self.links[link]][2]
        }

    async def link(
        self, patient_id: str, links: Sequence[str], *, identifiers: Identifiers
    ) -> None:
        row = self.rows.get(patient_id)
        if row is None or row[2]:
            raise errors.KeyAccessError(ERASED)
        self._check_links(patient_id, links)
        sealed = await patient_registry.seal_identifiers(self._sealer, patient_id, identifiers)
        self.rows[patient_id] = (row[0], sealed, False)
        self.links.update(dict.fromkeys(links, patient_id))

    async def identifiers(self, patient_id: str) -> Identifiers:
        row = self.rows.get(patient_id)
        if row is None:
            raise errors.InvalidInputError("no such patient")
        return await patient_registry.open_identifiers(self._sealer, patient_id, row[1])

    async def care_team(self, patient_id: str) -> str | None:
        row = self.rows.get(patient_id)
        return None if row is None or row[2] else row[0]

    async def list_for_team(
        self, care_team: str, *, after: str | None = None, limit: int = 100
    ) -> list[str]:
        return sorted(
            pid
            for pid, (team, _, gone) in self.rows.items()
            if team == care_team and not gone and (after is None or pid > after)
        )[:limit]

    async def erase(self, patient_id: str) -> bool:
        row = self.rows.get(patient_id)
        if row is None:
            return False
        self.rows[patient_id] = (row[0], row[1], True)
        self.links = {link: pid for link, pid in self.links.items() if pid != patient_id}
        await self._sealer.shred(patient_id)
        return True


class MemoryDocumentStore:
    """An in-memory :class:`~twin.ports.DocumentStore`."""

    def __init__(self) -> None:
        self.documents: dict[tuple[str, str], ports.Document] = {}

    async def put(self, document: ports.Document) -> None:
        self.documents[document.collection, document.doc_id] = document

    async def get(self, collection: str, doc_id: str) -> ports.Document | None:
        return self.documents.get((collection, doc_id))

    async def scan(
        self, *, after: tuple[str, str] | None = None, limit: int = 1000
    ) -> list[ports.Document]:
        keys = sorted(k for k in self.documents if after is None or k > after)
        return [self.documents[k] for k in keys[:limit]]

    async def list(
        self,
        collection: str,
        *,
        patient_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[ports.Document]:
        found = [
            d
            for (c, i), d in sorted(self.documents.items())
            if c == collection
            and (patient_id is None or d.patient_id == patient_id)
            and (after is None or i > after)
        ]
        return found[:limit]

    async def delete(self, collection: str, doc_id: str) -> bool:
        return self.documents.pop((collection, doc_id), None) is not None

    async def delete_patient(self, patient_id: str) -> int:
        gone = [k for k, d in self.documents.items() if d.patient_id == patient_id]
        for k in gone:
            del self.documents[k]
        return len(gone)


class MemoryErasureLedger:
    """A :class:`~twin.ports.ErasureLedger` in a list and a set."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.done: set[str] = set()

    @staticmethod
    def _check(patient_id: str) -> None:
        if not is_patient_id(patient_id):
            raise errors.InvalidInputError("patient_id: 1-64 letters, digits, '_' or '-'")

    async def record(self, patient_id: str) -> None:
        self._check(patient_id)
        if patient_id not in self.names:
            self.names.append(patient_id)

    async def erased(self) -> list[str]:
        return sorted(self.names)

    async def complete(self, patient_id: str) -> None:
        self._check(patient_id)
        self.done.add(patient_id)

    async def incomplete(self) -> list[str]:
        return sorted(set(self.names) - self.done)
