"""The set-based check after a chaos run: nothing acknowledged lost, nothing doubled.

Read back from the stores themselves (the event table's keys, the event log's sealed payloads,
the audit chain) and through the API (each twin's state), and compared with what the clients
recorded:

- every acknowledged event is in the log exactly once, under its key, at the sequence number it
  was acknowledged with, with the payload that was sent;
- each client's acknowledgements are in log order (a client sends one request at a time);
- an event that was never acknowledged may be stored or not: both are counted;
- nothing is stored that no client sent (a retry that was stored twice would be);
- each twin, as the API serves it, equals a twin rebuilt from the log alone;
- the audit chain verifies.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg

from deployments.bootstrap import build_host_ports
from deployments.ops.audit import verify
from storage.local import LocalCheckpointStore
from tests.chaos.workload import Ledger, digest
from twin.client import AsyncClient
from twin.service.host import HostPorts, TwinHost
from twin.settings import TwinSettings


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the check found (every count but the ``unacked_*`` ones must be 0)."""

    acknowledged: int
    acknowledged_lost: int
    payload_mismatches: int
    duplicated: int
    order_violations: int
    unacked_present: int
    unacked_absent: int
    replay_mismatches: int
    audit_broken: int
    #: For each twin that differs from its rebuild: the patient and the fields that differ.
    replay_differences: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def ok(self) -> bool:
        return not (
            self.acknowledged_lost or self.payload_mismatches or self.duplicated
            or self.order_violations or self.replay_mismatches or self.audit_broken
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _stored_keys(dsn: str, patients: list[str]) -> dict[tuple[str, str], int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT patient_id, idempotency_key, seq FROM events WHERE patient_id = ANY($1)",
            patients,
        )
    finally:
        await connection.close()
    return {(r["patient_id"], r["idempotency_key"]): int(r["seq"]) for r in rows}


async def _rebuilt_from_log(stores: HostPorts, settings: TwinSettings, patient: str) -> Any:
    # The same log and keys, but no checkpoint: the twin is replayed from its first event.
    with tempfile.TemporaryDirectory() as empty:
        ports = HostPorts(stores.events, LocalCheckpointStore(Path(empty)), stores.sealer,
                          priors=stores.priors)  # fmt: skip
        host = TwinHost(ports, settings=settings.host)
        return await host.summary(patient)


async def check(
    settings: TwinSettings, ledger: Ledger, patients: list[str], api: AsyncClient
) -> Verdict:
    """Compare what the clients recorded with what the stores and the API hold."""
    assert settings.database_url is not None
    stored = await _stored_keys(settings.database_url, patients)
    stores = await build_host_ports(settings)
    try:
        logs = {p: await stores.events.read(p) for p in patients}
        by_seq = {p: {e.seq: e for e in log} for p, log in logs.items()}
        lost = mismatched = 0
        for ack in ledger.acked.values():
            seq = stored.get((ack.patient, ack.key))
            if seq is None:
                lost += 1
                continue
            at = by_seq[ack.patient].get(seq)
            if seq != ack.seq or at is None or digest(at.payload) != ack.digest:
                mismatched += 1
        sent = set(ledger.acked) | set(ledger.unacked)
        duplicated = sum(1 for (_, key) in stored if key not in sent)
        duplicated += sum(len(logs[p]) for p in patients) - len(stored)  # rows without a key
        by_client: dict[int, list[Any]] = defaultdict(list)
        for ack in ledger.acked.values():
            by_client[ack.client].append(ack)
        order = 0
        for acks in by_client.values():
            seqs = [a.seq for a in sorted(acks, key=lambda a: a.at)]
            order += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
        present = sum(1 for key, (p, _) in ledger.unacked.items() if (p, key) in stored)
        differences: list[tuple[str, tuple[str, ...]]] = []
        for patient in patients:
            live = (await api.twin(patient)).model_dump()
            rebuilt = (await _rebuilt_from_log(stores, settings, patient)).model_dump()
            if live != rebuilt:
                differences.append((patient, tuple(k for k in live if live[k] != rebuilt.get(k))))
    finally:
        await stores.aclose()
    report = await asyncio.to_thread(verify, settings)
    return Verdict(
        acknowledged=len(ledger.acked),
        acknowledged_lost=lost,
        payload_mismatches=mismatched,
        duplicated=duplicated,
        order_violations=order,
        unacked_present=present,
        unacked_absent=len(ledger.unacked) - present,
        replay_mismatches=len(differences),
        audit_broken=0 if report.ok else 1,
        replay_differences=tuple(differences),
    )
