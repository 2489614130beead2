"""Wire models shared by the HTTP API and the researcher SDK (pydantic, strict, bounded)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from twin.domain.audit import FIELD_LIMITS, REPORT_LIST_MAX
from twin.domain.deidentify import PSEUDONYM_LENGTH, PSEUDONYM_PREFIX
from twin.domain.events import MAX_DAY, MAX_SEQ
from twin.domain.specs import MAX_HORIZON_DAYS, CohortSpec, Scenario, require_maintenance_history
from twin.domain.text import Line, Text

__all__ = [
    "COHORT_PAGE_ROWS",
    "DAY_DEPRECATED_AT",
    "DAY_SUNSET_AT",
    "MAX_DETAIL",
    "AckOut",
    "AlertOut",
    "AuditAnchorOut",
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
    "HealthOut",
    "IngestJobIn",
    "IngestOut",
    "LoincValue",
    "ObservationBatch",
    "ObservationIn",
    "OperationOutcome",
    "OutcomeIssue",
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
    "Timestamp",
    "TwinIndexOut",
    "TwinOut",
    "TwinPage",
    "TwinSummaryOut",
]

_STRICT = ConfigDict(extra="forbid", frozen=True)
# Every field below is bounded, responses included: the OpenAPI document promises clients (and
# their generated code) the sizes they must handle, and FastAPI checks each answer against it.
#: The integer formats OpenAPI clients size their fields by (JSON Schema has none of its own).
_INT32: dict[str, Any] = {"format": "int32"}
_INT64: dict[str, Any] = {"format": "int64"}
#: Counts the service reports (records, twins, entries): kept exact in a JSON number (2^53).
MAX_COUNT = 2**53 - 1
#: The longest forecast horizon, weeks.
MAX_WEEKS = MAX_HORIZON_DAYS // 7
#: Scenarios one cohort run compares.
MAX_COHORT_SCENARIOS = 8
#: Per-(patient, scenario) rows on one page of a cohort run's results.
COHORT_PAGE_ROWS = 1000
#: The longest message the service writes into an answer (a problem's detail, a job's error).
MAX_DETAIL = 2048
#: Events in one ingest request.
MAX_BATCH = 1000
#: Alert rules a twin evaluates; each raises at most one alert per event.
ALERT_RULES_BOUND = 5

#: An event's sequence number in its patient's log (0: no event yet).
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ, json_schema_extra=_INT64)]
#: A sequence number as a store holds it, shown whatever it is: a 64-bit signed integer
#: (PostgreSQL ``BIGINT``, SQLite ``INTEGER``), so a row planted out of :data:`Seq`'s range
#: is reported, never a failed response.
StoredSeq = Annotated[int, Field(ge=-(2**63), le=2**63 - 1, json_schema_extra=_INT64)]
#: A count of things the service did or holds.
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, json_schema_extra=_INT64)]
#: A whole day on a twin's time axis (days since its origin).
Day = Annotated[int, Field(ge=0, le=int(MAX_DAY), json_schema_extra=_INT32)]
#: A week of a forecast horizon.
Week = Annotated[int, Field(ge=0, le=MAX_WEEKS, json_schema_extra=_INT32)]
#: A probability.
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
#: An opaque id the service issued (a patient, a job, a report).
OpaqueId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]
#: A care team's name.
CareTeam = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
]
#: An alert rule's name.
AlertRule = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]
#: An instant the service wrote (UTC, ISO 8601 / RFC 3339).
Instant = Annotated[
    str, StringConstraints(max_length=40), Field(json_schema_extra={"format": "date-time"})
]
#: A message the service wrote (never a value of the request).
Message = Annotated[str, StringConstraints(max_length=MAX_DETAIL)]
#: A model's version, e.g. ``novamind-twin/1.4``.
ModelVersion = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._/+-]+$")
]
#: A token subject as the audit trail keeps it.
Subject = Annotated[str, StringConstraints(min_length=1, max_length=FIELD_LIMITS["actor"])]
#: A SHA-256 digest in hex.
Sha256Hex = Annotated[
    str, StringConstraints(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")
]
#: A PHQ-9 total (0..27) and a GAD-7 total (0..21).
Phq9Score = Annotated[int, Field(ge=0, le=27, json_schema_extra=_INT32)]
Gad7Score = Annotated[int, Field(ge=0, le=21, json_schema_extra=_INT32)]
#: Quantile levels a forecast reports (at most; it reports seven).
_QUANTILES = 16
#: Times the job runner starts one job (jobs.MAX_ATTEMPTS is 2; a margin for stored jobs).
_MAX_ATTEMPTS = 100
_AUDIT = FIELD_LIMITS
#: A scenario's name as the specs take it.
ScenarioName = Annotated[Line, StringConstraints(min_length=1, max_length=80)]
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

#: The longest RFC 3339 date-time taken: nanoseconds and an offset.
_TIMESTAMP_LENGTH = len("2024-03-05T09:30:00.123456789+01:00")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_NAIVE = "a UTC offset is required (Z or +hh:mm, e.g. 2024-03-05T09:30:00+01:00)"


def _timestamp_form(value: object) -> object:
    # Only what the schema's date-time promises: pydantic alone would also read a number (or a
    # text of digits) as Unix seconds, and a time without its offset is refused by name.
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(_NAIVE)
        return value
    if not isinstance(value, str) or len(value) > _TIMESTAMP_LENGTH:
        raise ValueError("an RFC 3339 date-time, e.g. 2024-03-05T09:30:00+01:00")
    found = _RFC3339.fullmatch(value)
    if found is None:
        raise ValueError("an RFC 3339 date-time, e.g. 2024-03-05T09:30:00+01:00")
    if found["offset"] is None:
        raise ValueError(_NAIVE)
    return value


def _utc(when: datetime) -> datetime:
    try:
        return when.astimezone(UTC)
    except OverflowError:  # year 1 at +14:00, year 9999 at -14:00: no UTC instant
        raise ValueError("an instant within the years 1-9999 in UTC") from None


#: An instant: an ISO 8601 (RFC 3339) date-time with a UTC offset, as UTC once read. Requests
#: may give any offset; responses are always in UTC (``...Z``).
Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_timestamp_form),
    AfterValidator(_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "maxLength": _TIMESTAMP_LENGTH}),
]
#: A calendar date (``YYYY-MM-DD``) in a response.
DateOut = Annotated[date, WithJsonSchema({"type": "string", "format": "date", "maxLength": 10})]
#: When ``ObservationIn.day`` was deprecated (RFC 9745 ``Deprecation``), and when it goes: the
#: first release after this instant accepts ``effective`` only (RFC 8594 ``Sunset``).
DAY_DEPRECATED_AT = datetime(2026, 12, 5, tzinfo=UTC)
DAY_SUNSET_AT = datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC)


class Problem(BaseModel):
    """An RFC 9457 problem detail (``application/problem+json``)."""

    type: str = Field(
        default="about:blank",
        max_length=256,
        json_schema_extra={"format": "uri-reference"},
        description="the problem type (``about:blank``: the status says it all)",
    )
    title: str = Field(max_length=64, pattern=r"^[A-Za-z0-9 -]+$", description="the status's name")
    status: int = Field(ge=400, le=599, json_schema_extra=_INT32)
    detail: Message | None = Field(
        default=None, description="what was wrong: field names and rules, never a value sent"
    )


class OutcomeIssue(BaseModel):
    """One issue of an OperationOutcome: how bad, its FHIR issue type, and what was wrong."""

    severity: Literal["fatal", "error", "warning", "information"]
    code: str = Field(
        max_length=32, pattern=r"^[a-z-]+$", description="FHIR issue type (R4 ValueSet issue-type)"
    )
    diagnostics: Message | None = Field(
        default=None, description="what was wrong: parameters and rules, never a value sent"
    )


class OperationOutcome(BaseModel):
    """A FHIR R4 OperationOutcome (``application/fhir+json``): how ``/fhir`` answers an error."""

    resource_type: Literal["OperationOutcome"] = Field(alias="resourceType")
    issue: list[OutcomeIssue] = Field(min_length=1, max_length=1)


class HealthOut(BaseModel):
    """A health probe's answer."""

    status: Literal["alive", "ready", "not ready"]


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
    prior_episodes: Annotated[int, Field(ge=0, le=50, json_schema_extra=_INT32)] | None = Field(
        default=None, description="depressive episodes before the current one"
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


def _short_instant(value: object) -> object:
    # ISO 8601 allows any number of fraction digits; the document promises at most 64 characters.
    if isinstance(value, str) and len(value) > _MAX_INSTANT_CHARS:
        raise ValueError(f"an ISO 8601 date-time of at most {_MAX_INSTANT_CHARS} characters")
    return value


_MAX_INSTANT_CHARS = 64
#: An instant a request gives: ISO 8601 with a UTC offset.
InstantIn = Annotated[
    AwareDatetime,
    BeforeValidator(_short_instant),
    Field(json_schema_extra={"maxLength": _MAX_INSTANT_CHARS}),
]
#: An enrolment instant (day 0 of a patient's time axis), with a UTC offset.
Enrolment = Annotated[InstantIn, AfterValidator(_plausible_enrolment)]


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

    patient_id: OpaqueId


class PatientOut(BaseModel):
    """A patient as their care team sees them."""

    patient_id: OpaqueId
    care_team: CareTeam
    name: str = Field(max_length=200)
    birth_date: str = Field(
        min_length=10,
        max_length=10,
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        description="YYYY-MM-DD",
    )
    mrn: str = Field(max_length=64)
    contact: str | None = Field(max_length=200)
    enrolled_at: Instant | None = Field(
        default=None, description="day 0 of the patient's time axis (ISO 8601 with offset)"
    )
    identifiers: list[IdentifierIn] = Field(
        default_factory=list,
        max_length=32,
        description="external identifiers the patient is matched by",
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

    When: exactly one of ``effective`` (an instant with a UTC offset, placed on the patient's
    time axis from their enrolment) or ``day`` (deprecated: days since the enrolment).

    What: exactly one of ``payload`` (the event codec's form, ``{"type": "phq9", "total": 14}``)
    or ``loinc`` (a LOINC-coded value, see :mod:`twin.domain.loinc`).
    """

    model_config = _STRICT

    idempotency_key: str = Field(min_length=1, max_length=128, pattern=r"^[\x20-\x7e]+$")
    effective: Timestamp | None = Field(
        default=None,
        description="when it happened: ISO 8601 with a UTC offset (2024-03-05T09:30:00+01:00), "
        "from the patient's enrolment to a day after the present; at most 10 years after the "
        "patient's latest event",
    )
    day: float | None = Field(
        default=None, ge=0.0, le=MAX_DAY, allow_inf_nan=False,
        description="deprecated (use effective; accepted until the sunset date the Sunset header "
        "gives): days since the patient's enrolment (at most 100 years; at most 10 years after "
        "the patient's latest event)",
        json_schema_extra={"deprecated": True},
    )  # fmt: skip
    payload: dict[str, Any] | None = Field(default=None, max_length=16)
    loinc: LoincValue | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ObservationIn:
        if (self.effective is None) == (self.day is None):
            raise ValueError("give exactly one of effective or day")
        if (self.payload is None) == (self.loinc is None):
            raise ValueError("give exactly one of payload or loinc")
        return self


class ObservationBatch(BaseModel):
    """Up to 1,000 events in time order."""

    model_config = _STRICT

    items: list[ObservationIn] = Field(min_length=1, max_length=1000)


class AckOut(BaseModel):
    """The acknowledgement of one event."""

    seq: Seq
    duplicate: bool
    rejected: Message | None = Field(
        default=None,
        description="stored, but the twin could not apply it (e.g. a dose of a drug that is "
        "not prescribed): why; it changed nothing in the estimate",
    )
    day: float | None = Field(
        default=None,
        ge=0.0,
        le=MAX_DAY,
        description="the twin day the event was placed on; null for a duplicate (the event "
        "first stored with this key stands)",
    )
    effective: Timestamp | None = Field(
        default=None,
        description="that day as an instant (UTC); null for a duplicate, or for a patient "
        "registered without an enrolment",
    )


class AlertOut(BaseModel):
    """An alert raised by an update."""

    rule: AlertRule
    status: Literal["fired", "insufficient_data"]
    severity: Literal["critical", "warning", "info"]
    seq: Seq
    detail: Message
    day: float | None = Field(
        default=None, ge=0.0, le=1e6, description="the twin day the alert is about"
    )
    at: Timestamp | None = Field(
        default=None, description="that day as an instant (UTC), when the patient has an enrolment"
    )


class IngestOut(BaseModel):
    """Acknowledged sequence numbers and the alerts the events raised."""

    acknowledged: list[AckOut] = Field(max_length=MAX_BATCH)
    alerts: list[AlertOut] = Field(max_length=MAX_BATCH * ALERT_RULES_BOUND)
    last_seq: Seq


class TwinOut(BaseModel):
    """The twin's current estimate with uncertainty.

    ``severity_*`` are latent PHQ-9 points; ``p_severe`` = P(severity >= 15); ``alert_flags``
    are the alert rules fired in the last 28 days.
    """

    patient_id: OpaqueId
    last_seq: Seq
    day: Day
    severity_mean: float
    severity_sd: float = Field(ge=0.0)
    anxiety_mean: float
    p_episode: Probability
    p_severe: Probability
    alert_flags: list[AlertRule] = Field(max_length=ALERT_RULES_BOUND)
    model_version: ModelVersion
    as_of: Timestamp | None = Field(
        default=None,
        description="the instant the estimate describes, the start of twin day `day` (UTC); "
        "null for a patient registered without an enrolment",
    )


class PatientPage(BaseModel):
    """A page of patient ids; pass ``next_after`` as ``after`` for the next page."""

    items: list[OpaqueId] = Field(max_length=500)
    next_after: OpaqueId | None


class ErasedOut(BaseModel):
    """The outcome of an erasure (crypto-shredding)."""

    patient_id: OpaqueId
    erased: bool
    documents_deleted: Count


class ProbabilityOut(BaseModel):
    """A Monte-Carlo probability with its standard error, or ``None`` with a reason."""

    value: Probability | None
    mc_se: float | None = Field(ge=0.0)
    reason: Message | None = None


class ForecastIn(BaseModel):
    """A forecast request: horizon in weeks and the scenario (default: continue as now)."""

    model_config = _STRICT

    weeks: int = Field(default=12, ge=1, le=MAX_WEEKS, json_schema_extra=_INT32)
    scenario: Scenario = Field(default_factory=Scenario)


class ForecastOut(BaseModel):
    """A forecast (see :class:`twin.forecast.summary.Forecast`).

    Quantile levels are in ``quantile_levels``; probability keys are week numbers.
    """

    scenario: ScenarioName
    weeks: list[Week] = Field(max_length=MAX_WEEKS)
    quantile_levels: list[Probability] = Field(max_length=_QUANTILES)
    phq9_quantiles: list[Annotated[list[Phq9Score], Field(max_length=_QUANTILES)]] = Field(
        max_length=MAX_WEEKS
    )
    gad7_quantiles: list[Annotated[list[Gad7Score], Field(max_length=_QUANTILES)]] = Field(
        max_length=MAX_WEEKS
    )
    severity_quantiles: list[Annotated[list[float], Field(max_length=_QUANTILES)]] = Field(
        max_length=MAX_WEEKS
    )
    response: dict[int, ProbabilityOut] = Field(max_length=MAX_WEEKS)
    remission: dict[int, ProbabilityOut] = Field(max_length=MAX_WEEKS)
    deterioration: dict[int, ProbabilityOut] = Field(max_length=MAX_WEEKS)
    median_weeks_to_remission: Week | None
    model_version: ModelVersion
    as_of_day: Day
    last_seq: Seq
    days_since: dict[str, float] = Field(max_length=32)
    particles: int = Field(ge=1, le=100_000, json_schema_extra=_INT32)
    as_of: Timestamp | None = Field(
        default=None,
        description="the instant the forecast starts, the start of twin day `as_of_day` (UTC); "
        "null for a patient registered without an enrolment",
    )
    times: list[Timestamp] | None = Field(
        default=None,
        max_length=MAX_WEEKS,
        description="per week of `weeks`, the instant its values describe: `as_of` + 7 days "
        "per week (UTC)",
    )


class ContrastOut(BaseModel):
    """Scenario ``b`` against ``a`` on one posterior (negative differences: ``b`` better)."""

    a: ScenarioName
    b: ScenarioName
    weeks: list[Week] = Field(max_length=MAX_WEEKS)
    difference_quantiles: list[Annotated[list[float], Field(max_length=_QUANTILES)]] = Field(
        max_length=MAX_WEEKS
    )
    mean_difference: list[float] = Field(max_length=MAX_WEEKS)
    p_b_better_by_5: list[Probability] = Field(max_length=MAX_WEEKS)
    remission_risk_change: dict[int, float] = Field(max_length=MAX_WEEKS)
    response_risk_change: dict[int, float] = Field(max_length=MAX_WEEKS)


class ScenarioReportIn(BaseModel):
    """Compare 2..6 scenarios (each against the first) and save the result as a document."""

    model_config = _STRICT

    title: Line = Field(min_length=1, max_length=120)
    weeks: int = Field(default=12, ge=1, le=MAX_WEEKS, json_schema_extra=_INT32)
    scenarios: list[Scenario] = Field(min_length=2, max_length=6)


class ScenarioReportOut(BaseModel):
    """A saved scenario comparison."""

    report_id: OpaqueId
    patient_id: OpaqueId
    title: Line = Field(max_length=120)
    created_at: float = Field(ge=0.0, le=1e10, description="Unix seconds")
    forecasts: list[ForecastOut] = Field(max_length=6)
    contrasts: list[ContrastOut] = Field(max_length=5)


class ScenarioReportPage(BaseModel):
    """A page of saved reports (ids and titles); ``next_after`` continues."""

    # report_id, title (strings) and created_at (Unix seconds) of each report.
    items: list[dict[str, Annotated[str, StringConstraints(max_length=120)] | float]] = Field(
        max_length=100
    )
    next_after: OpaqueId | None


class _IndexedTwin(BaseModel):
    """A twin's summary as the search index holds it (``updated_at`` in Unix seconds).

    ``severity_*`` are latent PHQ-9 points; ``p_severe`` = P(severity >= 15).
    """

    last_seq: Seq
    day: Day = Field(description="the twin's day (days since enrolment)")
    severity_mean: float
    severity_sd: float = Field(ge=0.0)
    p_episode: Probability
    p_severe: Probability
    alert_flags: list[AlertRule] = Field(max_length=ALERT_RULES_BOUND)
    updated_at: float = Field(ge=0.0, le=1e10, description="Unix seconds")


class TwinIndexOut(_IndexedTwin):
    """A twin as the search index holds it (``updated_at`` in Unix seconds)."""

    patient_id: OpaqueId


class TwinPage(BaseModel):
    """Twin search results (the caller's patients only), most severe first."""

    items: list[TwinIndexOut] = Field(max_length=500)


#: Caseload orders: a twin summary field, ``-`` first for descending.
CaseloadSort = Literal[
    "-severity", "severity", "-p_severe", "p_severe", "-updated_at", "updated_at", "patient_id"
]


class TwinSummaryOut(_IndexedTwin):
    """A twin's latest estimate as the caseload shows it, with the instant it describes."""

    as_of: Timestamp | None = Field(
        default=None,
        description="the instant the estimate describes, the start of twin day `day` (UTC); "
        "null for a patient registered without an enrolment",
    )


class CaseloadItem(BaseModel):
    """A patient of the caller's care teams with their twin's summary (``None``: no events yet)."""

    patient_id: OpaqueId
    care_team: CareTeam
    name: str = Field(max_length=200)
    birth_date: str = Field(
        min_length=10, max_length=10, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        description="YYYY-MM-DD",
    )  # fmt: skip
    mrn: str = Field(max_length=64)
    enrolled_at: Instant | None = Field(
        default=None, description="day 0 of the patient's time axis (ISO 8601 with offset)"
    )
    twin: TwinSummaryOut | None


class CaseloadPage(BaseModel):
    """A page of the caseload; pass ``next_after`` as ``after`` (same ``sort``) for the next."""

    items: list[CaseloadItem] = Field(max_length=200)
    next_after: (
        Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_-]+$")]
        | None
    ) = Field(description="an opaque cursor; null on the last page")


class ResearchTwinOut(BaseModel):
    """A de-identified twin summary: keyed pseudonym, no identifiers, no patient id.

    Dates are shifted: every date of one patient moves by the same secret whole number of
    days (:meth:`twin.domain.deidentify.Deidentifier.date_shift`), so intervals are kept and no
    real date is shown.
    """

    pseudonym: Pseudonym
    record_day: Day | None = Field(
        description="days since the patient's first event (never a day on the ingest "
        "origin's calendar); null for a twin not updated since record days were kept"
    )
    shifted_as_of: DateOut | None = Field(
        default=None,
        description="the date (UTC) the twin's current day began on, shifted by the patient's "
        "secret offset; never the real date. Null without an enrolment",
    )
    shifted_record_start: DateOut | None = Field(
        default=None,
        description="the date the twin day of the patient's first event began on, shifted by "
        "the same offset: shifted_as_of - shifted_record_start = record_day",
    )
    severity_mean: float
    severity_sd: float = Field(ge=0.0)
    p_episode: Probability
    p_severe: Probability
    alert_flags: list[AlertRule] = Field(max_length=ALERT_RULES_BOUND)


class ResearchTwinPage(BaseModel):
    """De-identified twin summaries, most severe first."""

    items: list[ResearchTwinOut] = Field(max_length=1000)


class BreakGlassIn(BaseModel):
    """An emergency-access request: a stated reason and a bounded duration."""

    model_config = _STRICT

    # The audit trail records the reason on one line.
    reason: Text = Field(min_length=10, max_length=500)
    minutes: int = Field(default=30, ge=1, le=24 * 60, json_schema_extra=_INT32)


class BreakGlassOut(BaseModel):
    """A granted emergency access."""

    patient_id: OpaqueId
    expires_at: float = Field(ge=0.0, le=1e10, description="Unix seconds")


class FeedEventOut(BaseModel):
    """One change-feed event (the SSE ``data``); ``seq`` is also the SSE ``id``."""

    seq: Seq
    day: float = Field(ge=0.0, le=MAX_DAY)
    payload: dict[str, Any] = Field(max_length=16)
    effective: Timestamp | None = Field(
        default=None,
        description="when it happened: `day` as an instant (UTC); null for a patient "
        "registered without an enrolment",
    )


class AuditEntryOut(BaseModel):
    """One audit-trail entry with its chain hashes, as stored.

    Lengths only, no patterns: a row altered behind the service's back must still be shown
    (``<malformed>`` where it cannot be), for the auditor to see what the verifier flags.
    """

    seq: StoredSeq
    actor: str = Field(max_length=_AUDIT["actor"], description="the caller's token subject")
    role: str = Field(max_length=_AUDIT["role"])
    action: str = Field(max_length=_AUDIT["action"])
    patient_id: str | None = Field(max_length=_AUDIT["patient_id"])
    outcome: str = Field(max_length=_AUDIT["outcome"], description="allowed or denied")
    purpose: str = Field(max_length=_AUDIT["purpose"])
    at: Instant
    request_id: str = Field(max_length=_AUDIT["request_id"])
    prev_hash: str = Field(max_length=64, description="SHA-256 in hex")
    hash: str = Field(max_length=64, description="SHA-256 in hex")


class AuditPage(BaseModel):
    """A page of the audit trail; ``next_after`` continues."""

    items: list[AuditEntryOut] = Field(max_length=1000)
    next_after: StoredSeq | None


class AuditAnchorOut(BaseModel):
    """A head of the audit chain, anchored where the database's writers cannot change it."""

    entries: Seq = Field(description="chain length when anchored (the anchored entry's seq)")
    head_hash: Sha256Hex
    at: Instant


class AuditVerifyOut(BaseModel):
    """The result of recomputing the audit chain and holding it to its anchors."""

    ok: bool
    entries: Count
    head_hash: Sha256Hex | None
    first_bad_seq: StoredSeq | None
    reason: Message | None
    anchors_checked: Count = Field(default=0, description="anchors compared with the chain")
    latest_anchor: AuditAnchorOut | None = Field(
        default=None, description="the anchor of the longest chain (the newest of that length)"
    )
    contradicted_anchor: AuditAnchorOut | None = Field(
        default=None,
        description="the first anchor (fewest entries) the chain contradicts: rewritten after "
        "it was anchored, truncated below it, or a forged anchor",
    )
    contradicted_anchors: list[AuditAnchorOut] = Field(
        default_factory=list,
        max_length=REPORT_LIST_MAX,
        description="the first anchors the chain contradicts, fewest entries first",
    )
    contradicted_count: Count = Field(default=0, description="anchors contradicted in all")
    conflicting_lengths: list[Seq] = Field(
        default_factory=list,
        max_length=REPORT_LIST_MAX,
        description="lengths anchored with different hashes, one of them agreeing with the "
        "chain: a forged anchor, or a chain rewritten and anchored again",
    )
    unreadable_anchors: list[Message] = Field(
        default_factory=list,
        max_length=REPORT_LIST_MAX,
        description="stored items that are not anchors, named by their place in the store",
    )
    unreadable_count: Count = Field(default=0, description="unreadable anchors in all")
    warnings: list[Message] = Field(
        default_factory=list,
        max_length=REPORT_LIST_MAX,
        description="what should be looked at without failing the verification (local use: "
        "a missing or stale latest anchor; a last anchor line cut by a crash)",
    )


class IngestReportOut(BaseModel):
    """What a bulk-ingest job did (``records = appended + duplicates + quarantined``)."""

    records: Count
    appended: Count
    duplicates: Count
    quarantined: Count
    reasons: dict[str, Count] = Field(description="quarantined records by reason")
    patients: Count = Field(description="patients that received new events")
    registered: Count = Field(default=0, description="patients registered from Patient resources")
    seconds: float = Field(ge=0.0)


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
    origin: InstantIn | None = None
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

    job_id: OpaqueId
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    submitted_by: Subject | None = Field(default=None, description="the submitter's token subject")
    attempts: int = Field(
        default=0,
        ge=0,
        le=_MAX_ATTEMPTS,
        json_schema_extra=_INT32,
        description="times the job runner started it (a run cut short is re-run once)",
    )
    format: str = Field(max_length=32, pattern=r"^[a-z0-9-]+$")
    sources: int = Field(
        ge=0, le=1000, json_schema_extra=_INT32, description="how many paths the job was given"
    )
    submitted_at: Instant | None = Field(default=None, description="UTC, ISO 8601 (API jobs)")
    started_at: Instant | None = Field(default=None, description="UTC, ISO 8601")
    finished_at: Instant | None = None
    records_read: Count | None = Field(
        default=None, description="records parsed from the sources (once they are all read)"
    )
    records_done: Count | None = Field(
        default=None,
        description="records with an outcome so far: appended, duplicate or quarantined",
    )
    report: IngestReportOut | None = None
    error: Message | None = Field(default=None, description="why it failed (no values)")


class IngestJobPage(BaseModel):
    """Bulk-ingest jobs, oldest first; pass ``next_after`` as ``after`` for the next page."""

    items: list[IngestJobOut] = Field(max_length=200)
    next_after: OpaqueId | None


class CohortFilter(BaseModel):
    """Twins selected by their index entries (most severe first, at most ``limit``)."""

    model_config = ConfigDict(extra="forbid")

    min_severity: float | None = Field(default=None, ge=0.0, le=27.0, allow_inf_nan=False)
    min_p_severe: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    alert: str | None = Field(default=None, max_length=64, pattern=r"^[a-z0-9_]+$")
    limit: int = Field(default=10_000, ge=1, le=1_000_000, json_schema_extra=_INT32)


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
    weeks: int = Field(default=12, ge=1, le=MAX_WEEKS, json_schema_extra=_INT32)
    seed: int = Field(default=0, ge=0, lt=2**62, json_schema_extra=_INT64)
    particles: int = Field(default=2000, ge=10, le=20_000, json_schema_extra=_INT32)

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

    job_id: OpaqueId
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    submitted_by: Subject | None = Field(default=None, description="the submitter's token subject")
    attempts: int = Field(
        default=0,
        ge=0,
        le=_MAX_ATTEMPTS,
        json_schema_extra=_INT32,
        description="times the job runner started it (a run cut short is re-run once)",
    )
    selection: Literal["filter", "pseudonyms", "synthetic"]
    scenarios: list[ScenarioName] = Field(max_length=MAX_COHORT_SCENARIOS)
    weeks: Week
    seed: int = Field(ge=0, lt=2**62, json_schema_extra=_INT64)
    submitted_at: Instant = Field(description="UTC, ISO 8601")
    finished_at: Instant | None = None
    patients_total: Count | None = Field(default=None, description="twins selected")
    patients_done: Count = 0
    skipped: dict[str, Count] = Field(default_factory=dict, description="twins left out, by reason")
    seconds: float | None = Field(default=None, ge=0.0)
    result_pages: Count = 0
    aggregate: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=MAX_COHORT_SCENARIOS * MAX_WEEKS,
        description="one row per (scenario, week)",
    )
    output: str | None = Field(
        default=None, max_length=4096, description="where the Parquet files are"
    )
    error: Message | None = Field(default=None, description="why it failed (no values)")


class CohortRunPage(BaseModel):
    """Cohort runs, oldest first; pass ``next_after`` as ``after`` for the next page."""

    items: list[CohortRunOut] = Field(max_length=200)
    next_after: OpaqueId | None


class CohortPatientPage(BaseModel):
    """One page of a run's per-(patient, scenario) rows, by pseudonym; ``next_page`` continues."""

    items: list[dict[str, Any]] = Field(max_length=COHORT_PAGE_ROWS)
    page: int = Field(ge=0, le=999_999, json_schema_extra=_INT32)
    next_page: Annotated[int, Field(ge=1, le=999_999, json_schema_extra=_INT32)] | None
