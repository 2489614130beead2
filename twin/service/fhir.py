"""The FHIR use cases: a patient, their Observations and RiskAssessments, and Bulk Data exports.

The same rules as the ``/v1`` use cases (:class:`twin.service.application.TwinService`): every
read of a patient is decided and audited by :class:`AccessPolicy` first (a clinician sees their
care teams' patients, or one under an emergency grant; 404 otherwise), and every export file a
caller downloads is a disclosure of its patients, audited by one entry and a manifest per page.

Exports (:mod:`twin.fhir_out.export`) are queued jobs (:mod:`twin.service.jobs`); the job runner
runs them (``deployments/pipelines/fhir_export.py``). Only the caller who asked may poll an
export and read its files, with a valid token and, for a clinician, while still in the exported
care team. Its files last until it expires (``expires_at``, set by the job from
``fhir_export_ttl_hours``): then, or when the caller deletes the export, :func:`delete_parts`
removes them (the job runner sweeps expired ones, :func:`sweep_exports`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twin import errors, ports
from twin.assimilation.state import TwinState
from twin.domain.patients import Identifiers
from twin.domain.specs import Scenario
from twin.fhir_out import estimates, export, record
from twin.fhir_out.validation import checked
from twin.service import jobs
from twin.service.access import AccessPolicy, Caller, Role
from twin.service.operations import TwinOperations

__all__ = [
    "EXPORT_ROLES",
    "READ_ROLES",
    "RISK_WEEKS",
    "ExportLimits",
    "FhirService",
    "delete_parts",
    "enrolment_of",
    "part_kind",
    "sweep_exports",
]

#: Who may read a patient's FHIR resources (clinicians within their care teams).
READ_ROLES: tuple[Role, ...] = ("clinician", "admin")
#: Who may export a care team (clinicians: their own teams; services: an EHR's backend).
EXPORT_ROLES: tuple[Role, ...] = ("clinician", "admin", "service")
#: Forecast horizon of a RiskAssessment, weeks (remission and response at 8 and 12).
RISK_WEEKS = 12
#: Parts read (and audited) per page of an export file.
_FILE_PAGE = 100


@dataclass(frozen=True, slots=True)
class ExportLimits:
    """How exports are admitted (how long they last is the job's: ``fhir_export_ttl_hours``).

    Attributes:
        per_caller: Queued or running jobs (of every kind) one caller may hold.
    """

    per_caller: int


def part_kind(job_id: str, resource_type: str) -> str:
    """The sealing kind of an export's parts: binds each to its export and file."""
    return f"fhir_export|{job_id}|{resource_type}"


def enrolment_of(identifiers: Identifiers) -> datetime:
    """A patient's enrolment: day 0 of their time axis, which every FHIR date is counted from.

    Raises:
        InvalidInputError: The patient was registered before enrolments were kept.
    """
    enrolled = identifiers.enrolment()
    if enrolled is None:
        raise errors.InvalidInputError(
            "patient: no enrolment instant (registered before enrolments were kept), so their "
            "records have no dates"
        )
    return enrolled


async def delete_parts(documents: ports.DocumentStore, job: export.ExportJob) -> int:
    """Delete every part of an export (every file, the OperationOutcomes too); returns how many."""
    deleted = 0
    for kind in (*export.EXPORT_TYPES, export.OUTCOMES):
        prefix = export.part_prefix(job.job_id, kind)
        while True:
            found = await documents.list(export.PARTS, after=prefix, limit=500)
            ours = [d for d in found if d.doc_id.startswith(prefix)]
            for doc in ours:
                deleted += int(await documents.delete(export.PARTS, doc.doc_id))
            if len(ours) < len(found) or len(found) < 500:
                break
    return deleted


def _expired(job: export.ExportJob, now: datetime) -> bool:
    return job.expires_at is not None and datetime.fromisoformat(job.expires_at) <= now


async def sweep_exports(
    documents: ports.DocumentStore, settled: dict[str, str], *, now: datetime | None = None
) -> int:
    """Delete the files of exports that expired, failed or were cancelled; returns how many.

    ``settled`` is the sweep's cursor (kept between calls): exports before it are all swept, so
    a sweep reads only the exports since the oldest one still holding files.
    """
    moment = now or datetime.now(UTC)
    swept = 0
    after = settled.get(jobs.EXPORT.collection)
    unbroken = True
    while True:
        page, next_after = await jobs.EXPORT.page(documents, after=after, limit=200)
        for job in page:
            finished = job.status in jobs.FINISHED
            if (
                finished
                and job.deleted_at is None
                and (job.status != "succeeded" or _expired(job, moment))
            ):
                await delete_parts(documents, job)
                job = job.model_copy(update={"deleted_at": jobs.utc_now()})
                await jobs.EXPORT.save(documents, job)
                swept += 1
            unbroken = unbroken and job.deleted_at is not None
            if unbroken:
                settled[jobs.EXPORT.collection] = job.job_id
        if next_after is None:
            return swept
        after = next_after


class FhirService:
    """The FHIR use cases (module docstring).

    Args:
        policy: The access rules (audits every decision).
        registry: Patients, their identifiers and care teams.
        twins: The twin operations (state and forecast).
        events: The event log (a patient's record).
        documents: Export jobs and their parts.
        sealer: Opens an export's parts (sealed under each patient's key).
        limits: How exports are admitted.
    """

    def __init__(
        self,
        *,
        policy: AccessPolicy,
        registry: ports.PatientRegistry,
        twins: TwinOperations,
        events: ports.EventStore,
        documents: ports.DocumentStore,
        sealer: ports.Sealer,
        limits: ExportLimits,
    ) -> None:
        self.policy = policy
        self._registry = registry
        self._twins = twins
        self._events = events
        self._documents = documents
        self._sealer = sealer
        self._limits = limits
        self._job_scan: dict[str, str] = {}

    # -- a patient's resources --------------------------------------------------------------

    async def patient(self, caller: Caller, patient_id: str) -> dict[str, Any]:
        """The Patient resource (their care team, or emergency access)."""
        await self.policy.patient_access(caller, "fhir.patient.read", patient_id, READ_ROLES)
        return record.patient_resource(patient_id, await self._registry.identifiers(patient_id))

    async def _record(self, patient_id: str) -> tuple[datetime, list[dict[str, Any]], bool]:
        """The patient's enrolment, their Observations (unchecked), and whether they have events."""
        enrolment = enrolment_of(await self._registry.identifiers(patient_id))
        log = await self._events.read(patient_id)
        observed = record.record_resources(
            patient_id, enrolment, log, types=("Observation",), check=False
        )
        return enrolment, observed, bool(log)

    async def _estimate(self, patient_id: str) -> estimates.Estimate:
        state = TwinState.from_bytes(await self._twins.state_bytes(patient_id))
        return estimates.estimate_of(state)

    async def observations(
        self, caller: Caller, patient_id: str, *, offset: int, count: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the patient's Observations, and how many there are in all.

        The twin's severity (model-derived) comes first, then the record's Observations in the
        order of the log; a patient without events has neither.

        Args:
            caller: Who asks.
            patient_id: The patient.
            offset: Observations to skip (the log only grows, so a page stays a page).
            count: Observations on the page.
        """
        await self.policy.patient_access(caller, "fhir.observation.search", patient_id, READ_ROLES)
        enrolment, observed, any_events = await self._record(patient_id)
        total = len(observed) + int(any_events)
        if not any_events:
            return [], 0
        page: list[dict[str, Any]] = []
        if offset == 0 and count > 0:
            estimate = await self._estimate(patient_id)
            page.append(estimates.severity_observation(patient_id, enrolment, estimate))
        start = max(0, offset - 1)
        page.extend(checked(r) for r in observed[start : start + count - len(page)])
        return page, total

    async def risk_assessments(self, caller: Caller, patient_id: str) -> list[dict[str, Any]]:
        """The twin's current RiskAssessment (none for a patient without events)."""
        await self.policy.patient_access(
            caller, "fhir.riskassessment.search", patient_id, READ_ROLES
        )
        enrolment, observed, any_events = await self._record(patient_id)
        if not any_events:
            return []
        estimate = await self._estimate(patient_id)
        (forecast,) = await self._twins.forecast(patient_id, [Scenario()], weeks=RISK_WEEKS)
        phq9 = record.phq9_ids(observed)
        return [estimates.risk_assessment(patient_id, enrolment, estimate, forecast, phq9)]

    # -- Bulk Data exports ------------------------------------------------------------------

    async def submit_export(
        self,
        caller: Caller,
        care_team: str,
        *,
        parameters: Sequence[tuple[str, str]],
        asynchronous: bool,
        request_url: str,
    ) -> export.ExportJob:
        """Queue an export of a care team's patients (clinicians of the team, admins, services).

        The decision is audited before the request is read, so that every kick-off is in the
        trail, a malformed one too.

        Args:
            caller: Who asks.
            care_team: The team (the Group).
            parameters: The kick-off's query parameters (``_type``, ``_outputFormat``).
            asynchronous: The client asked for the asynchronous pattern (``Prefer:
                respond-async``), the only one an export has.
            request_url: The kick-off's URL (the manifest repeats it).

        Raises:
            AuthorizationError: The caller may not export this team (403).
            InvalidInputError: Not asynchronous, or a parameter this server does not support.
            ConcurrencyLimitError: The caller holds as many unfinished jobs as allowed (429).
        """
        who = caller.who
        allowed = who.role in ("admin", "service") or (
            who.role == "clinician" and care_team in who.care_team
        )
        await self.policy.record(caller, "fhir.export.submit", None, allowed=allowed)
        if not allowed:
            raise errors.AuthorizationError(f"role {who.role} may not export this care team")
        if not asynchronous:
            raise errors.InvalidInputError(
                "Prefer: respond-async is required (an export is asynchronous)"
            )
        types = export.kickoff_parameters(parameters)
        await jobs.admit(self._documents, who.subject, self._limits.per_caller, self._job_scan)
        request = export.ExportRequest(
            care_team=care_team, types=types, request_url=request_url, submitted_role=who.role
        )
        return await jobs.enqueue_export(self._documents, request, who.subject)

    async def _decide(
        self, caller: Caller, action: str, job_id: str, *, file: str | None = None
    ) -> export.ExportJob:
        """Decide and audit a caller's access to an export (or one of its files).

        Visible: the caller's own (the subject who asked, a clinician still in the team), not
        cancelled, deleted or expired; a file, of a succeeded export that has it.

        Raises:
            AuthorizationError: The role may not follow exports (403).
            NotFoundError: Not visible (404: whether it exists is not revealed).
        """
        who = caller.who
        job: export.ExportJob | None = None
        if who.role in EXPORT_ROLES:
            try:
                job = await jobs.EXPORT.get(self._documents, job_id)
            except errors.NotFoundError:
                job = None
        # Deleted while it ran: the cancellation is on record whatever the runner wrote since.
        cancelled = job is not None and await self._documents.get(jobs.CANCELS, job_id) is not None
        visible = job is not None and not cancelled and self._visible(caller, job, file)
        await self.policy.record(caller, action, None, allowed=visible)
        if who.role not in EXPORT_ROLES:
            raise errors.AuthorizationError(f"role {who.role} may not {action}")
        if job is None or not visible:
            raise errors.NotFoundError("no such export or file (or it expired, or was deleted)")
        return job

    @staticmethod
    def _visible(caller: Caller, job: export.ExportJob, file: str | None) -> bool:
        who = caller.who
        mine = job.submitted_by == who.subject and (
            who.role != "clinician" or job.care_team in who.care_team
        )
        gone = (
            job.status == "cancelled"
            or job.deleted_at is not None
            or _expired(job, datetime.now(UTC))
        )
        if file is not None:
            files = {out.type for out in job.outputs} | ({export.OUTCOMES} if job.errors else set())
            gone = gone or job.status != "succeeded" or file not in files
        return mine and not gone

    async def export_status(
        self, caller: Caller, job_id: str
    ) -> tuple[export.ExportJob, export.ExportRequest]:
        """An export's status and its request."""
        job = await self._decide(caller, "fhir.export.status", job_id)
        request: export.ExportRequest = await jobs.EXPORT.request(self._documents, job_id)
        return job, request

    async def delete_export(self, caller: Caller, job_id: str) -> None:
        """Cancel an export that runs, or delete the files of one that finished."""
        job = await self._decide(caller, "fhir.export.delete", job_id)
        if job.status in jobs.FINISHED:
            await delete_parts(self._documents, job)
            done = job.model_copy(update={"deleted_at": jobs.utc_now()})
            await jobs.EXPORT.save(self._documents, done)
        else:
            await jobs.cancel(self._documents, jobs.EXPORT, job_id, caller.who.subject)

    async def export_file(self, caller: Caller, job_id: str, name: str) -> AsyncIterator[bytes]:
        """An export file's NDJSON, part by part (each page audited as a disclosure).

        The first page is read before this returns, so that a store that cannot be read is an
        error answer, not a cut stream. Parts of patients erased since are gone.

        Raises:
            NotFoundError: No such export or file (or not the caller's).
        """
        job = await self._decide(caller, "fhir.export.file", job_id, file=name)
        prefix = export.part_prefix(job_id, name)
        first = await self._page(caller, job, name, prefix)
        return self._stream(caller, job, name, prefix, first)

    async def _page(
        self, caller: Caller, job: export.ExportJob, name: str, after: str
    ) -> tuple[list[bytes], str | None]:
        """One page of a file's parts, opened and audited; and where the next page starts.

        A patient no longer in the exported team, or erased, is left out: the file gives what
        the caller may still read, as the /v1 routes would.
        """
        job_id = job.job_id
        found = await self._documents.list(export.PARTS, after=after, limit=_FILE_PAGE)
        prefix = export.part_prefix(job_id, name)
        ours = [d for d in found if d.doc_id.startswith(prefix)]
        bodies: list[bytes] = []
        disclosed: list[str] = []
        for doc in ours:
            if doc.patient_id is None:  # the OperationOutcomes: no patient data
                bodies.append(doc.body)
                continue
            index = int(doc.doc_id[len(prefix) :])
            if await self._registry.care_team(doc.patient_id) != job.care_team:
                continue  # moved to another team, or erased, since the export
            try:
                bodies.append(
                    await self._sealer.open(
                        doc.patient_id,
                        kind=part_kind(job_id, name),
                        version=index,
                        sealed=doc.body,
                    )
                )
            except errors.KeyAccessError:
                continue  # erased since it was exported: their part is no longer readable
            disclosed.append(doc.patient_id)
        await self.policy.record_disclosures(caller, "fhir.export.file.disclose", disclosed)
        more = len(ours) == len(found) == _FILE_PAGE
        return bodies, ours[-1].doc_id if more else None

    async def _stream(
        self,
        caller: Caller,
        job: export.ExportJob,
        name: str,
        prefix: str,
        first: tuple[list[bytes], str | None],
    ) -> AsyncIterator[bytes]:
        bodies, after = first
        while True:
            for body in bodies:
                yield body
            if after is None:
                return
            bodies, after = await self._page(caller, job, name, after)
