"""The use cases run without HTTP or Ray: a front end is a translation, not a second copy."""

from __future__ import annotations

import pytest

from twin import errors, schemas
from twin.analytics.budget import CohortBudget
from twin.domain.deidentify import Deidentifier
from twin.service.access import AccessPolicy, Caller, Principal
from twin.service.application import JobLimits, TwinService
from twin.service.erasure import Eraser, Place
from twin.service.host import HostPorts, TwinHost
from twin.settings import HostSettings
from twin.testing import fakes

_Ledger = fakes.MemoryErasureLedger


async def _no_sources(paths: list[str]) -> None:
    raise errors.InvalidInputError("paths: every source must be under the ingest root")


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
        job_limits=JobLimits(CohortBudget(1e9, 10_000), 100, 1, _no_sources),
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


async def test_job_use_cases_without_http():
    app, _ = _service()
    run = schemas.CohortRunIn.model_validate(
        {"synthetic": {"n_patients": 2, "days": 0}, "scenarios": [{}], "weeks": 1}
    )
    with pytest.raises(errors.AuthorizationError):
        await app.submit_cohort_run(_as("clinician", "t1"), run)
    queued = await app.submit_cohort_run(_as("researcher"), run)
    assert queued.status == "queued" and queued.submitted_by == "researcher-1"
    with pytest.raises(errors.ConcurrencyLimitError):  # one unfinished job per caller here
        await app.submit_cohort_run(_as("researcher"), run)
    big = run.model_copy(
        update={"synthetic": run.synthetic.model_copy(update={"n_patients": 10**6})}
    )
    with pytest.raises(errors.InvalidInputError):  # over the run budget
        await app.submit_cohort_run(Caller(Principal("r-2", "researcher", (), 2**31), "q"), big)
    other = Caller(Principal("r-3", "researcher", (), 2**31), "q")
    with pytest.raises(errors.NotFoundError):  # another researcher's run does not exist for them
        await app.cohort_run(other, queued.job_id)
    assert (await app.cancel_cohort_run(_as("researcher"), queued.job_id)).status == "cancelled"
    ingest = schemas.IngestJobIn(
        paths=["/elsewhere/x.csv"], format="csv", origin="2024-01-01T00:00:00Z"
    )
    with pytest.raises(errors.InvalidInputError, match="ingest root"):
        await app.submit_ingest_job(_as("admin"), ingest)
