"""The set-based check after a chaos run: nothing acknowledged lost, nothing doubled.

Read back from the stores themselves (the event table's keys, the event log's sealed payloads,
the audit chain) and through the API (each twin's state), and compared with what the clients
recorded:

- every acknowledged event is in the log exactly once, under its key, at the sequence number it
  was acknowledged with, with the payload that was sent;
- acknowledgements are in real-time order: an event acknowledged before another was sent is
  stored before it;
- an event that was never acknowledged may be stored or not: both are counted;
- nothing is stored that no client sent (a retry that was stored twice would be);
- each twin, its whole state as its host holds it and its summary as the API serves it, equals
  a twin rebuilt from the log alone;
- the audit chain verifies;
- every acknowledged bulk ingest job and cohort run finished (none lost), none more than the
  runner's attempts; each succeeded ingest stored every event of its file exactly once, each
  succeeded cohort run has all of its rows; every acknowledged erasure left nothing readable,
  neither through the API nor in the event log.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from deployments.host_ports import build_host_ports
from deployments.ops.audit import verify
from tests.chaos import jobs as J
from tests.chaos.workload import Ack, Ledger, digest
from twin import errors
from twin.client import AsyncClient
from twin.domain import events as E
from twin.service.host import HostPorts
from twin.service.jobs import MAX_ATTEMPTS
from twin.service.rebuild import differences, rebuilt_from_log
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


def _order_violations(acks: list[Ack]) -> int:
    """Events of one patient stored before an event acknowledged before they were sent.

    Real-time order: ``a.done < b.at`` requires ``a.seq < b.seq``.
    """
    by_done = sorted(acks, key=lambda a: a.done)
    newest, i, violations = 0, 0, 0
    for b in sorted(acks, key=lambda a: a.at):
        while i < len(by_done) and by_done[i].done < b.at:
            newest = max(newest, by_done[i].seq)
            i += 1
        violations += newest >= b.seq
    return violations


async def check(
    settings: TwinSettings, ledger: Ledger, patients: list[str], api: AsyncClient
) -> Verdict:
    """Compare what the clients recorded with what the stores, the twins and the API hold."""
    from actors.directory import RayTwinDirectory
    from actors.runtime import TwinRuntime

    assert settings.database_url is not None
    stored = await _stored_keys(settings.database_url, patients)
    runtime = TwinRuntime(RayTwinDirectory(settings, build_host_ports, settings.host))
    stores = await build_host_ports(settings)
    try:
        logs = {p: await stores.events.read(p) for p in patients}
        by_seq = {p: {e.seq: e for e in log} for p, log in logs.items()}

        def matches(patient: str, seq: int, sent: str) -> bool:
            at = by_seq[patient].get(seq)
            return at is not None and digest(at.payload) == sent

        lost = mismatched = present = 0
        for ack in ledger.acked.values():
            seq = stored.get((ack.patient, ack.key))
            if seq is None:
                lost += 1
            elif seq != ack.seq or not matches(ack.patient, seq, ack.digest):
                mismatched += 1
        for key, (patient, sent) in ledger.unacked.items():
            seq = stored.get((patient, key))
            if seq is not None:
                present += 1
                mismatched += not matches(patient, seq, sent)
        # Stored under a key no client sent for that patient: a write doubled or misplaced.
        sent_pairs = {(a.patient, a.key) for a in ledger.acked.values()}
        sent_pairs |= {(patient, key) for key, (patient, _) in ledger.unacked.items()}
        duplicated = sum(1 for pair in stored if pair not in sent_pairs)
        by_patient: dict[str, list[Ack]] = defaultdict(list)
        for ack in ledger.acked.values():
            by_patient[ack.patient].append(ack)
        order = sum(_order_violations(acks) for acks in by_patient.values())
        differing: list[tuple[str, tuple[str, ...]]] = []
        for patient in patients:
            live = (await api.twin(patient)).model_dump()
            rebuilt = await rebuilt_from_log(stores, settings.host, patient)
            fields = differences(live, await runtime.state_bytes(patient), rebuilt)
            if fields:
                differing.append((patient, fields))
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
        replay_mismatches=len(differing),
        audit_broken=0 if report.ok else 1,
        replay_differences=tuple(differing),
    )


@dataclass(frozen=True, slots=True)
class JobVerdict:
    """What the check of jobs and erasures found (``ok``: nothing lost, doubled or readable).

    Attributes:
        submitted: Acknowledged jobs (ingests and cohort runs).
        unacked: Submissions never acknowledged (they may exist or not).
        by_status: Acknowledged jobs by final status (``pending`` if never finished).
        lost: Acknowledged jobs missing, or not finished within the check's wait.
        overrun: Jobs started more times than the runner allows.
        events_lost: Events of succeeded ingests missing from the log (or with another value).
        events_duplicated: Events of succeeded ingests stored more than once.
        rows_missing: Rows missing from succeeded cohort runs.
        erased: Acknowledged erasures.
        erased_readable: Erased patients still readable through the API or in the log.
        failures: Why jobs failed (their recorded errors).
    """

    submitted: int
    unacked: int
    by_status: dict[str, int]
    lost: int
    overrun: int
    events_lost: int
    events_duplicated: int
    rows_missing: int
    erased: int
    erased_readable: int
    failures: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.overrun or self.events_lost or self.events_duplicated
            or self.rows_missing or self.erased_readable
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def final_status(status: Any, job_id: str, wait_s: float) -> Any:
    """A job's status once it has finished (or as it stands after ``wait_s``).

    Returns:
        ``await status(job_id)`` once final or timed out; ``None`` if there is no such job.
    """
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            now = await status(job_id)
        except errors.NotFoundError:
            return None
        if now.status in ("succeeded", "failed", "cancelled"):
            return now
        if asyncio.get_running_loop().time() > deadline:
            return now
        await asyncio.sleep(1.0)


async def ingest_discrepancies(stores: HostPorts, patients: list[str]) -> tuple[int, int]:
    """(events missing or wrong, events extra) in the logs of an ingest job's patients.

    Each patient's log must hold exactly the observations of the job's file
    (:func:`tests.chaos.jobs.observations_ndjson`): one PHQ-9 a day, at 10:00 of day ``d``.
    """
    missing = extra = 0
    for index, patient in enumerate(patients):
        found: dict[int, list[E.Payload]] = defaultdict(list)
        for event in await stores.events.read(patient):
            found[round(event.day - 10 / 24)].append(event.payload)
        absent = sum(
            1
            for day in range(1, J.OBSERVATIONS + 1)
            if E.Phq9(J.job_score(index, day)) not in found.get(day, [])
        )
        missing += absent
        extra += sum(len(payloads) for payloads in found.values()) - (J.OBSERVATIONS - absent)
    return missing, extra


async def check_jobs(
    settings: TwinSettings,
    ledger: J.JobLedger,
    *,
    admin: AsyncClient,
    researcher: AsyncClient,
    clinician: AsyncClient,
    wait_s: float = 180.0,
) -> JobVerdict:
    """Wait for the acknowledged jobs to finish, then check them and the erasures."""
    finals: list[tuple[str, Any]] = []
    for job_id in ledger.ingests:
        finals.append(("ingest", await final_status(admin.ingest_job, job_id, wait_s)))
    for job_id in ledger.cohorts:
        finals.append(("cohort", await final_status(researcher.cohort_run, job_id, wait_s)))
    by_status: dict[str, int] = defaultdict(int)
    failures: list[str] = []
    lost = overrun = events_lost = events_duplicated = rows_missing = readable = 0
    stores = await build_host_ports(settings)
    try:
        for kind, final in finals:
            if final is None or final.status not in ("succeeded", "failed", "cancelled"):
                lost += 1
                by_status["pending" if final else "missing"] += 1
                continue
            by_status[f"{kind} {final.status}"] += 1
            overrun += final.attempts > MAX_ATTEMPTS
            if final.status == "failed":
                failures.append(f"{kind}: {final.error}")
            if kind == "ingest":
                missing, extra = await ingest_discrepancies(stores, ledger.ingests[final.job_id])
                events_duplicated += extra  # never, whatever became of the job
                events_lost += missing if final.status == "succeeded" else 0
            elif kind == "cohort" and final.status == "succeeded":
                rows = [row async for row in researcher.iter_cohort_rows(final.job_id)]
                rows_missing += J.COHORT_PATIENTS * J.COHORT_SCENARIOS - len(rows)
        for patient in ledger.erased:
            readable += await _readable(clinician, stores, patient)
    finally:
        await stores.aclose()
    return JobVerdict(
        submitted=len(finals),
        unacked=ledger.unacked_jobs,
        by_status=dict(by_status),
        lost=lost,
        overrun=overrun,
        events_lost=events_lost,
        events_duplicated=events_duplicated,
        rows_missing=rows_missing,
        erased=len(ledger.erased),
        erased_readable=readable,
        failures=tuple(failures),
    )


async def _readable(clinician: AsyncClient, stores: HostPorts, patient: str) -> bool:
    """Whether anything of an erased patient can still be read (its twin, its events)."""
    try:
        await clinician.twin(patient)
        return True
    except (errors.NotFoundError, errors.KeyAccessError, errors.AuthorizationError):
        pass
    try:
        return bool(await stores.events.read(patient))
    except (errors.NotFoundError, errors.KeyAccessError):
        return False
