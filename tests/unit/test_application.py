"""The use cases run without HTTP or Ray: a front end is a translation, not a second copy."""

from __future__ import annotations

import pytest

from twin import errors, schemas
from twin.domain.deidentify import Deidentifier
from twin.service.access import AccessPolicy, Caller, Principal
from twin.service.application import TwinService
from twin.service.erasure import Eraser, Place
from twin.service.host import HostPorts, HostSettings, TwinHost
from twin.testing import fakes


class _Ledger:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.done: set[str] = set()

    async def record(self, patient_id: str) -> None:
        self.names.append(patient_id)

    async def erased(self) -> list[str]:
        return list(self.names)

    async def complete(self, patient_id: str) -> None:
        self.done.add(patient_id)

    async def incomplete(self) -> list[str]:
        return sorted(set(self.names) - self.done)


def _service() -> tuple[TwinService, fakes.MemoryAuditLog]:
    sealer = fakes.PlainSealer()
    registry = fakes.MemoryPatientRegistry(sealer)
    documents = fakes.MemoryDocumentStore()
    index = fakes.MemoryTwinIndex()
    audit = fakes.MemoryAuditLog()
    host = TwinHost(
        HostPorts(fakes.MemoryEventStore(), fakes.MemoryCheckpointStore(), sealer, index),
        settings=HostSettings(particles=100),
    )

    async def erase_registry(pid: str) -> int:
        return int(await registry.erase(pid))

    async def erase_documents(pid: str) -> int:
        return await documents.delete_patient(pid)

    ledger = _Ledger()
    eraser = Eraser(
        ledger,
        [
            Place("registry", "rows", (), erase_registry),
            Place("documents", "docs", (), erase_documents),
        ],
    )
    service = TwinService(
        policy=AccessPolicy(audit, registry, documents, sealer),
        registry=registry,
        twins=host,
        documents=documents,
        sealer=sealer,
        index=index,
        erasures=ledger,
        eraser=eraser,
        deidentifier=Deidentifier(b"k" * 32),
    )
    return service, audit


def _as(role: str, *teams: str) -> Caller:
    return Caller(Principal(f"{role}-1", role, teams, 2**31), "req-1")  # type: ignore[arg-type]


NEW = {"name": "Ada", "birth_date": "1980-01-02", "mrn": "M-1", "care_team": "t1"}


async def test_a_clinicians_use_cases_without_http():
    app, audit = _service()
    dr = _as("clinician", "t1")
    pid = await app.register(dr, schemas.PatientCreate.model_validate(NEW))
    batch = schemas.ObservationBatch.model_validate(
        {"items": [{"idempotency_key": "k1", "day": 0.0, "payload": {"type": "phq9", "total": 16}}]}
    )
    result = await app.ingest(dr, pid, "observations", batch)
    assert [a.seq for a in result.appended] == [1]
    assert (await app.read_twin(dr, pid)).last_seq == 1
    report = await app.compare_scenarios(
        dr,
        pid,
        schemas.ScenarioReportIn.model_validate(
            {"title": "t", "weeks": 1, "scenarios": [{"name": "a"}, {"name": "b"}]}
        ),
    )
    assert (await app.read_report(dr, pid, report.report_id)).title == "t"
    # An intervention is refused on the observations route, before anything is stored.
    dose = schemas.ObservationBatch.model_validate(
        {"items": [{"idempotency_key": "k2", "day": 1.0,
                    "payload": {"type": "prescription", "drug": "sertraline", "mg_per_day": 50}}]}
    )  # fmt: skip
    with pytest.raises(errors.ObservationRangeError):
        await app.ingest(dr, pid, "observations", dose)
    # Outside the team: the patient does not exist for them; every decision is audited.
    with pytest.raises(errors.NotFoundError):
        await app.read_twin(_as("clinician", "t2"), pid)
    actions = [(e.record.action, e.record.outcome) for e in await audit.entries()]
    assert ("twin.read", "denied") in actions and ("scenario.create", "allowed") in actions
    erased = await app.erase(_as("admin"), pid)
    assert erased.erased and erased.documents_deleted == 1
