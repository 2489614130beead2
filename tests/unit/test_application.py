"""The use cases run without HTTP or Ray: a front end is a translation, not a second copy."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal

import pytest

from twin import errors, schemas
from twin.analytics.budget import CohortBudget
from twin.domain import time_axis
from twin.domain.deidentify import MAX_DATE_SHIFT_DAYS, Deidentifier
from twin.domain.patients import Identifiers
from twin.ingest import fhir, records
from twin.service.access import AccessPolicy, Caller, Principal
from twin.service.application import JobLimits, TwinService
from twin.service.erasure import Eraser, Place
from twin.service.host import HostPorts, TwinHost
from twin.settings import HostSettings
from twin.testing import fakes

_Ledger = fakes.MemoryErasureLedger


async def _no_sources(paths: list[str]) -> None:
    raise errors.InvalidInputError("paths: every source must be under the ingest root")


def _service(
    events: fakes.MemoryEventStore | None = None,
    registry: fakes.MemoryPatientRegistry | None = None,
    *,
    research_dates: Literal["shifted", "relative"] = "relative",
) -> tuple[TwinService, fakes.MemoryAuditLog]:
    sealer = fakes.PlainSealer()
    registry = registry or fakes.MemoryPatientRegistry(sealer)
    documents = fakes.MemoryDocumentStore()
    index = fakes.MemoryTwinIndex()
    audit = fakes.MemoryAuditLog()
    host = TwinHost(
        HostPorts(events or fakes.MemoryEventStore(), fakes.MemoryCheckpointStore(), sealer, index),
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
        deidentifier=Deidentifier(b"k" * 32, dates=research_dates),
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
    assert [a.seq for a in result.acknowledged] == [1]
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


ENROLLED = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
KEY = b"k" * 32


def _batch(*items: dict[str, object]) -> schemas.ObservationBatch:
    return schemas.ObservationBatch.model_validate({"items": list(items)})


def _phq9(key: str, total: int = 14, **when: object) -> dict[str, object]:
    return {"idempotency_key": key, "payload": {"type": "phq9", "total": total}, **when}


async def test_an_effective_instant_lands_on_the_day_bulk_ingest_gives_the_same_fhir_time():
    events = fakes.MemoryEventStore()
    app, _ = _service(events)
    dr = _as("clinician", "t1")
    pid = await app.register(
        dr, schemas.PatientCreate.model_validate({**NEW, "enrolled_at": ENROLLED})
    )
    # One instant in three offsets: one day (4 days 30 minutes after the enrolment).
    spellings = ["2024-03-05T09:30:00+01:00", "2024-03-05T03:30:00-05:00", "2024-03-05T08:30:00Z"]
    out = await app.ingest(
        dr, pid, "observations",
        _batch(*(_phq9(f"k{i}", effective=when) for i, when in enumerate(spellings))),
    )  # fmt: skip
    stored = await events.read(pid)
    assert [e.day for e in stored] == [4 + 30 / 1440] * 3
    for ack in out.acknowledged:
        assert ack.day == stored[0].day
        assert ack.effective == datetime(2024, 3, 5, 8, 30, tzinfo=UTC)
    # Bulk ingest reads the same time from a FHIR Observation with the one shared function.
    assert records.day_of is time_axis.day_of
    resource = {
        "resourceType": "Observation", "id": "o-1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": spellings[0],
        "valueQuantity": {"value": 14, "unit": "{score}"},
    }  # fmt: skip
    (record,) = fhir.records_from_resource(resource)
    _, event = records.to_event(record, ENROLLED, now=datetime.now(UTC))
    assert event.day == stored[0].day and event.payload == stored[0].payload
    # Responses give the instants beside the days.
    twin = await app.read_twin(dr, pid)
    assert twin.as_of == ENROLLED + timedelta(days=twin.day)
    forecast = await app.forecast(dr, pid, schemas.ForecastIn(weeks=3))
    assert forecast.as_of == ENROLLED + timedelta(days=forecast.as_of_day)
    assert forecast.times == [forecast.as_of + timedelta(weeks=w) for w in (1, 2, 3)]


async def test_instants_off_the_patients_axis_are_refused_and_nothing_is_stored():
    events = fakes.MemoryEventStore()
    app, _ = _service(events)
    dr = _as("clinician", "t1")
    pid = await app.register(
        dr, schemas.PatientCreate.model_validate({**NEW, "enrolled_at": ENROLLED})
    )
    tomorrow = datetime.now(UTC) + timedelta(days=2)
    cases = [
        ("2024-02-29T23:59:59Z", "items.1.effective: before the patient's enrolment"),
        (tomorrow.isoformat(), "items.1.effective: more than a day after the present"),
    ]
    for when, why in cases:
        batch = _batch(_phq9("ok", effective="2024-03-02T00:00:00Z"), _phq9("bad", effective=when))
        with pytest.raises(errors.InvalidInputError) as refused:
            await app.ingest(dr, pid, "observations", batch)
        assert str(refused.value) == why
    assert await events.read(pid) == []
    # A wall-clock time names no instant: refused where the request is read.
    with pytest.raises(ValueError, match="UTC offset"):
        _batch(_phq9("naive", effective="2024-03-05T09:30:00"))


async def test_a_patient_without_an_enrolment_takes_days_but_no_instants():
    sealer = fakes.PlainSealer()
    registry = fakes.MemoryPatientRegistry(sealer)
    app, _ = _service(registry=registry)
    dr = _as("clinician", "t1")
    # Registered before enrolments were kept.
    pid = await registry.create(Identifiers("Ada", "1980-01-02", "M-1"), care_team="t1")
    with pytest.raises(errors.InvalidInputError, match="no enrolment instant"):
        await app.ingest(
            dr, pid, "observations", _batch(_phq9("k", effective="2024-03-05T09:30:00Z"))
        )
    out = await app.ingest(dr, pid, "observations", _batch(_phq9("k", day=2.0)))
    assert out.acknowledged[0].day == 2.0 and out.acknowledged[0].effective is None
    assert (await app.read_twin(dr, pid)).as_of is None


async def test_research_dates_are_shifted_per_patient_and_never_the_real_ones():
    app, _ = _service(research_dates="shifted")
    dr = _as("clinician", "t1")
    deid = Deidentifier(KEY)
    real: dict[str, tuple[str, date, date]] = {}
    for i, enrolled in enumerate((ENROLLED, ENROLLED - timedelta(days=400, hours=13))):
        body = {**NEW, "mrn": f"M-{i}", "enrolled_at": enrolled}
        pid = await app.register(dr, schemas.PatientCreate.model_validate(body))
        first, later = enrolled + timedelta(days=3.5), enrolled + timedelta(days=40.25)
        await app.ingest(dr, pid, "observations", _batch(
            _phq9("a", effective=first.isoformat()), _phq9("b", effective=later.isoformat()),
        ))  # fmt: skip
        # The dates twin days 3 and 40 began on.
        real[deid.pseudonym(pid)] = (
            pid,
            (enrolled + timedelta(days=3)).date(),
            (enrolled + timedelta(days=40)).date(),
        )
    rows = await app.research_twins(_as("researcher"), min_severity=None, alert=None, limit=10)
    assert {r.pseudonym for r in rows} == set(real)
    for row in rows:
        pid, start, as_of = real[row.pseudonym]
        assert row.shifted_record_start is not None and row.shifted_as_of is not None
        # One shift for all of a patient's dates: the patient's own keyed one, never 0.
        shift = timedelta(days=deid.date_shift(pid))
        assert row.shifted_record_start - start == row.shifted_as_of - as_of == shift
        assert 1 <= abs(shift.days) <= MAX_DATE_SHIFT_DAYS
        assert (row.shifted_as_of - row.shifted_record_start).days == row.record_day == 37
