"""The clinical use cases, each once: what the HTTP routes (and any other front end) call.

A use case takes a :class:`twin.service.access.Caller` and its input as a wire model of
:mod:`twin.schemas` (validated and bounded where it entered), asks :class:`AccessPolicy`
(which audits the decision first), then does the work over the ports and the twin operations
(:class:`twin.service.operations.TwinOperations`, wherever the twins run). Front ends only
translate: a route turns HTTP into a call here and the result into HTTP; the error classes of
:mod:`twin.errors` become HTTP statuses in one place, outside this layer.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from twin import errors, ports, schemas
from twin.analytics.budget import CohortBudget, cohort_cost
from twin.assimilation.alerts import Alert
from twin.domain import codec, events, loinc
from twin.domain.deidentify import Deidentifier, record_day
from twin.domain.patients import Identifiers
from twin.domain.time_axis import day_of, instant_of
from twin.forecast.summary import QUANTILES, Forecast
from twin.service import caseload, jobs
from twin.service.access import AccessPolicy, Caller, Role
from twin.service.erasure import Eraser
from twin.service.operations import TwinOperations
from twin.service.results import IngestResult

__all__ = [
    "EVENT_KINDS",
    "MAX_SCOPE",
    "REGISTRATION_KEY",
    "SCENARIO_REPORTS",
    "EventKind",
    "JobLimits",
    "TwinQuery",
    "TwinService",
    "forecast_out",
]

#: Idempotency key of the covariates given at registration (the twin's first event).
REGISTRATION_KEY = "novamind:registration:covariates"
#: The document collection of saved scenario reports.
SCENARIO_REPORTS = "scenario"
#: Search scope of a clinician: patients of their teams, at most this many.
MAX_SCOPE = 10_000
#: Registry reads at once while a research answer's enrolments are looked up.
_CONCURRENT_READS = 16
#: Who may submit, and who may read and cancel, each kind of batch job.
COHORT_SUBMIT: tuple[Role, ...] = ("researcher",)
COHORT_READ: tuple[Role, ...] = ("researcher", "admin")
INGEST_SUBMIT: tuple[Role, ...] = ("admin", "service")
INGEST_READ: tuple[Role, ...] = ("admin", "service", "researcher")

EventKind = Literal["observations", "interventions"]
#: What each kind of ingest accepts, and how a refused item is described.
EVENT_KINDS: dict[EventKind, tuple[tuple[type[events.Payload], ...], str]] = {
    "observations": (events.OBSERVATION_TYPES, "an observation"),
    "interventions": (events.INTERVENTION_TYPES, "an intervention"),
}


@dataclass(frozen=True, slots=True)
class JobLimits:
    """What one caller's batch jobs may ask for.

    Attributes:
        budget: The most one cohort run may cost.
        stored_particles: Particles of a stored twin (the cost of a stored cohort).
        per_caller: Queued or running jobs one caller may hold.
        check_sources: Refuses ingest source paths outside the ingest root (the platform's
            file systems; raises :class:`twin.errors.InvalidInputError`).
    """

    budget: CohortBudget
    stored_particles: int
    per_caller: int
    check_sources: Callable[[list[str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TwinQuery:
    """A search over twin summaries (each ``None``: no condition).

    Attributes:
        min_severity: Posterior mean latent severity at least this (PHQ-9 points, 0..27).
        alert: An alert flag the twin carries.
        updated_since: Updated at or after this time (Unix seconds).
        min_p_severe: P(severity >= 15) at least this.
        limit: At most this many, most severe first.
    """

    min_severity: float | None = None
    alert: str | None = None
    updated_since: float | None = None
    min_p_severe: float | None = None
    limit: int = 100


def forecast_out(fc: Forecast, enrolment: datetime | None = None) -> schemas.ForecastOut:
    """The wire form of a forecast, with its instants when the patient has an ``enrolment``."""
    out = schemas.ForecastOut.model_validate({**asdict(fc), "quantile_levels": list(QUANTILES)})
    if enrolment is None:
        return out
    start = instant_of(fc.as_of_day, enrolment)
    # Week w describes twin day as_of_day + 7w (twin.forecast.summary).
    times = [start + timedelta(days=7 * week) for week in fc.weeks]
    return out.model_copy(update={"as_of": start, "times": times})


def _payload(item: schemas.ObservationIn) -> events.Payload:
    if item.loinc is not None:
        return loinc.from_loinc(item.loinc.code, item.loinc.value, item.loinc.unit)
    assert item.payload is not None  # the schema requires exactly one form
    return codec.decode(item.payload)


def _caseload_item(
    patient_id: str, team: str, ident: Identifiers, entry: ports.IndexEntry | None
) -> schemas.CaseloadItem:
    twin = None
    if entry is not None:
        enrolment = ident.enrolment()
        twin = schemas.TwinSummaryOut(
            last_seq=entry.last_seq, day=entry.day, severity_mean=entry.severity_mean,
            severity_sd=entry.severity_sd, p_episode=entry.p_episode, p_severe=entry.p_severe,
            alert_flags=list(entry.alert_flags), updated_at=entry.updated_at,
            as_of=None if enrolment is None else instant_of(entry.day, enrolment),
        )  # fmt: skip
    return schemas.CaseloadItem(
        patient_id=patient_id, care_team=team, name=ident.name, birth_date=ident.birth_date,
        mrn=ident.mrn, enrolled_at=ident.enrolled_at, twin=twin,
    )  # fmt: skip


def _day(item: schemas.ObservationIn, i: int, enrolment: datetime | None, now: datetime) -> float:
    """Where an item falls on the patient's time axis (its ``day``, or its ``effective``).

    Raises:
        InvalidInputError: An ``effective`` for a patient without an enrolment, or off their
            axis (:func:`twin.domain.time_axis.day_of`, the function bulk ingest uses).
    """
    if item.effective is None:
        assert item.day is not None  # the schema requires exactly one
        return item.day
    field = f"items.{i}.effective"
    if enrolment is None:
        raise errors.InvalidInputError(
            f"{field}: the patient has no enrolment instant to place it from (registered "
            "before enrolments were kept)"
        )
    return day_of(item.effective, enrolment, now=now, field=field)


def _ingest_out(
    result: IngestResult, batch: Sequence[ports.NewEvent], enrolment: datetime | None
) -> schemas.IngestOut:
    """The acknowledgement: one entry per item (its day and instant unless a duplicate)."""

    def instant(day: float) -> datetime | None:
        return None if enrolment is None else instant_of(day, enrolment)

    def alert_out(a: Alert) -> schemas.AlertOut:
        return schemas.AlertOut(
            rule=a.rule, status=a.status, severity=a.severity, seq=a.seq, detail=a.detail,
            day=a.day, at=instant(a.day),
        )  # fmt: skip

    acknowledged = [
        schemas.AckOut(
            seq=r.seq,
            duplicate=r.duplicate,
            rejected=result.rejected.get(r.seq),
            day=None if r.duplicate else item.day,
            effective=None if r.duplicate else instant(item.day),
        )
        for r, item in zip(result.appended, batch, strict=True)
    ]
    return schemas.IngestOut(
        acknowledged=acknowledged,
        alerts=[alert_out(a) for a in result.alerts],
        last_seq=result.last_seq,
    )


class TwinService:
    """The use cases of clinicians and administrators over patients and their twins.

    Args:
        policy: The access rules (audits every decision).
        registry: Patients and their identifiers.
        twins: The twin operations.
        documents: Saved reports (sealed under the patient's key).
        sealer: Envelope encryption of report bodies.
        index: Twin summaries for search.
        erasures: The erasure ledger.
        eraser: Erasure from every place patient data lives.
        deidentifier: Research pseudonyms.
        job_limits: What one caller's batch jobs may ask for.
    """

    def __init__(
        self,
        *,
        policy: AccessPolicy,
        registry: ports.PatientRegistry,
        twins: TwinOperations,
        documents: ports.DocumentStore,
        sealer: ports.Sealer,
        index: ports.TwinIndex,
        erasures: ports.ErasureLedger,
        eraser: Eraser,
        deidentifier: Deidentifier,
        job_limits: JobLimits,
    ) -> None:
        self.policy = policy
        self._registry = registry
        self._twins = twins
        self._documents = documents
        self._sealer = sealer
        self._index = index
        self._erasures = erasures
        self._eraser = eraser
        self._deidentifier = deidentifier
        self._job_limits = job_limits
        # Where this process's scans for a caller's unfinished jobs start (jobs.pending_jobs).
        self._job_scan: dict[str, str] = {}

    # -- patients -------------------------------------------------------------------------

    async def register(self, caller: Caller, body: schemas.PatientCreate) -> str:
        """Register a patient (admin, or a clinician of the owning care team); returns its id.

        Covariates given at registration become the twin's first event; the answer waits for
        its durable append (the twin applies it in the background, as bulk ingest does).
        """
        who = caller.who
        allowed = who.role == "admin" or (
            who.role == "clinician" and body.care_team in who.care_team
        )
        await self.policy.record(caller, "patient.create", None, allowed=allowed)
        if not allowed:
            raise errors.AuthorizationError(
                f"role {who.role} may not create patients for this team"
            )
        enrolled = body.enrolled_at or datetime.now(UTC)
        external = tuple(
            dict.fromkeys((i.system.strip(), i.value.strip()) for i in body.identifiers)
        )
        identifiers = Identifiers(
            body.name, body.birth_date, body.mrn, body.contact, enrolled_at=enrolled.isoformat(),
            external=external,
        )  # fmt: skip
        links = [self._deidentifier.identifier_link(system, value) for system, value in external]
        # Checked before the patient exists, so refused covariates register nothing.
        given = (
            None if body.covariates is None else events.Covariates(**body.covariates.model_dump())
        )
        patient_id = await self._registry.create(identifiers, care_team=body.care_team, links=links)
        if given is not None:
            await self.policy.record(caller, "covariates.ingest", patient_id, allowed=True)
            event = ports.NewEvent(REGISTRATION_KEY, 0.0, given)
            await self._twins.ingest(patient_id, [event], wait=False)
        return patient_id

    async def list_patients(
        self, caller: Caller, care_team: str | None, *, after: str | None, limit: int
    ) -> list[str]:
        """Patient ids of a care team (clinicians: their own teams only; default their first)."""
        who = caller.who
        team = care_team or (
            who.care_team[0] if who.role == "clinician" and who.care_team else None
        )
        allowed = (who.role == "admin" and team is not None) or (
            who.role == "clinician" and team in who.care_team
        )
        await self.policy.record(caller, "patient.list", None, allowed=allowed)
        if not allowed:
            raise errors.AuthorizationError(f"role {who.role} may not list this care team")
        assert team is not None  # allowed implies a team
        return await self._registry.list_for_team(team, after=after, limit=limit)

    async def caseload(self, caller: Caller, query: caseload.CaseloadQuery) -> schemas.CaseloadPage:
        """A clinician's patients with their twins' summaries: filtered, sorted, paged.

        Clinicians see their own teams (all of them unless ``care_team`` names one); an admin
        names the team. Every patient on the page is audited as disclosed, in one entry.
        """
        who = caller.who
        if query.care_team is not None:
            teams = [query.care_team]
        else:
            teams = list(who.care_team) if who.role == "clinician" else []
        allowed = bool(teams) and (
            who.role == "admin" or (who.role == "clinician" and set(teams) <= set(who.care_team))
        )
        await self.policy.record(caller, "patient.caseload", None, allowed=allowed)
        if not allowed:
            raise errors.AuthorizationError(f"role {who.role} may not list this care team")
        team_of: dict[str, str] = {}
        for team in teams:
            for pid in await self._registry.list_for_team(team, limit=MAX_SCOPE + 1):
                team_of.setdefault(pid, team)
            if len(team_of) > MAX_SCOPE:
                # Ordered by severity, a cut scope would hide its most severe patients unseen.
                raise errors.InvalidInputError(
                    f"care_team: the caseload orders at most {MAX_SCOPE} patients at once; "
                    "name one care team of fewer"
                )
        found = await self._index.search(
            min_severity=query.min_severity,
            alert=query.alert,
            patient_ids=list(team_of),
            updated_since=query.updated_since,
            min_p_severe=query.min_p_severe,
            limit=max(1, len(team_of)),
        )
        summaries = {e.patient_id: e for e in found}
        chosen, next_after = caseload.page(list(team_of), summaries, query)
        gate = asyncio.Semaphore(_CONCURRENT_READS)

        async def opened(pid: str) -> Identifiers | None:
            async with gate:
                try:
                    return await self._registry.identifiers(pid)
                except (errors.InvalidInputError, errors.KeyAccessError):
                    return None  # erased since the team was listed

        identifiers = await asyncio.gather(*(opened(pid) for pid in chosen))
        items = [
            _caseload_item(pid, team_of[pid], ident, summaries.get(pid))
            for pid, ident in zip(chosen, identifiers, strict=True)
            if ident is not None
        ]
        await self.policy.record_disclosures(
            caller, "patient.caseload.disclose", [i.patient_id for i in items]
        )
        return schemas.CaseloadPage(items=items, next_after=next_after)

    async def read_patient(self, caller: Caller, patient_id: str) -> schemas.PatientOut:
        """The patient's identifiers (their care team, or emergency access)."""
        team = await self.policy.patient_access(
            caller, "patient.read", patient_id, ("clinician", "admin")
        )
        ident = await self._registry.identifiers(patient_id)
        return schemas.PatientOut(
            patient_id=patient_id, care_team=team, name=ident.name, birth_date=ident.birth_date,
            mrn=ident.mrn, contact=ident.contact, enrolled_at=ident.enrolled_at,
            identifiers=[schemas.IdentifierIn(system=s, value=v) for s, v in ident.external],
        )  # fmt: skip

    async def erase(self, caller: Caller, patient_id: str) -> schemas.ErasedOut:
        """Erase a patient everywhere (admin), the ledger first.

        Asked again after an erasure that did not complete (a place failed), it completes it.
        """
        if caller.who.role == "admin" and patient_id in await self._erasures.incomplete():
            # The patient is gone from the registry already; the other places are retried.
            await self.policy.record(caller, "patient.erase", patient_id, allowed=True)
            removed = await self._eraser.erase(patient_id, record=False)
            return schemas.ErasedOut(
                patient_id=patient_id, erased=True, documents_deleted=removed["documents"]
            )
        await self.policy.patient_access(caller, "patient.erase", patient_id, ("admin",))
        removed = await self._eraser.erase(patient_id)
        return schemas.ErasedOut(
            patient_id=patient_id,
            erased=removed["registry"] > 0,
            documents_deleted=removed["documents"],
        )

    async def break_glass(
        self, caller: Caller, patient_id: str, body: schemas.BreakGlassIn
    ) -> float:
        """Emergency access for a clinician outside the care team; returns its expiry."""
        return await self.policy.grant_break_glass(caller, patient_id, body.reason, body.minutes)

    # -- events ---------------------------------------------------------------------------

    async def _enrolment(self, patient_id: str) -> datetime | None:
        """The patient's enrolment instant (day 0 of their time axis), if they have one."""
        return (await self._registry.identifiers(patient_id)).enrolment()

    async def ingest(
        self,
        caller: Caller,
        patient_id: str,
        kind: EventKind,
        body: schemas.ObservationBatch,
    ) -> schemas.IngestOut:
        """Append events of one kind, acknowledged once durable, and apply them.

        An item's ``effective`` is placed on the patient's axis from their enrolment by the
        function bulk ingest places records with, so either way an instant lands on one day.
        Nothing is stored when any item is refused.
        """
        await self.policy.patient_access(
            caller, f"{kind}.ingest", patient_id, ("clinician", "admin", "service")
        )
        allowed, what = EVENT_KINDS[kind]
        enrolment = await self._enrolment(patient_id)
        now = datetime.now(UTC)
        batch: list[ports.NewEvent] = []
        for i, item in enumerate(body.items):
            payload = _payload(item)
            if not isinstance(payload, allowed):
                raise errors.ObservationRangeError(f"items.{i}.type", type(payload).__name__, what)
            day = _day(item, i, enrolment, now)
            batch.append(ports.NewEvent(item.idempotency_key, day, payload))
        result = await self._twins.ingest(patient_id, batch)
        return _ingest_out(result, batch, enrolment)

    # -- twins ----------------------------------------------------------------------------

    async def read_twin(self, caller: Caller, patient_id: str) -> schemas.TwinOut:
        """The twin's estimate: latent severity with its SD, P(episode), P(severe), alerts.

        With the instant it describes (``as_of``) when the patient has an enrolment.
        """
        await self.policy.patient_access(caller, "twin.read", patient_id, ("clinician", "admin"))
        summary = await self._twins.summary(patient_id)
        enrolment = await self._enrolment(patient_id)
        if enrolment is None:
            return summary
        return summary.model_copy(update={"as_of": instant_of(summary.day, enrolment)})

    async def event_instants(self, patient_id: str) -> Callable[[float], datetime] | None:
        """Twin day -> instant (UTC) on the patient's axis; ``None`` without an enrolment.

        For a front end that reads the patient's events itself (the change feed) once it has
        checked the caller's access.
        """
        enrolment = await self._enrolment(patient_id)
        if enrolment is None:
            return None
        return lambda day: instant_of(day, enrolment)

    async def forecast(
        self, caller: Caller, patient_id: str, body: schemas.ForecastIn
    ) -> schemas.ForecastOut:
        """Forecast ``weeks`` ahead under one scenario."""
        await self.policy.patient_access(
            caller, "twin.forecast", patient_id, ("clinician", "admin")
        )
        (result,) = await self._twins.forecast(patient_id, [body.scenario], weeks=body.weeks)
        return forecast_out(result, await self._enrolment(patient_id))

    async def search_twins(self, caller: Caller, query: TwinQuery) -> list[ports.IndexEntry]:
        """Twins by severity, risk, alert flag and update time (clinicians: their teams')."""
        who = caller.who
        allowed = who.role in ("clinician", "admin")
        await self.policy.record(caller, "twin.search", None, allowed=allowed)
        if not allowed:
            raise errors.AuthorizationError(f"role {who.role} may not search twins")
        scope: list[str] | None = None
        if who.role == "clinician":
            scope = []
            for team in who.care_team:
                scope.extend(await self._registry.list_for_team(team, limit=MAX_SCOPE))
        found = await self._index.search(
            min_severity=query.min_severity,
            alert=query.alert,
            patient_ids=scope,
            updated_since=query.updated_since,
            min_p_severe=query.min_p_severe,
            limit=query.limit,
        )
        await self.policy.record_disclosures(
            caller, "twin.search.disclose", [e.patient_id for e in found]
        )
        return found

    async def research_twins(
        self, caller: Caller, *, min_severity: float | None, alert: str | None, limit: int
    ) -> list[schemas.ResearchTwinOut]:
        """De-identified twin summaries, most severe first (researchers).

        Keyed pseudonyms, no identifiers, and days counted from each patient's own first event
        (``record_day``), never the twin's day, which counts from the enrolment. Dates are
        shifted by each patient's secret offset (:meth:`Deidentifier.shifted_date`): never a
        real one. Every patient disclosed is audited (by opaque id, which researchers never
        see).
        """
        await self.policy.require_role(caller, "research.twins", ("researcher",))
        found = await self._index.search(min_severity=min_severity, alert=alert, limit=limit)
        await self.policy.record_disclosures(
            caller, "research.twins.disclose", [e.patient_id for e in found]
        )
        shown = [e.patient_id for e in found] if self._deidentifier.shows_dates else []
        enrolments = await self._enrolments(shown)
        return [
            schemas.ResearchTwinOut(
                pseudonym=self._deidentifier.pseudonym(e.patient_id),
                record_day=record_day(e.day, e.record_start),
                shifted_as_of=self._shifted(e.patient_id, enrolments.get(e.patient_id), e.day),
                shifted_record_start=self._shifted(
                    e.patient_id, enrolments.get(e.patient_id), e.record_start
                ),
                severity_mean=e.severity_mean,
                severity_sd=e.severity_sd,
                p_episode=e.p_episode,
                p_severe=e.p_severe,
                alert_flags=list(e.alert_flags),
            )
            for e in found
        ]

    def _shifted(self, patient_id: str, enrolment: datetime | None, day: int | None) -> date | None:
        """The shifted date twin day ``day`` began on (``None``: unknown, or no dates shown)."""
        if enrolment is None or day is None or not self._deidentifier.shows_dates:
            return None
        return self._deidentifier.shifted_date(patient_id, instant_of(day, enrolment))

    async def _enrolments(self, patient_ids: Sequence[str]) -> dict[str, datetime | None]:
        """Each patient's enrolment (``None``: none kept, or erased since the index was read)."""
        gate = asyncio.Semaphore(_CONCURRENT_READS)

        async def one(pid: str) -> datetime | None:
            async with gate:
                try:
                    return await self._enrolment(pid)
                except (errors.KeyAccessError, errors.InvalidInputError):
                    return None  # erased meanwhile: its index entry goes with it

        found = await asyncio.gather(*(one(pid) for pid in patient_ids))
        return dict(zip(patient_ids, found, strict=True))

    # -- scenario reports -----------------------------------------------------------------

    async def compare_scenarios(
        self, caller: Caller, patient_id: str, body: schemas.ScenarioReportIn
    ) -> schemas.ScenarioReportOut:
        """Forecast 2..6 scenarios on one posterior, contrast them with the first, save it.

        The report is sealed under the patient's data key: erasing the patient erases it.
        """
        await self.policy.patient_access(
            caller, "scenario.create", patient_id, ("clinician", "admin")
        )
        forecasts, contrasts = await self._twins.compare(
            patient_id, body.scenarios, weeks=body.weeks
        )
        enrolment = await self._enrolment(patient_id)
        report = schemas.ScenarioReportOut(
            report_id=uuid.uuid4().hex,
            patient_id=patient_id,
            title=body.title,
            created_at=time.time(),
            forecasts=[forecast_out(f, enrolment) for f in forecasts],
            contrasts=[schemas.ContrastOut.model_validate(asdict(c)) for c in contrasts],
        )
        plain = report.model_dump_json().encode()
        sealed = await self._sealer.seal(
            patient_id, kind=SCENARIO_REPORTS, version=0, plaintext=plain
        )
        await self._documents.put(
            ports.Document(
                SCENARIO_REPORTS, report.report_id, patient_id, sealed, report.created_at
            )
        )
        return report

    async def _open_report(self, patient_id: str, doc: ports.Document) -> schemas.ScenarioReportOut:
        plain = await self._sealer.open(
            patient_id, kind=SCENARIO_REPORTS, version=0, sealed=doc.body
        )
        return schemas.ScenarioReportOut.model_validate(json.loads(plain))

    async def list_reports(
        self, caller: Caller, patient_id: str, *, after: str | None, limit: int
    ) -> tuple[list[schemas.ScenarioReportOut], str | None]:
        """The patient's saved reports, and the cursor of the next page (``None``: the last)."""
        await self.policy.patient_access(
            caller, "scenario.list", patient_id, ("clinician", "admin")
        )
        docs = await self._documents.list(
            SCENARIO_REPORTS, patient_id=patient_id, after=after, limit=limit
        )
        reports = [await self._open_report(patient_id, doc) for doc in docs]
        return reports, (docs[-1].doc_id if len(docs) == limit else None)

    async def read_report(
        self, caller: Caller, patient_id: str, report_id: str
    ) -> schemas.ScenarioReportOut:
        """One saved report."""
        await self.policy.patient_access(
            caller, "scenario.read", patient_id, ("clinician", "admin")
        )
        doc = await self._documents.get(SCENARIO_REPORTS, report_id)
        if doc is None or doc.patient_id != patient_id:
            raise errors.NotFoundError("no such report")
        return await self._open_report(patient_id, doc)

    # -- batch jobs -------------------------------------------------------------------------

    async def submit_cohort_run(
        self, caller: Caller, body: schemas.CohortRunIn
    ) -> schemas.CohortRunOut:
        """Queue a cohort what-if run (researchers), within the cost budget and job limit."""
        await self.policy.require_role(caller, "cohorts.submit", COHORT_SUBMIT)
        limits = self._job_limits
        limits.budget.check(cohort_cost(body, limits.stored_particles))
        await jobs.admit(self._documents, caller.who.subject, limits.per_caller, self._job_scan)
        return await jobs.enqueue_cohort(self._documents, body, caller.who.subject)

    async def _visible_run(self, caller: Caller, job_id: str) -> schemas.CohortRunOut:
        """A run the caller may see: a researcher's own, or any run for an admin (else 404)."""
        run: schemas.CohortRunOut = await jobs.COHORT.get(self._documents, job_id)
        if caller.who.role != "admin" and run.submitted_by != caller.who.subject:
            raise errors.NotFoundError("no such job in cohort_run")
        return run

    async def cohort_run(self, caller: Caller, job_id: str) -> schemas.CohortRunOut:
        """One run: status, progress and, once finished, the aggregate."""
        await self.policy.require_role(caller, "cohorts.run", COHORT_READ)
        return await self._visible_run(caller, job_id)

    async def cancel_cohort_run(self, caller: Caller, job_id: str) -> schemas.CohortRunOut:
        """Cancel a run: a queued one at once, a running one at its next progress update."""
        await self.policy.require_role(caller, "cohorts.cancel", COHORT_READ)
        await self._visible_run(caller, job_id)
        run: schemas.CohortRunOut = await jobs.cancel(
            self._documents, jobs.COHORT, job_id, caller.who.subject
        )
        return run

    async def cohort_runs(
        self, caller: Caller, *, after: str | None, limit: int
    ) -> tuple[list[schemas.CohortRunOut], str | None]:
        """Runs, oldest first (a researcher's own), and the cursor of the next page."""
        await self.policy.require_role(caller, "cohorts.runs", COHORT_READ)
        items, next_after = await jobs.COHORT.page(self._documents, after=after, limit=limit)
        if caller.who.role != "admin":  # a page may hold fewer items; next_after continues
            items = [run for run in items if run.submitted_by == caller.who.subject]
        return items, next_after

    async def cohort_patients(
        self, caller: Caller, job_id: str, page: int
    ) -> schemas.CohortPatientPage:
        """One page of a finished run's per-(patient, scenario) rows, by pseudonym."""
        await self.policy.require_role(caller, "cohorts.patients", COHORT_READ)
        run = await self._visible_run(caller, job_id)
        if run.status != "succeeded":
            raise errors.JobNotFinishedError(f"the run is {run.status}")
        if page >= max(run.result_pages, 1):
            raise errors.NotFoundError("no such result page")
        rows = await self._documents.get(jobs.COHORT_RESULTS, f"{job_id}.{page:06d}")
        return schemas.CohortPatientPage(
            items=json.loads(rows.body) if rows is not None else [],
            page=page,
            next_page=page + 1 if page + 1 < run.result_pages else None,
        )

    async def submit_ingest_job(
        self, caller: Caller, body: schemas.IngestJobIn
    ) -> schemas.IngestJobOut:
        """Queue a bulk-ingest job over files under the ingest root (admins, services)."""
        await self.policy.require_role(caller, "ingest.submit", INGEST_SUBMIT)
        await self._job_limits.check_sources(body.paths)
        await jobs.admit(
            self._documents, caller.who.subject, self._job_limits.per_caller, self._job_scan
        )
        return await jobs.enqueue_ingest(self._documents, body, caller.who.subject)

    async def ingest_jobs(
        self, caller: Caller, *, after: str | None, limit: int
    ) -> tuple[list[schemas.IngestJobOut], str | None]:
        """Bulk-ingest jobs, oldest first, and the cursor of the next page."""
        await self.policy.require_role(caller, "ingest.jobs", INGEST_READ)
        found: tuple[list[schemas.IngestJobOut], str | None] = await jobs.INGEST.page(
            self._documents, after=after, limit=limit
        )
        return found

    async def ingest_job(self, caller: Caller, job_id: str) -> schemas.IngestJobOut:
        """One bulk-ingest job: its status, and its report once finished."""
        await self.policy.require_role(caller, "ingest.job", INGEST_READ)
        job: schemas.IngestJobOut = await jobs.INGEST.get(self._documents, job_id)
        return job

    async def cancel_ingest_job(self, caller: Caller, job_id: str) -> schemas.IngestJobOut:
        """Cancel a bulk-ingest job (admins, services); what it appended before stays."""
        await self.policy.require_role(caller, "ingest.cancel", INGEST_SUBMIT)
        job: schemas.IngestJobOut = await jobs.cancel(
            self._documents, jobs.INGEST, job_id, caller.who.subject
        )
        return job
