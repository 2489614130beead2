"""Twin state (estimate, uncertainty, alerts), forecasts, and search over the caller's twins."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request

from deployments.api.access import Caller, PatientId, Services, patient_access, record
from deployments.api.errors import PROBLEMS
from twin import errors, schemas
from twin.forecast.summary import QUANTILES, Forecast

router = APIRouter(tags=["twins"], responses=PROBLEMS)

#: Search scope of a clinician: patients of their teams, at most this many.
MAX_SCOPE = 10_000


def forecast_out(fc: Forecast) -> schemas.ForecastOut:
    """The wire form of a forecast."""
    return schemas.ForecastOut.model_validate({**asdict(fc), "quantile_levels": list(QUANTILES)})


@router.get("/v1/patients/{patient_id}/twin", response_model=schemas.TwinOut)
async def twin_state(
    patient_id: PatientId, who: Caller, svc: Services, request: Request
) -> schemas.TwinOut:
    """The twin's estimate: latent severity with its SD, P(episode), P(severe), alerts."""
    await patient_access(svc, request, who, "twin.read", patient_id, ("clinician", "admin"))
    return await svc.twins.summary(patient_id)


@router.post("/v1/patients/{patient_id}/forecast", response_model=schemas.ForecastOut)
async def forecast(
    patient_id: PatientId,
    who: Caller,
    svc: Services,
    request: Request,
    body: schemas.ForecastIn | None = None,
) -> schemas.ForecastOut:
    """Forecast ``weeks`` ahead under a scenario (default: continue as now)."""
    await patient_access(svc, request, who, "twin.forecast", patient_id, ("clinician", "admin"))
    spec = body or schemas.ForecastIn()
    (result,) = await svc.twins.forecast(patient_id, [spec.scenario], weeks=spec.weeks)
    return forecast_out(result)


@router.get("/v1/twins", response_model=schemas.TwinPage)
async def search_twins(
    who: Caller,
    svc: Services,
    request: Request,
    min_severity: Annotated[float | None, Query(ge=0.0, le=27.0)] = None,
    alert: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
    updated_since: Annotated[
        float | None, Query(ge=0.0, le=1e10, description="Unix seconds")
    ] = None,
    min_p_severe: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="risk: P(severity >= 15)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> schemas.TwinPage:
    """Twins by severity, risk, alert flag and last update, most severe first (my patients)."""
    allowed = who.role in ("clinician", "admin")
    await record(svc, request, who, "twin.search", None, allowed=allowed)
    if not allowed:
        raise errors.AuthorizationError(f"role {who.role} may not search twins")
    scope: list[str] | None = None
    if who.role == "clinician":
        scope = []
        for team in who.care_team:
            scope.extend(await svc.registry.list_for_team(team, limit=MAX_SCOPE))
    entries = await svc.index.search(
        min_severity=min_severity,
        alert=alert,
        patient_ids=scope,
        updated_since=updated_since,
        min_p_severe=min_p_severe,
        limit=limit,
    )
    return schemas.TwinPage(items=[schemas.TwinIndexOut.model_validate(asdict(e)) for e in entries])
