"""Scenario comparisons, saved as documents.

Alternative schedules are forecast on one posterior (common random numbers) and contrasted
with the first; the report is kept sealed under the patient's data key, so erasing the patient
erases their reports (:meth:`twin.service.application.TwinService.compare_scenarios`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from deployments.api.access import INT32, Caller, DocumentId, PatientId, Services, caller
from deployments.api.errors import BODY, problems
from deployments.api.headers import V1Route
from twin import schemas

router = APIRouter(
    prefix="/v1/patients/{patient_id}/scenarios",
    tags=["scenarios"],
    responses=problems(),
    route_class=V1Route,
)


@router.post(
    "",
    status_code=201,
    response_model=schemas.ScenarioReportOut,
    responses=problems(*BODY, 404, 410),
)
async def compare_scenarios(
    patient_id: PatientId,
    body: schemas.ScenarioReportIn,
    who: Caller,
    svc: Services,
    request: Request,
) -> schemas.ScenarioReportOut:
    """Compare 2..6 scenarios and save the report."""
    return await svc.app.compare_scenarios(caller(request, who), patient_id, body)


@router.get("", response_model=schemas.ScenarioReportPage, responses=problems(404, 410))
async def list_scenarios(
    patient_id: PatientId,
    who: Caller,
    svc: Services,
    request: Request,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=100, json_schema_extra=INT32)] = 20,
) -> schemas.ScenarioReportPage:
    """The patient's saved reports (ids, titles, times)."""
    reports, next_after = await svc.app.list_reports(
        caller(request, who), patient_id, after=after, limit=limit
    )
    return schemas.ScenarioReportPage(
        items=[
            {"report_id": r.report_id, "title": r.title, "created_at": r.created_at}
            for r in reports
        ],
        next_after=next_after,
    )


@router.get("/{report_id}", response_model=schemas.ScenarioReportOut, responses=problems(404, 410))
async def read_scenario(
    patient_id: PatientId, report_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.ScenarioReportOut:
    """One saved report."""
    return await svc.app.read_report(caller(request, who), patient_id, report_id)
