"""The FastAPI application: routes, authentication, authorisation and audit.

Every route that touches patient data declares who may call it; the decision, allowed or
denied, is appended to the audit trail before the handler does anything else.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from deployments.api.errors import install_error_handlers, problem
from deployments.auth import Principal, Role, TokenVerifier
from twin import errors, ports, schemas
from twin.domain import codec
from twin.domain.audit import AuditRecord
from twin.domain.patients import Identifiers
from twin.forecast.scenario import Scenario
from twin.forecast.summary import Forecast
from twin.service.host import IngestResult, TwinSummary

__all__ = ["ApiServices", "Twins", "create_app"]

MAX_BODY_BYTES = 1 << 20


class Twins(Protocol):
    """What the API needs from the twin runtime (TwinHost in-process, TwinRuntime on Ray)."""

    async def ingest(self, patient_id: str, batch: Sequence[ports.NewEvent]) -> IngestResult:
        """Append durably and apply."""
        ...

    async def summary(self, patient_id: str) -> TwinSummary:
        """The twin's estimate."""
        ...

    async def forecast(
        self, patient_id: str, scenarios: Sequence[Scenario], *, weeks: int = 12
    ) -> list[Forecast]:
        """Forecasts per scenario."""
        ...


@dataclass(frozen=True, slots=True)
class ApiServices:
    """Everything the routes use, built by the composition root."""

    verifier: TokenVerifier
    registry: ports.PatientRegistry
    audit: ports.AuditLog
    twins: Twins
    ready: Callable[[], Awaitable[bool]] | None = None


async def principal(request: Request) -> Principal:
    """The authenticated caller, from the ``Authorization: Bearer`` header."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise errors.AuthenticationError("a bearer token is required")
    services: ApiServices = request.app.state.services
    return services.verifier.verify(token.strip())


#: A route parameter that requires an authenticated caller.
Caller = Annotated[Principal, Depends(principal)]


def create_app(services: ApiServices) -> FastAPI:
    """Build the app around its services (no I/O here)."""
    app = FastAPI(title="Novamind", version="1.0", docs_url="/docs")
    app.state.services = services
    install_error_handlers(app)

    @app.middleware("http")
    async def bounded_bodies(request: Request, call_next: Any) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return problem(
                413, "Content Too Large", f"bodies are limited to {MAX_BODY_BYTES} bytes"
            )
        response: Response = await call_next(request)
        return response

    async def decide(
        who: Principal, action: str, patient_id: str | None, allowed: bool, request: Request
    ) -> None:
        record = AuditRecord(
            actor=who.subject,
            role=who.role,
            action=action,
            patient_id=patient_id,
            outcome="allowed" if allowed else "denied",
            purpose="treatment" if who.role == "clinician" else who.role,
            at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            request_id=request.headers.get("x-request-id") or uuid.uuid4().hex,
        )
        await services.audit.append(record)
        if not allowed:
            raise errors.AuthorizationError(f"role {who.role} may not {action} this patient")

    async def patient_access(
        who: Principal, action: str, patient_id: str, roles: tuple[Role, ...], request: Request
    ) -> str:
        """Decide and audit; returns the patient's care team."""
        team = await services.registry.care_team(patient_id)
        allowed = who.role in roles and (
            who.role != "clinician" or (team is not None and team in who.care_team)
        )
        await decide(who, action, patient_id, allowed, request)
        if team is None:
            raise errors.NotFoundError("no such patient")
        return team

    @app.get("/health/liveness")
    async def liveness() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/readiness")
    async def readiness() -> JSONResponse:
        ok = await services.ready() if services.ready is not None else True
        return JSONResponse(
            {"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503
        )

    @app.post("/v1/patients", status_code=201, response_model=schemas.PatientCreated)
    async def create_patient(
        body: schemas.PatientCreate, who: Caller, request: Request
    ) -> schemas.PatientCreated:
        allowed = who.role == "admin" or (
            who.role == "clinician" and body.care_team in who.care_team
        )
        await decide(who, "patient.create", None, allowed, request)
        identifiers = Identifiers(body.name, body.birth_date, body.mrn, body.contact)
        patient_id = await services.registry.create(identifiers, care_team=body.care_team)
        return schemas.PatientCreated(patient_id=patient_id)

    @app.get("/v1/patients/{patient_id}", response_model=schemas.PatientOut)
    async def read_patient(patient_id: str, who: Caller, request: Request) -> schemas.PatientOut:
        team = await patient_access(
            who, "patient.read", patient_id, ("clinician", "admin"), request
        )
        ident = await services.registry.identifiers(patient_id)
        return schemas.PatientOut(patient_id=patient_id, care_team=team, **asdict(ident))

    @app.post("/v1/patients/{patient_id}/observations", response_model=schemas.IngestOut)
    async def ingest(
        patient_id: str, body: schemas.ObservationBatch, who: Caller, request: Request
    ) -> schemas.IngestOut:
        await patient_access(
            who, "observations.ingest", patient_id, ("clinician", "admin", "service"), request
        )
        batch = [
            ports.NewEvent(item.idempotency_key, item.day, codec.decode(item.payload))
            for item in body.items
        ]
        result = await services.twins.ingest(patient_id, batch)
        return schemas.IngestOut(
            acknowledged=[
                schemas.AckOut(seq=r.seq, duplicate=r.duplicate) for r in result.appended
            ],
            alerts=[
                schemas.AlertOut(
                    rule=a.rule, status=a.status, severity=a.severity, seq=a.seq, detail=a.detail
                )
                for a in result.alerts
            ],
            last_seq=result.last_seq,
        )

    @app.get("/v1/patients/{patient_id}/twin", response_model=schemas.TwinOut)
    async def twin_state(patient_id: str, who: Caller, request: Request) -> schemas.TwinOut:
        await patient_access(who, "twin.read", patient_id, ("clinician", "admin"), request)
        return await services.twins.summary(patient_id)

    @app.post("/v1/patients/{patient_id}/forecast")
    async def forecast(
        patient_id: str,
        who: Caller,
        request: Request,
        weeks: int = 12,
        scenario: Scenario | None = None,
    ) -> dict[str, Any]:
        await patient_access(who, "twin.forecast", patient_id, ("clinician", "admin"), request)
        if not 1 <= weeks <= 26:
            raise errors.ObservationRangeError("weeks", weeks, "integer 1..26")
        (result,) = await services.twins.forecast(patient_id, [scenario or Scenario()], weeks=weeks)
        return asdict(result)

    return app
