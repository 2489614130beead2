"""``Client`` and ``AsyncClient``: the same typed methods, blocking or ``async``.

Each route is described once, as a :class:`_Call` built by :class:`_Routes` (method, path,
parameters, body, response model); the two clients only differ in how they send it. Retries
(tenacity): 429 and 503 answers, a gateway's 500, 502 or 504 (an answer without a problem
document: the proxy's, when the server behind it was lost mid-request) and transport errors, up
to ``RetryPolicy.attempts`` tries,
waiting ``max(Retry-After, exponential backoff with jitter)``; requests that change state are
retried only when they carry idempotency keys (ingest) or are naturally idempotent (reads,
erase), never a patient creation.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import httpx
import httpx_sse
from pydantic import BaseModel, TypeAdapter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from twin import errors, schemas
from twin.client.cohorts import Cohorts
from twin.domain import codec, events
from twin.domain.specs import Scenario

__all__ = ["AsyncClient", "Client", "RetryPolicy", "observation"]

T = TypeVar("T")
Method = Literal["GET", "POST", "DELETE"]


def observation(
    payload: events.Payload,
    *,
    effective: datetime | None = None,
    day: float | None = None,
    key: str | None = None,
) -> schemas.ObservationIn:
    """An event for :meth:`Client.add_observations` / :meth:`Client.add_interventions`.

    Args:
        payload: What happened (``events.Phq9(14)``, ``events.Prescription("sertraline", 50)``).
        effective: When it happened: an aware ``datetime`` (any time zone), from the patient's
            enrolment to a day after the present. The server places it on the twin's axis.
        day: Deprecated (give ``effective``): days since the patient's enrolment. Warns with
            a ``DeprecationWarning``; the server stops reading it after
            :data:`twin.schemas.DAY_SUNSET_AT`.
        key: Idempotency key; a random one when ``None`` (retries of one call reuse it).

    Raises:
        InvalidInputError: Neither or both of ``effective`` and ``day``, or a naive
            ``effective`` (a wall-clock time names no instant).
    """
    if (effective is None) == (day is None):
        raise errors.InvalidInputError("give exactly one of effective or day")
    if effective is not None and (effective.tzinfo is None or effective.utcoffset() is None):
        raise errors.InvalidInputError(
            "effective: an aware datetime is required (e.g. datetime(..., tzinfo=UTC))"
        )
    if day is not None:
        warnings.warn(
            "observation(day=...) is deprecated: give effective=<aware datetime>; the server "
            f"stops reading day after {schemas.DAY_SUNSET_AT.date().isoformat()}",
            DeprecationWarning,
            stacklevel=2,
        )
    return schemas.ObservationIn(
        idempotency_key=key or uuid.uuid4().hex,
        effective=effective,
        day=day,
        payload=codec.encode(payload),
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry behaviour: ``attempts`` tries in all, backoff from ``initial_s`` up to ``max_s``."""

    attempts: int = 5
    initial_s: float = 0.2
    max_s: float = 10.0


@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    method: Method
    path: str
    adapter: TypeAdapter[T] | None
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    retry: bool = True


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _caseload_filters(
    care_team: str | None,
    min_severity: float | None,
    min_p_severe: float | None,
    alert: str | None,
    updated_since: float | None,
    sort: str,
) -> dict[str, Any]:
    return {
        "care_team": care_team, "min_severity": min_severity, "min_p_severe": min_p_severe,
        "alert": alert, "updated_since": updated_since, "sort": sort,
    }  # fmt: skip


class _Routes:
    """One :class:`_Call` per API route (paths, parameters, response types)."""

    @staticmethod
    def patient_body(
        name: str,
        birth_date: str,
        mrn: str,
        care_team: str,
        contact: str | None,
        covariates: schemas.CovariatesIn | None,
        enrolled_at: str | datetime | None,
        identifiers: Sequence[tuple[str, str]],
    ) -> schemas.PatientCreate:
        return schemas.PatientCreate.model_validate(
            {"name": name, "birth_date": birth_date, "mrn": mrn, "contact": contact,
             "care_team": care_team, "covariates": covariates, "enrolled_at": enrolled_at,
             "identifiers": [{"system": system, "value": value} for system, value in identifiers]}
        )  # fmt: skip

    @staticmethod
    def create_patient(body: schemas.PatientCreate) -> _Call[schemas.PatientCreated]:
        return _Call(
            "POST", "/v1/patients", TypeAdapter(schemas.PatientCreated), body=body, retry=False
        )

    @staticmethod
    def patients(
        care_team: str | None, after: str | None, limit: int
    ) -> _Call[schemas.PatientPage]:
        params = _params(care_team=care_team, after=after, limit=limit)
        return _Call("GET", "/v1/patients", TypeAdapter(schemas.PatientPage), params)

    @staticmethod
    def patient(patient_id: str) -> _Call[schemas.PatientOut]:
        return _Call("GET", f"/v1/patients/{patient_id}", TypeAdapter(schemas.PatientOut))

    @staticmethod
    def erase(patient_id: str) -> _Call[schemas.ErasedOut]:
        return _Call("DELETE", f"/v1/patients/{patient_id}", TypeAdapter(schemas.ErasedOut))

    @staticmethod
    def break_glass(patient_id: str, reason: str, minutes: int) -> _Call[schemas.BreakGlassOut]:
        body = schemas.BreakGlassIn(reason=reason, minutes=minutes)
        path = f"/v1/patients/{patient_id}/break-glass"
        return _Call("POST", path, TypeAdapter(schemas.BreakGlassOut), body=body)

    @staticmethod
    def ingest(
        patient_id: str, kind: str, items: Sequence[schemas.ObservationIn]
    ) -> _Call[schemas.IngestOut]:
        body = schemas.ObservationBatch(items=list(items))
        path = f"/v1/patients/{patient_id}/{kind}"
        return _Call("POST", path, TypeAdapter(schemas.IngestOut), body=body)

    @staticmethod
    def twin(patient_id: str) -> _Call[schemas.TwinOut]:
        return _Call("GET", f"/v1/patients/{patient_id}/twin", TypeAdapter(schemas.TwinOut))

    @staticmethod
    def forecast(
        patient_id: str, weeks: int, scenario: Scenario | None
    ) -> _Call[schemas.ForecastOut]:
        body = schemas.ForecastIn(weeks=weeks, scenario=scenario or Scenario())
        path = f"/v1/patients/{patient_id}/forecast"
        return _Call("POST", path, TypeAdapter(schemas.ForecastOut), body=body)

    @staticmethod
    def compare(
        patient_id: str, title: str, scenarios: Sequence[Scenario], weeks: int
    ) -> _Call[schemas.ScenarioReportOut]:
        body = schemas.ScenarioReportIn(title=title, weeks=weeks, scenarios=list(scenarios))
        path = f"/v1/patients/{patient_id}/scenarios"
        return _Call("POST", path, TypeAdapter(schemas.ScenarioReportOut), body=body, retry=False)

    @staticmethod
    def report(patient_id: str, report_id: str) -> _Call[schemas.ScenarioReportOut]:
        path = f"/v1/patients/{patient_id}/scenarios/{report_id}"
        return _Call("GET", path, TypeAdapter(schemas.ScenarioReportOut))

    @staticmethod
    def reports(
        patient_id: str, after: str | None, limit: int
    ) -> _Call[schemas.ScenarioReportPage]:
        path = f"/v1/patients/{patient_id}/scenarios"
        params = _params(after=after, limit=limit)
        return _Call("GET", path, TypeAdapter(schemas.ScenarioReportPage), params)

    @staticmethod
    def search(
        min_severity: float | None,
        alert: str | None,
        updated_since: float | None,
        min_p_severe: float | None,
        limit: int,
    ) -> _Call[schemas.TwinPage]:
        params = _params(
            min_severity=min_severity,
            alert=alert,
            updated_since=updated_since,
            min_p_severe=min_p_severe,
            limit=limit,
        )
        return _Call("GET", "/v1/twins", TypeAdapter(schemas.TwinPage), params)

    @staticmethod
    def caseload(
        filters: dict[str, Any], after: str | None, limit: int
    ) -> _Call[schemas.CaseloadPage]:
        params = _params(**filters, after=after, limit=limit)
        return _Call("GET", "/v1/caseload", TypeAdapter(schemas.CaseloadPage), params)

    @staticmethod
    def research(
        min_severity: float | None, alert: str | None, limit: int
    ) -> _Call[schemas.ResearchTwinPage]:
        params = _params(min_severity=min_severity, alert=alert, limit=limit)
        return _Call("GET", "/v1/research/twins", TypeAdapter(schemas.ResearchTwinPage), params)

    @staticmethod
    def audit(after: int, limit: int) -> _Call[schemas.AuditPage]:
        return _Call(
            "GET", "/v1/audit", TypeAdapter(schemas.AuditPage), {"after": after, "limit": limit}
        )

    @staticmethod
    def verify_audit(expected_head: str | None, anchors: bool) -> _Call[schemas.AuditVerifyOut]:
        params = _params(expected_head=expected_head, anchors=None if anchors else "false")
        return _Call("GET", "/v1/audit/verify", TypeAdapter(schemas.AuditVerifyOut), params)

    @staticmethod
    def ingest_jobs(after: str | None, limit: int) -> _Call[schemas.IngestJobPage]:
        params = _params(after=after, limit=limit)
        return _Call("GET", "/v1/ingest/jobs", TypeAdapter(schemas.IngestJobPage), params)

    @staticmethod
    def ingest_job(job_id: str) -> _Call[schemas.IngestJobOut]:
        return _Call("GET", f"/v1/ingest/jobs/{job_id}", TypeAdapter(schemas.IngestJobOut))

    @staticmethod
    def ingest_request(
        paths: Sequence[str],
        format: str,
        origin: str | datetime | None,
        care_team: str | None,
        enrolled_at: str | datetime | None,
    ) -> schemas.IngestJobIn:
        return schemas.IngestJobIn.model_validate(
            {"paths": list(paths), "format": format, "origin": origin, "care_team": care_team,
             "enrolled_at": enrolled_at}
        )  # fmt: skip

    @staticmethod
    def submit_ingest_job(body: schemas.IngestJobIn) -> _Call[schemas.IngestJobOut]:
        # A new job per call: never retried (the ingest itself is idempotent, the job is not).
        return _Call(
            "POST", "/v1/ingest/jobs", TypeAdapter(schemas.IngestJobOut), body=body, retry=False
        )

    @staticmethod
    def submit_cohort_run(body: schemas.CohortRunIn) -> _Call[schemas.CohortRunOut]:
        # Each submission is a new run: never retried (a retry could run it twice).
        return _Call(
            "POST", "/v1/cohorts/runs", TypeAdapter(schemas.CohortRunOut), body=body, retry=False
        )

    @staticmethod
    def cohort_runs(after: str | None, limit: int) -> _Call[schemas.CohortRunPage]:
        params = _params(after=after, limit=limit)
        return _Call("GET", "/v1/cohorts/runs", TypeAdapter(schemas.CohortRunPage), params)

    @staticmethod
    def cohort_run(job_id: str) -> _Call[schemas.CohortRunOut]:
        return _Call("GET", f"/v1/cohorts/runs/{job_id}", TypeAdapter(schemas.CohortRunOut))

    @staticmethod
    def cancel_cohort_run(job_id: str) -> _Call[schemas.CohortRunOut]:
        path = f"/v1/cohorts/runs/{job_id}/cancel"
        return _Call("POST", path, TypeAdapter(schemas.CohortRunOut))

    @staticmethod
    def cancel_ingest_job(job_id: str) -> _Call[schemas.IngestJobOut]:
        path = f"/v1/ingest/jobs/{job_id}/cancel"
        return _Call("POST", path, TypeAdapter(schemas.IngestJobOut))

    @staticmethod
    def cohort_patients(job_id: str, page: int) -> _Call[schemas.CohortPatientPage]:
        return _Call(
            "GET",
            f"/v1/cohorts/runs/{job_id}/patients",
            TypeAdapter(schemas.CohortPatientPage),
            {"page": page},
        )

    @staticmethod
    def ready() -> _Call[None]:
        return _Call("GET", "/health/readiness", None, retry=False)


_STATUS_ERRORS: dict[int, type[errors.TwinError]] = {
    401: errors.AuthenticationError,
    403: errors.AuthorizationError,
    404: errors.NotFoundError,
    410: errors.KeyAccessError,
}


#: Statuses a gateway answers for a server it lost (Ray Serve's proxy: 500 for a replica that
#: died mid-request, and a plain-text 404 while its route table is still empty after the
#: ingress restarted).
_GATEWAY = frozenset({404, 500, 502, 504})


def raise_for_problem(response: httpx.Response) -> None:
    """Raise the :mod:`twin.errors` exception of a non-2xx answer (problem+json)."""
    if response.is_success:
        return
    status = response.status_code
    try:
        problem = schemas.Problem.model_validate(response.json())
        title, detail = problem.title, problem.detail
    except ValueError:
        if status in _GATEWAY:
            # Not the API's answer (it always sends a problem document): a proxy's, for a
            # server lost mid-request. Worth another try where one is safe.
            raise errors.UpstreamLostError(status) from None
        title, detail = response.reason_phrase, None
    message = detail or title
    if status in (429, 503):
        retry_after = response.headers.get("retry-after", "1")
        wait = int(retry_after) if retry_after.isdigit() else 1
        if status == 429 and detail is not None and detail.startswith("at most"):
            # A limit on what the caller holds (jobs, streams): retrying soon will not help.
            raise errors.ConcurrencyLimitError(wait, detail.split("; retry after")[0])
        raise (errors.RateLimitedError if status == 429 else errors.OverloadedError)(wait)
    if status in _STATUS_ERRORS:
        raise _STATUS_ERRORS[status](message)
    if status in (400, 409, 413, 422):
        raise errors.InvalidInputError(message)
    raise errors.ApiError(status, title, detail)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, errors.ConcurrencyLimitError):
        return False
    return isinstance(
        exc,
        errors.RateLimitedError
        | errors.OverloadedError
        | errors.UpstreamLostError
        | httpx.TransportError,
    )


def _waiter(policy: RetryPolicy) -> Any:
    backoff = wait_exponential_jitter(
        multiplier=policy.initial_s, max=policy.max_s, jitter=policy.initial_s
    )

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        told = float(getattr(exc, "retry_after_s", 0) or 0)
        return max(told, float(backoff(state)))

    return wait


def _retry_kwargs(policy: RetryPolicy, call: _Call[Any]) -> dict[str, Any]:
    return {
        "stop": stop_after_attempt(policy.attempts if call.retry else 1),
        "wait": _waiter(policy),
        "retry": retry_if_exception(_retryable),
        "reraise": True,
    }


def _request_kwargs(call: _Call[Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"params": call.params}
    if call.body is not None:
        kwargs["content"] = (
            call.body.model_dump_json(exclude_none=True)
            if isinstance(call.body, BaseModel)
            else call.body
        )
        kwargs["headers"] = {"content-type": "application/json"}
    return kwargs


def _parse(call: _Call[T], response: httpx.Response) -> T:
    raise_for_problem(response)
    if call.adapter is None:
        return None  # type: ignore[return-value]
    return call.adapter.validate_json(response.content)


def _feed_event(sse: httpx_sse.ServerSentEvent) -> schemas.FeedEventOut | None:
    if sse.event != "event":
        return None
    return schemas.FeedEventOut.model_validate_json(sse.data)


def _headers(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "accept": "application/json"}


class Client:
    """The blocking client.

    Args:
        base_url: The API's base URL, e.g. ``http://127.0.0.1:8000``.
        token: Bearer token (JWT).
        timeout_s: Per-request timeout.
        retry: Retry behaviour.
        transport: An httpx transport (tests: ``httpx.ASGITransport``... via AsyncClient).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(token), timeout=timeout_s, transport=transport
        )
        self._retry = retry or RetryPolicy()
        #: Cohort what-if runs with job handles (``client.cohorts.run(...)``).
        self.cohorts = Cohorts(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _run(self, call: _Call[T]) -> T:
        for attempt in Retrying(**_retry_kwargs(self._retry, call)):
            with attempt:
                response = self._http.request(call.method, call.path, **_request_kwargs(call))
                return _parse(call, response)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _pages(self, calls: Any) -> Iterator[Any]:
        after: Any = None
        while True:
            page = self._run(calls(after))
            yield from page.items
            if page.next_after is None:
                return
            after = page.next_after

    # -- patients ------------------------------------------------------------------------

    def create_patient(
        self,
        *,
        name: str,
        birth_date: str,
        mrn: str,
        care_team: str,
        contact: str | None = None,
        covariates: schemas.CovariatesIn | None = None,
        enrolled_at: str | datetime | None = None,
        identifiers: Sequence[tuple[str, str]] = (),
    ) -> str:
        """Register a patient; returns the opaque patient id.

        ``covariates`` if known; ``enrolled_at`` (an aware ``datetime``, or ISO 8601 with an
        offset) is day 0 of the patient's time axis (default: now); ``identifiers`` are
        ``(system, value)`` pairs bulk ingest matches the patient's records by.
        """
        body = _Routes.patient_body(
            name, birth_date, mrn, care_team, contact, covariates, enrolled_at, identifiers
        )
        return self._run(_Routes.create_patient(body)).patient_id

    def patient(self, patient_id: str) -> schemas.PatientOut:
        """A patient's identifiers (care team or emergency access)."""
        return self._run(_Routes.patient(patient_id))

    def iter_patients(self, care_team: str | None = None, *, page_size: int = 100) -> Iterator[str]:
        """Every patient id of a care team, page by page."""
        return self._pages(lambda after: _Routes.patients(care_team, after, page_size))

    def erase_patient(self, patient_id: str) -> schemas.ErasedOut:
        """Crypto-shred a patient (admin)."""
        return self._run(_Routes.erase(patient_id))

    def break_glass(
        self, patient_id: str, *, reason: str, minutes: int = 30
    ) -> schemas.BreakGlassOut:
        """Emergency access to a patient outside the caller's care team."""
        return self._run(_Routes.break_glass(patient_id, reason, minutes))

    # -- events --------------------------------------------------------------------------

    def add_observations(
        self, patient_id: str, items: Sequence[schemas.ObservationIn]
    ) -> schemas.IngestOut:
        """Send observations (acknowledged once durable; safe to retry)."""
        return self._run(_Routes.ingest(patient_id, "observations", items))

    def add_interventions(
        self, patient_id: str, items: Sequence[schemas.ObservationIn]
    ) -> schemas.IngestOut:
        """Send interventions (medication, therapy sessions, adherence, care)."""
        return self._run(_Routes.ingest(patient_id, "interventions", items))

    def events(
        self, patient_id: str, *, after: int = 0, follow: bool = False, max_s: float = 300.0
    ) -> Iterator[schemas.FeedEventOut]:
        """The patient's events after ``after``; with ``follow``, new ones as they arrive.

        A dropped connection is resumed from the last event id seen (``Last-Event-ID``).
        """
        last = after
        while True:
            try:
                params = {"follow": str(follow).lower(), "max_s": max_s}
                headers = {"last-event-id": str(last), "accept": "text/event-stream"}
                with httpx_sse.connect_sse(
                    self._http,
                    "GET",
                    f"/v1/patients/{patient_id}/events",
                    params=params,
                    headers=headers,
                ) as source:
                    raise_for_problem(source.response)
                    for sse in source.iter_sse():
                        item = _feed_event(sse)
                        if item is not None:
                            last = item.seq
                            yield item
                return
            except httpx.TransportError:
                if not follow:
                    raise

    # -- twins ---------------------------------------------------------------------------

    def twin(self, patient_id: str) -> schemas.TwinOut:
        """The twin's current estimate."""
        return self._run(_Routes.twin(patient_id))

    def forecast(
        self, patient_id: str, *, weeks: int = 12, scenario: Scenario | None = None
    ) -> schemas.ForecastOut:
        """Forecast under a scenario (default: continue as now)."""
        return self._run(_Routes.forecast(patient_id, weeks, scenario))

    def compare_scenarios(
        self, patient_id: str, *, title: str, scenarios: Sequence[Scenario], weeks: int = 12
    ) -> schemas.ScenarioReportOut:
        """Compare scenarios (each against the first) and save the report."""
        return self._run(_Routes.compare(patient_id, title, scenarios, weeks))

    def scenario_report(self, patient_id: str, report_id: str) -> schemas.ScenarioReportOut:
        """A saved report."""
        return self._run(_Routes.report(patient_id, report_id))

    def iter_scenario_reports(
        self, patient_id: str, *, page_size: int = 20
    ) -> Iterator[dict[str, str | float]]:
        """The patient's saved reports (ids, titles, times)."""
        return self._pages(lambda after: _Routes.reports(patient_id, after, page_size))

    def search_twins(
        self,
        *,
        min_severity: float | None = None,
        alert: str | None = None,
        updated_since: float | None = None,
        min_p_severe: float | None = None,
        limit: int = 100,
    ) -> list[schemas.TwinIndexOut]:
        """The caller's twins by severity, alert and update time, most severe first."""
        return self._run(
            _Routes.search(min_severity, alert, updated_since, min_p_severe, limit)
        ).items

    def iter_caseload(
        self,
        care_team: str | None = None,
        *,
        min_severity: float | None = None,
        min_p_severe: float | None = None,
        alert: str | None = None,
        updated_since: float | None = None,
        sort: schemas.CaseloadSort = "-severity",
        page_size: int = 50,
    ) -> Iterator[schemas.CaseloadItem]:
        """My patients with their twins' summaries, in ``sort`` order, page by page."""
        filters = _caseload_filters(
            care_team, min_severity, min_p_severe, alert, updated_since, sort
        )
        return self._pages(lambda after: _Routes.caseload(filters, after, page_size))

    def research_twins(
        self, *, min_severity: float | None = None, alert: str | None = None, limit: int = 100
    ) -> list[schemas.ResearchTwinOut]:
        """De-identified twin summaries (researchers)."""
        return self._run(_Routes.research(min_severity, alert, limit)).items

    # -- audit ---------------------------------------------------------------------------

    def iter_audit(
        self, *, after: int = 0, page_size: int = 500
    ) -> Iterator[schemas.AuditEntryOut]:
        """The audit trail from ``after`` on (auditors)."""
        return self._pages(lambda a: _Routes.audit(after if a is None else a, page_size))

    def verify_audit(
        self, *, expected_head: str | None = None, anchors: bool = True
    ) -> schemas.AuditVerifyOut:
        """Recompute the audit chain on the server and hold it to its anchors (auditors)."""
        return self._run(_Routes.verify_audit(expected_head, anchors))

    def ingest_job(self, job_id: str) -> schemas.IngestJobOut:
        """A bulk-ingest job's status and report (admins, services, researchers)."""
        return self._run(_Routes.ingest_job(job_id))

    def iter_ingest_jobs(self, *, page_size: int = 50) -> Iterator[schemas.IngestJobOut]:
        """Every bulk-ingest job, oldest first."""
        return self._pages(lambda after: _Routes.ingest_jobs(after, page_size))

    def submit_ingest_job(
        self,
        paths: Sequence[str],
        *,
        format: str,
        origin: str | datetime | None = None,
        care_team: str | None = None,
        enrolled_at: str | datetime | None = None,
    ) -> schemas.IngestJobOut:
        """Queue a bulk ingest of files under the service's ingest root (admins, services).

        ``format``: ``fhir-ndjson``, ``fhir-bundle``, ``csv`` or ``parquet``. Patient resources
        register patients in ``care_team`` (enrolled at ``enrolled_at``, default their first
        record); ``origin`` is day 0 of patients registered without an enrolment (aware
        ``datetime`` s, or ISO 8601 date-times with a UTC offset). Follow it with
        :meth:`ingest_job`.
        """
        request = _Routes.ingest_request(paths, format, origin, care_team, enrolled_at)
        return self._run(_Routes.submit_ingest_job(request))

    def submit_cohort_run(self, run: schemas.CohortRunIn) -> schemas.CohortRunOut:
        """Queue a cohort what-if run (researchers); see :attr:`cohorts` for a handle."""
        return self._run(_Routes.submit_cohort_run(run))

    def cohort_run(self, job_id: str) -> schemas.CohortRunOut:
        """A cohort run's status, progress and (once finished) aggregate."""
        return self._run(_Routes.cohort_run(job_id))

    def cancel_cohort_run(self, job_id: str) -> schemas.CohortRunOut:
        """Cancel one of your cohort runs (a running one stops at its next progress update)."""
        return self._run(_Routes.cancel_cohort_run(job_id))

    def cancel_ingest_job(self, job_id: str) -> schemas.IngestJobOut:
        """Cancel a bulk-ingest job (admins, services); appended records stay."""
        return self._run(_Routes.cancel_ingest_job(job_id))

    def iter_cohort_runs(self, *, page_size: int = 50) -> Iterator[schemas.CohortRunOut]:
        """Every cohort run, oldest first."""
        return self._pages(lambda after: _Routes.cohort_runs(after, page_size))

    def iter_cohort_rows(self, job_id: str) -> Iterator[dict[str, Any]]:
        """A finished run's per-(patient, scenario) rows, by pseudonym."""
        page: int | None = 0
        while page is not None:
            found = self._run(_Routes.cohort_patients(job_id, page))
            yield from found.items
            page = found.next_page

    def ready(self) -> bool:
        """Whether the service and all its dependencies are ready."""
        try:
            self._run(_Routes.ready())
        except errors.OverloadedError:
            return False
        return True


class AsyncClient:
    """The ``async`` client: the same methods as :class:`Client`, awaited.

    Args:
        base_url: The API's base URL.
        token: Bearer token (JWT).
        timeout_s: Per-request timeout.
        retry: Retry behaviour.
        transport: An httpx async transport (``httpx.ASGITransport(app)`` runs in process).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(token), timeout=timeout_s, transport=transport
        )
        self._retry = retry or RetryPolicy()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _run(self, call: _Call[T]) -> T:
        async for attempt in AsyncRetrying(**_retry_kwargs(self._retry, call)):
            with attempt:
                response = await self._http.request(call.method, call.path, **_request_kwargs(call))
                return _parse(call, response)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _pages(self, calls: Any) -> AsyncIterator[Any]:
        after: Any = None
        while True:
            page = await self._run(calls(after))
            for item in page.items:
                yield item
            if page.next_after is None:
                return
            after = page.next_after

    async def create_patient(
        self,
        *,
        name: str,
        birth_date: str,
        mrn: str,
        care_team: str,
        contact: str | None = None,
        covariates: schemas.CovariatesIn | None = None,
        enrolled_at: str | datetime | None = None,
        identifiers: Sequence[tuple[str, str]] = (),
    ) -> str:
        """Register a patient; returns the opaque patient id.

        ``covariates`` if known; ``enrolled_at`` (an aware ``datetime``, or ISO 8601 with an
        offset) is day 0 of the patient's time axis (default: now); ``identifiers`` are
        ``(system, value)`` pairs bulk ingest matches the patient's records by.
        """
        body = _Routes.patient_body(
            name, birth_date, mrn, care_team, contact, covariates, enrolled_at, identifiers
        )
        return (await self._run(_Routes.create_patient(body))).patient_id

    async def patient(self, patient_id: str) -> schemas.PatientOut:
        """A patient's identifiers."""
        return await self._run(_Routes.patient(patient_id))

    def iter_patients(
        self, care_team: str | None = None, *, page_size: int = 100
    ) -> AsyncIterator[str]:
        """Every patient id of a care team, page by page."""
        return self._pages(lambda after: _Routes.patients(care_team, after, page_size))

    async def erase_patient(self, patient_id: str) -> schemas.ErasedOut:
        """Crypto-shred a patient (admin)."""
        return await self._run(_Routes.erase(patient_id))

    async def break_glass(
        self, patient_id: str, *, reason: str, minutes: int = 30
    ) -> schemas.BreakGlassOut:
        """Emergency access to a patient outside the caller's care team."""
        return await self._run(_Routes.break_glass(patient_id, reason, minutes))

    async def add_observations(
        self, patient_id: str, items: Sequence[schemas.ObservationIn]
    ) -> schemas.IngestOut:
        """Send observations (acknowledged once durable; safe to retry)."""
        return await self._run(_Routes.ingest(patient_id, "observations", items))

    async def add_interventions(
        self, patient_id: str, items: Sequence[schemas.ObservationIn]
    ) -> schemas.IngestOut:
        """Send interventions."""
        return await self._run(_Routes.ingest(patient_id, "interventions", items))

    async def events(
        self, patient_id: str, *, after: int = 0, follow: bool = False, max_s: float = 300.0
    ) -> AsyncIterator[schemas.FeedEventOut]:
        """The patient's events after ``after`` (see :meth:`Client.events`)."""
        last = after
        while True:
            try:
                params = {"follow": str(follow).lower(), "max_s": max_s}
                headers = {"last-event-id": str(last), "accept": "text/event-stream"}
                async with httpx_sse.aconnect_sse(
                    self._http,
                    "GET",
                    f"/v1/patients/{patient_id}/events",
                    params=params,
                    headers=headers,
                ) as source:
                    if not source.response.is_success:
                        await source.response.aread()
                    raise_for_problem(source.response)
                    async for sse in source.aiter_sse():
                        item = _feed_event(sse)
                        if item is not None:
                            last = item.seq
                            yield item
                return
            except httpx.TransportError:
                if not follow:
                    raise

    async def twin(self, patient_id: str) -> schemas.TwinOut:
        """The twin's current estimate."""
        return await self._run(_Routes.twin(patient_id))

    async def forecast(
        self, patient_id: str, *, weeks: int = 12, scenario: Scenario | None = None
    ) -> schemas.ForecastOut:
        """Forecast under a scenario."""
        return await self._run(_Routes.forecast(patient_id, weeks, scenario))

    async def compare_scenarios(
        self, patient_id: str, *, title: str, scenarios: Sequence[Scenario], weeks: int = 12
    ) -> schemas.ScenarioReportOut:
        """Compare scenarios and save the report."""
        return await self._run(_Routes.compare(patient_id, title, scenarios, weeks))

    async def scenario_report(self, patient_id: str, report_id: str) -> schemas.ScenarioReportOut:
        """A saved report."""
        return await self._run(_Routes.report(patient_id, report_id))

    def iter_scenario_reports(
        self, patient_id: str, *, page_size: int = 20
    ) -> AsyncIterator[dict[str, str | float]]:
        """The patient's saved reports."""
        return self._pages(lambda after: _Routes.reports(patient_id, after, page_size))

    async def search_twins(
        self,
        *,
        min_severity: float | None = None,
        alert: str | None = None,
        updated_since: float | None = None,
        min_p_severe: float | None = None,
        limit: int = 100,
    ) -> list[schemas.TwinIndexOut]:
        """The caller's twins, most severe first."""
        return (
            await self._run(_Routes.search(min_severity, alert, updated_since, min_p_severe, limit))
        ).items

    def iter_caseload(
        self,
        care_team: str | None = None,
        *,
        min_severity: float | None = None,
        min_p_severe: float | None = None,
        alert: str | None = None,
        updated_since: float | None = None,
        sort: schemas.CaseloadSort = "-severity",
        page_size: int = 50,
    ) -> AsyncIterator[schemas.CaseloadItem]:
        """My patients with their twins' summaries, in ``sort`` order, page by page."""
        filters = _caseload_filters(
            care_team, min_severity, min_p_severe, alert, updated_since, sort
        )
        return self._pages(lambda after: _Routes.caseload(filters, after, page_size))

    async def research_twins(
        self, *, min_severity: float | None = None, alert: str | None = None, limit: int = 100
    ) -> list[schemas.ResearchTwinOut]:
        """De-identified twin summaries (researchers)."""
        return (await self._run(_Routes.research(min_severity, alert, limit))).items

    def iter_audit(
        self, *, after: int = 0, page_size: int = 500
    ) -> AsyncIterator[schemas.AuditEntryOut]:
        """The audit trail (auditors)."""
        return self._pages(lambda a: _Routes.audit(after if a is None else a, page_size))

    async def verify_audit(
        self, *, expected_head: str | None = None, anchors: bool = True
    ) -> schemas.AuditVerifyOut:
        """Recompute the audit chain on the server and hold it to its anchors (auditors)."""
        return await self._run(_Routes.verify_audit(expected_head, anchors))

    async def ingest_job(self, job_id: str) -> schemas.IngestJobOut:
        """A bulk-ingest job's status and report."""
        return await self._run(_Routes.ingest_job(job_id))

    def iter_ingest_jobs(self, *, page_size: int = 50) -> AsyncIterator[schemas.IngestJobOut]:
        """Every bulk-ingest job, oldest first."""
        return self._pages(lambda after: _Routes.ingest_jobs(after, page_size))

    async def submit_ingest_job(
        self,
        paths: Sequence[str],
        *,
        format: str,
        origin: str | datetime | None = None,
        care_team: str | None = None,
        enrolled_at: str | datetime | None = None,
    ) -> schemas.IngestJobOut:
        """Queue a bulk ingest of files under the service's ingest root (admins, services)."""
        request = _Routes.ingest_request(paths, format, origin, care_team, enrolled_at)
        return await self._run(_Routes.submit_ingest_job(request))

    async def submit_cohort_run(self, run: schemas.CohortRunIn) -> schemas.CohortRunOut:
        """Queue a cohort what-if run (researchers)."""
        return await self._run(_Routes.submit_cohort_run(run))

    async def cohort_run(self, job_id: str) -> schemas.CohortRunOut:
        """A cohort run's status, progress and (once finished) aggregate."""
        return await self._run(_Routes.cohort_run(job_id))

    async def cancel_cohort_run(self, job_id: str) -> schemas.CohortRunOut:
        """Cancel one of your cohort runs (a running one stops at its next progress update)."""
        return await self._run(_Routes.cancel_cohort_run(job_id))

    async def cancel_ingest_job(self, job_id: str) -> schemas.IngestJobOut:
        """Cancel a bulk-ingest job (admins, services); appended records stay."""
        return await self._run(_Routes.cancel_ingest_job(job_id))

    def iter_cohort_runs(self, *, page_size: int = 50) -> AsyncIterator[schemas.CohortRunOut]:
        """Every cohort run, oldest first."""
        return self._pages(lambda after: _Routes.cohort_runs(after, page_size))

    async def iter_cohort_rows(self, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """A finished run's per-(patient, scenario) rows, by pseudonym."""
        page: int | None = 0
        while page is not None:
            found = await self._run(_Routes.cohort_patients(job_id, page))
            for row in found.items:
                yield row
            page = found.next_page

    async def ready(self) -> bool:
        """Whether the service and its dependencies are ready."""
        try:
            await self._run(_Routes.ready())
        except errors.OverloadedError:
            return False
        return True
