"""Twin state (estimate, uncertainty, alerts), forecasts, search, and a clinician's caseload."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request

from deployments.api.access import INT32, Caller, PatientId, Services, caller
from deployments.api.errors import BODY, problems
from deployments.api.headers import V1Route
from twin import schemas
from twin.service.application import TwinQuery
from twin.service.caseload import CaseloadQuery

router = APIRouter(tags=["twins"], responses=problems(), route_class=V1Route)


@router.get(
    "/v1/patients/{patient_id}/twin", response_model=schemas.TwinOut, responses=problems(404, 410)
)
async def twin_state(
    patient_id: PatientId, who: Caller, svc: Services, request: Request
) -> schemas.TwinOut:
    """The twin's estimate: latent severity with its SD, P(episode), P(severe), alerts."""
    return await svc.app.read_twin(caller(request, who), patient_id)


@router.post(
    "/v1/patients/{patient_id}/forecast",
    response_model=schemas.ForecastOut,
    responses=problems(*BODY, 404, 410),
)
async def forecast(
    patient_id: PatientId,
    who: Caller,
    svc: Services,
    request: Request,
    body: schemas.ForecastIn | None = None,
) -> schemas.ForecastOut:
    """Forecast ``weeks`` ahead under a scenario (default: continue as now)."""
    return await svc.app.forecast(caller(request, who), patient_id, body or schemas.ForecastIn())


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
    limit: Annotated[int, Query(ge=1, le=500, json_schema_extra=INT32)] = 100,
) -> schemas.TwinPage:
    """Twins by severity, risk, alert flag and last update, most severe first (my patients)."""
    query = TwinQuery(min_severity, alert, updated_since, min_p_severe, limit)
    entries = await svc.app.search_twins(caller(request, who), query)
    return schemas.TwinPage(items=[schemas.TwinIndexOut.model_validate(asdict(e)) for e in entries])


@router.get("/v1/caseload", response_model=schemas.CaseloadPage)
async def caseload(
    who: Caller,
    svc: Services,
    request: Request,
    care_team: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="default: all my teams"),
    ] = None,
    min_severity: Annotated[float | None, Query(ge=0.0, le=27.0)] = None,
    min_p_severe: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="risk: P(severity >= 15)")
    ] = None,
    alert: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
    updated_since: Annotated[
        float | None, Query(ge=0.0, le=1e10, description="Unix seconds")
    ] = None,
    sort: Annotated[
        schemas.CaseloadSort, Query(description="a summary field, `-` first for descending")
    ] = "-severity",
    after: Annotated[
        str | None,
        Query(max_length=256, pattern=r"^[A-Za-z0-9_-]+$", description="`next_after` of a page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, json_schema_extra=INT32)] = 50,
) -> schemas.CaseloadPage:
    """My patients with their twins' latest estimates, filtered, sorted and paged.

    One row per patient: identifiers and the twin's summary (``twin`` is null before the
    first event; a filter on the summary leaves such patients out). Patients without a
    summary sort last in either direction. Every patient on the page is audited.
    """
    query = CaseloadQuery(
        care_team, min_severity, min_p_severe, alert, updated_since, sort, after, limit
    )
    return await svc.app.caseload(caller(request, who), query)
