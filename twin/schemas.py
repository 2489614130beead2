"""Wire models shared by the HTTP API and the researcher SDK (pydantic, strict, bounded)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from twin.domain.deidentify import PSEUDONYM_LENGTH, PSEUDONYM_PREFIX
from twin.domain.events import MAX_DAY
from twin.domain.specs import CohortSpec, Scenario, require_maintenance_history
from twin.domain.text import Line, Text

__all__ = [
    "AckOut",
    "AlertOut",
    "AuditEntryOut",
    "AuditPage",
    "AuditVerifyOut",
    "BreakGlassIn",
    "BreakGlassOut",
    "CaseloadItem",
    "CaseloadPage",
    "CaseloadSort",
    "CohortFilter",
    "CohortPatientPage",
    "CohortRunIn",
    "CohortRunOut",
    "CohortRunPage",
    "ContrastOut",
    "CovariatesIn",
    "ErasedOut",
    "FeedEventOut",
    "ForecastIn",
    "ForecastOut",
    "IngestJobIn",
    "IngestOut",
    "LoincValue",
    "ObservationBatch",
    "ObservationIn",
    "PatientCreate",
    "PatientCreated",
    "PatientOut",
    "PatientPage",
    "ProbabilityOut",
    "Problem",
    "ResearchTwinOut",
    "ResearchTwinPage",
    "ScenarioReportIn",
    "ScenarioReportOut",
    "ScenarioReportPage",
    "TwinIndexOut",
    "TwinOut",
    "TwinPage",
    "TwinSummaryOut",
]

_STRICT = ConfigDict(extra="forbid", frozen=True)
#: A research pseudonym as the research endpoints show it.
Pseudonym = Annotated[
    str,
    StringConstraints(
        min_length=PSEUDONYM_LENGTH,
        max_length=PSEUDONYM_LENGTH,
        pattern=f"^{PSEUDONYM_PREFIX}[0-9a-f]{{{PSEUDONYM_LENGTH - len(PSEUDONYM_PREFIX)}}}$",
    ),
]
#: A path under the ingest root: one line of text.
IngestPath = Annotated[Line, StringConstraints(min_length=1, max_length=1024)]


class Problem(BaseModel):
    """An RFC 9457 problem detail (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


class CovariatesIn(BaseModel):
    """Patient characteristics that change the twin's expected course (each optional).

    Baseline severity is not one of them: it is the first PHQ-9 observed. They become the
    twin's ``covariates`` event (the payload of that name on the observations route). Strict
    types, as the event codec: ``true`` is not a count and ``"yes"`` is not a boolean.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    episode_weeks: float | None = Field(
        default=None,
        ge=0.0,
        le=1040.0,
        allow_inf_nan=False,
        description="duration of the current depressive episode, weeks",
    )
    prior_episodes: int | None = Field(
        default=None, ge=0, le=50, description="depressive episodes before the current one"
    )
    anxiety_comorbid: bool | None = Field(
        default=None, description="a comorbid anxiety disorder (GAD, panic, social phobia)"
    )
    age_years: float | None = Field(
        default=None, ge=18.0, le=120.0, allow_inf_nan=False, description="age, years (adults)"
    )

    @model_validator(mode="after")
    def _something_given(self) -> CovariatesIn:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError("give at least one covariate, or leave covariates out")
        return self


def _plausible_enrolment(when: datetime) -> datetime:
    # A twin's day 0: not before the registry's earliest birth date, not in the future.
    if not datetime(1900, 1, 1, tzinfo=UTC) <= when <= datetime.now(UTC) + timedelta(days=1):
        raise ValueError("an instant between 1900 and now")
    return when


#: An enrolment instant (day 0 of a patient's time axis), with a UTC offset.
Enrolment = Annotated[AwareDatetime, AfterValidator(_plausible_enrolment)]


class IdentifierIn(BaseModel):
    """An external identifier, as FHIR's ``Identifier``: a namespace and a value in it."""

    model_config = _STRICT

    system: Line = Field(min_length=1, max_length=255, description="namespace URI, e.g. the MRN's")
    value: Line = Field(min_length=1, max_length=255)


class PatientCreate(BaseModel):
    """A new patient: identifiers, the owning care team and, optionally, covariates."""

    model_config = _STRICT

    name: Line = Field(min_length=1, max_length=200)
    birth_date: str = Field(
        min_length=10,
        max_length=10,
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        description="YYYY-MM-DD",
    )
    mrn: Line = Field(min_length=1, max_length=64)
    contact: Line | None = Field(default=None, max_length=200)
    care_team: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    covariates: CovariatesIn | None = None
    enrolled_at: Enrolment | None = Field(
        default=None,
        description="day 0 of the patient's time axis, with a UTC offset, between 1900 and "
        "now (default: now)",
    )
    identifiers: list[IdentifierIn] = Field(
        default_factory=list,
        max_length=32,
        description="external identifiers (e.g. the MRN with its system) bulk ingest matches "
        "the patient's records by; each may name one patient",
    )


class PatientCreated(BaseModel):
    """The opaque id of a new patient."""

    patient_id: str


class PatientOut(BaseModel):
    """A patient as their care team sees them."""

    patient_id: str
    care_team: str
    name: str
    birth_date: str
    mrn: str
    contact: str | None
    enrolled_at: str | None = Field(
        default=None, description="day 0 of the patient's time axis (ISO 8601 with offset)"
    )
    identifiers: list[IdentifierIn] = Field(
        default_factory=list, description="external identifiers the patient is matched by"
    )


class LoincValue(BaseModel):
    """A FHIR-style coded value: LOINC ``code`` with a ``valueQuantity`` (UCUM ``unit``)."""

    model_config = _STRICT

    code: str = Field(min_length=3, max_length=16, pattern=r"^[0-9]{1,8}-[0-9]$")
    # Wider than any supported code's range (steps/day is the largest); each code's own
    # range is checked when the value is mapped (twin.domain.loinc).
    value: float = Field(ge=-1e6, le=1e6, allow_inf_nan=False)
    unit: str | None = Field(default=None, max_length=16, pattern=r"^[\x20-\x7e]*$")


class ObservationIn(BaseModel):
    """One observation or intervention.

    Exactly one of ``payload`` (the event codec's form, ``{"type": "phq9", "total": 14}``) or
    ``loinc`` (a LOINC-coded value, see :mod:`twin.domain.loinc`).
    """

    model_config = _STRICT

    idempotency_key: str = Field(min_length=1, max_length=128, pattern=r"^[\x20-\x7e]+$")
    day: float = Field(
        ge=0.0, le=MAX_DAY, allow_inf_nan=False,
        description="days since the twin's origin (at most 100 years; at most 10 years after "
        "the patient's latest event)",
    )  # fmt: skip
    payload: dict[str, Any] | None = Field(default=None, max_length=16)
    loinc: LoincValue | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ObservationIn:
        if (self.payload is None) == (self.loinc is None):
            raise ValueError("give exactly one of payload or loinc")
        return self


class ObservationBatch(BaseModel):
    """Up to 1,000 events in time order."""

    model_config = _STRICT

    items: list[ObservationIn] = Field(min_length=1, max_length=1000)


class AckOut(BaseModel):
    """The acknowledgement of one event."""

    seq: int
    duplicate: bool
    rejected: str | None = Field(
        default=None,
        description="stored, but the twin could not apply it (e.g. a dose of a drug that is "
        "not prescribed): why; it changed nothing in the estimate",
    )


class AlertOut(BaseModel):
    """An alert raised by an update."""

    rule: str
    status: str
    severity: str
    seq: int
    detail: str


class IngestOut(BaseModel):
    """Acknowledged sequence numbers and the alerts the events raised."""

    acknowledged: list[AckOut]
    alerts: list[AlertOut]
    last_seq: int


class TwinOut(BaseModel):
    """The twin's current estimate with uncertainty.

    ``severity_*`` are latent PHQ-9 points; ``p_severe`` = P(severity >= 15); ``alert_flags``
    are the alert rules fired in the last 28 days.
    """

    patient_id: str
    last_seq: int
    day: int
    severity_mean: float
    severity_sd: float
    anxiety_mean: float
    p_episode: float
    p_severe: float
    alert_flags: list[str]
    model_version: str


class PatientPage(BaseModel):
    """A page of patient ids; pass ``next_after`` as ``after`` for the next page."""

    items: list[str]
    next_after: str | None


class ErasedOut(BaseModel):
    """The outcome of an erasure (crypto-shredding)."""

    patient_id: str
    erased: bool
    documents_deleted: int


class ProbabilityOut(BaseModel):
    """A Monte-Carlo probability with its standard error, or ``None`` with a reason."""

    value: float | None
    mc_se: float | None
    reason: str | None = None


class ForecastIn(BaseModel):
    """A forecast request: horizon in weeks and the scenario (default: continue as now)."""

    model_config = _STRICT

    weeks: int = Field(default=12, ge=1, le=26)
    scenario: Scenario = Field(default_factory=Scenario)


class ForecastOut(BaseModel):
    """A forecast (see :class:`twin.forecast.summary.Forecast`).

    Quantile levels are in ``quantile_levels``; probability keys are week numbers.
    """

    scenario: str
    weeks: list[int]
    quantile_levels: list[float]
    phq9_quantiles: list[list[int]]
    gad7_quantiles: list[list[int]]
    severity_quantiles: list[list[float]]
    response: dict[int, ProbabilityOut]
    remission: dict[int, ProbabilityOut]
    deterioration: dict[int, ProbabilityOut]
    median_weeks_to_remission: int | None
    model_version: str
    as_of_day: int
    last_seq: int
    days_since: dict[str, float]
    particles: int


class ContrastOut(BaseModel):
    """Scenario ``b`` against ``a`` on one posterior (negative differences: ``b`` better)."""

    a: str
    b: str
    weeks: list[int]
    difference_quantiles: list[list[float]]
    mean_difference: list[float]
    p_b_better_by_5: list[float]
    remission_risk_change: dict[int, float]
    response_risk_change: dict[int, float]


class ScenarioReportIn(BaseModel):
    """Compare 2..6 scenarios (each against the first) and save the result as a document."""

    model_config = _STRICT

    title: Line = Field(min_length=1, max_length=120)
    weeks: int = Field(default=12, ge=1, le=26)
    scenarios: list[Scenario] = Field(min_length=2, max_length=6)


class ScenarioReportOut(BaseModel):
    """A saved scenario comparison."""

    report_id: str
    patient_id: str
    title: str
    created_at: float
    forecasts: list[ForecastOut]
    contrasts: list[ContrastOut]


class ScenarioReportPage(BaseModel):
    """A page of saved reports (ids and titles); ``next_after`` continues."""

    items: list[dict[str, str | float]]
    next_after: str | None


class TwinIndexOut(BaseModel):
    """A twin as the search index holds it (``updated_at`` in Unix seconds)."""

    patient_id: str
    last_seq: int
    day: int
    severity_mean: float
    severity_sd: float
    p_episode: float
    p_severe: float
    alert_flags: list[str]
    updated_at: float


class TwinPage(BaseModel):
    """Twin search results (the caller's patients only), most severe first."""

    items: list[TwinIndexOut]


#: Caseload orders: a twin summary field, ``-`` first for descending.
CaseloadSort = Literal[
    "-severity", "severity", "-p_severe", "p_severe", "-updated_at", "updated_at", "patient_id"
]


class TwinSummaryOut(BaseModel):
    """A twin's latest estimate as the caseload shows it (``updated_at`` in Unix seconds).

    ``severity_*`` are latent PHQ-9 points (0..27); ``p_severe`` = P(severity >= 15).
    """

    last_seq: int = Field(ge=0, le=2**53)
    day: int = Field(ge=0, le=int(MAX_DAY), description="the twin's day (since enrolment)")
    severity_mean: float = Field(ge=0.0, le=27.0)
    severity_sd: float = Field(ge=0.0, le=27.0)
    p_episode: float = Field(ge=0.0, le=1.0)
    p_severe: float = Field(ge=0.0, le=1.0)
    alert_flags: list[Annotated[str, StringConstraints(max_length=64)]] = Field(max_length=32)
    updated_at: float = Field(ge=0.0, le=1e10)


class CaseloadItem(BaseModel):
    """A patient of the caller's care teams with their twin's summary (``None``: no events yet)."""

    patient_id: str = Field(max_length=64)
    care_team: str = Field(max_length=64)
    name: str = Field(max_length=200)
    birth_date: str = Field(max_length=10)
    mrn: str = Field(max_length=64)
    enrolled_at: str | None = Field(
        default=None, max_length=64, description="day 0 of the patient's time axis (ISO 8601)"
    )
    twin: TwinSummaryOut | None


class CaseloadPage(BaseModel):
    """A page of the caseload; pass ``next_after`` as ``after`` (same ``sort``) for the next."""

    items: list[CaseloadItem] = Field(max_length=200)
    next_after: str | None = Field(max_length=256)


class ResearchTwinOut(BaseModel):
    """A de-identified twin summary: keyed pseudonym, no identifiers, no patient id."""

    pseudonym: str
    record_day: int | None = Field(
        description="days since the patient's first event (never a day on the ingest "
        "origin's calendar); null for a twin not updated since record days were kept"
    )
    severity_mean: float
    severity_sd: float
    p_episode: float
    p_severe: float
    alert_flags: list[str]


class ResearchTwinPage(BaseModel):
    """De-identified twin summaries, most severe first."""

    items: list[ResearchTwinOut]


class BreakGlassIn(BaseModel):
    """An emergency-access request: a stated reason and a bounded duration."""

    model_config = _STRICT

    # The audit trail records the reason on one line.
    reason: Text = Field(min_length=10, max_length=500)
    minutes: int = Field(default=30, ge=1, le=24 * 60)


class BreakGlassOut(BaseModel):
    """A granted emergency access."""

    patient_id: str
    expires_at: float


class FeedEventOut(BaseModel):
    """One change-feed event (the SSE ``data``); ``seq`` is also the SSE ``id``."""

    seq: int
    day: float
    payload: dict[str, Any]


class AuditEntryOut(BaseModel):
    """One audit-trail entry with its chain hashes."""

    seq: int
    actor: str
    role: str
    action: str
    patient_id: str | None
    outcome: Literal["allowed", "denied"] | str
    purpose: str
    at: str
    request_id: str
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    """A page of the audit trail; ``next_after`` continues."""

    items: list[AuditEntryOut]
    next_after: int | None


class AuditVerifyOut(BaseModel):
    """The result of recomputing the audit chain."""

    ok: bool
    entries: int
    head_hash: str | None
    first_bad_seq: int | None
    reason: str | None


class IngestReportOut(BaseModel):
    """What a bulk-ingest job did (``records = appended + duplicates + quarantined``)."""

    records: int
    appended: int
    duplicates: int
    quarantined: int
    reasons: dict[str, int] = Field(description="quarantined records by reason")
    patients: int = Field(description="patients that received new events")
    registered: int = Field(default=0, description="patients registered from Patient resources")
    seconds: float


class IngestJobIn(BaseModel):
    """A bulk-ingest job to queue.

    ``paths`` must lie under the service's ingest root. Each patient's time axis starts at their
    enrolment; ``origin`` (with a UTC offset) serves patients registered without one. Patient
    resources register patients in ``care_team`` (none without it), enrolled at
    ``enrolled_at`` or, by default, at their earliest record in the job.
    """

    model_config = ConfigDict(extra="forbid")

    paths: list[IngestPath] = Field(min_length=1, max_length=1000)
    format: Literal["fhir-ndjson", "fhir-bundle", "csv", "parquet"]
    origin: AwareDatetime | None = None
    care_team: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$"
    )
    enrolled_at: Enrolment | None = Field(
        default=None, description="enrolment of the patients the job registers (1900 to now)"
    )

    @model_validator(mode="after")
    def _plain_paths(self) -> IngestJobIn:
        for path in self.paths:
            if ".." in path.split("/"):
                raise ValueError("paths: no '..' segment")
        return self


class IngestJobOut(BaseModel):
    """A bulk-ingest job: its state, and its report once finished."""

    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    submitted_by: str | None = Field(default=None, description="the submitter's token subject")
    attempts: int = Field(
        default=0, description="times the job runner started it (a run cut short is re-run once)"
    )
    format: str
    sources: int = Field(description="how many paths the job was given")
    submitted_at: str | None = Field(default=None, description="UTC, ISO 8601 (API jobs)")
    started_at: str | None = Field(default=None, description="UTC, ISO 8601")
    finished_at: str | None = None
    records_read: int | None = Field(
        default=None, description="records parsed from the sources (once they are all read)"
    )
    records_done: int | None = Field(
        default=None,
        description="records with an outcome so far: appended, duplicate or quarantined",
    )
    report: IngestReportOut | None = None
    error: str | None = Field(default=None, description="why it failed (no values)")


class IngestJobPage(BaseModel):
    """Bulk-ingest jobs, oldest first; pass ``next_after`` as ``after`` for the next page."""

    items: list[IngestJobOut]
    next_after: str | None


class CohortFilter(BaseModel):
    """Twins selected by their index entries (most severe first, at most ``limit``)."""

    model_config = ConfigDict(extra="forbid")

    min_severity: float | None = Field(default=None, ge=0.0, le=27.0, allow_inf_nan=False)
    min_p_severe: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    alert: str | None = Field(default=None, max_length=64, pattern=r"^[a-z0-9_]+$")
    limit: int = Field(default=10_000, ge=1, le=1_000_000)


class CohortRunIn(BaseModel):
    """A cohort what-if run: exactly one selection, 1..8 scenarios (the first is the reference).

    ``pseudonyms`` are research pseudonyms (``rs_...``) as the research endpoints show them;
    ``synthetic`` simulates virtual patients from the population prior (a ``start="remitted"``
    cohort needs the history its twins learn the maintenance state from: see
    :func:`twin.model.cohort.maintenance_history_days`).
    ``particles`` applies to synthetic twins only (stored twins keep their own).
    """

    model_config = ConfigDict(extra="forbid")

    filter: CohortFilter | None = None
    # As many as a request body can carry (1 MiB at ~30 bytes each).
    pseudonyms: list[Pseudonym] | None = Field(default=None, min_length=1, max_length=30_000)
    synthetic: CohortSpec | None = None
    scenarios: list[Scenario] = Field(min_length=1, max_length=8)
    weeks: int = Field(default=12, ge=1, le=26)
    seed: int = Field(default=0, ge=0, lt=2**62)
    particles: int = Field(default=2000, ge=10, le=20_000)

    @model_validator(mode="after")
    def _one_selection(self) -> CohortRunIn:
        chosen = [self.filter is not None, self.pseudonyms is not None, self.synthetic is not None]
        if sum(chosen) != 1:
            raise ValueError("give exactly one of filter, pseudonyms, synthetic")
        if self.synthetic is not None:
            require_maintenance_history(self.synthetic)  # an InvalidInputError is a ValueError
        names = [s.name for s in self.scenarios]
        if len(set(names)) != len(names):
            raise ValueError("scenario names must be distinct")
        return self


class CohortRunOut(BaseModel):
    """A cohort run: its state and progress; its aggregate once finished.

    ``aggregate`` has one row per (scenario, week): pooled PHQ-9 quantiles and mean, remission
    and response rates with between-twin standard errors, and paired contrasts against the
    first scenario. Per-patient rows are paged by ``GET .../patients``.
    """

    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    submitted_by: str | None = Field(default=None, description="the submitter's token subject")
    attempts: int = Field(
        default=0, description="times the job runner started it (a run cut short is re-run once)"
    )
    selection: Literal["filter", "pseudonyms", "synthetic"]
    scenarios: list[str]
    weeks: int
    seed: int
    submitted_at: str = Field(description="UTC, ISO 8601")
    finished_at: str | None = None
    patients_total: int | None = Field(default=None, description="twins selected")
    patients_done: int = 0
    skipped: dict[str, int] = Field(default_factory=dict, description="twins left out, by reason")
    seconds: float | None = None
    result_pages: int = 0
    aggregate: list[dict[str, Any]] | None = None
    output: str | None = Field(default=None, description="where the Parquet files are")
    error: str | None = Field(default=None, description="why it failed (no values)")


class CohortRunPage(BaseModel):
    """Cohort runs, oldest first; pass ``next_after`` as ``after`` for the next page."""

    items: list[CohortRunOut]
    next_after: str | None


class CohortPatientPage(BaseModel):
    """One page of a run's per-(patient, scenario) rows, by pseudonym; ``next_page`` continues."""

    items: list[dict[str, Any]]
    page: int
    next_page: int | None
