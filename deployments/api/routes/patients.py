"""Patients: create, list (my care teams), read, erase (crypto-shred), emergency access.

Each route translates HTTP to one use case of :class:`twin.service.application.TwinService`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from deployments.api.access import INT32, Caller, PatientId, Services, caller
from deployments.api.errors import BODY, problems
from deployments.api.headers import V1Route
from twin import schemas

router = APIRouter(
    prefix="/v1/patients", tags=["patients"], responses=problems(), route_class=V1Route
)


@router.post(
    "", status_code=201, response_model=schemas.PatientCreated, responses=problems(*BODY, 409)
)
async def create_patient(
    body: schemas.PatientCreate, who: Caller, svc: Services, request: Request
) -> schemas.PatientCreated:
    """Register a patient (admin, or a clinician of the owning care team)."""
    patient_id = await svc.app.register(caller(request, who), body)
    return schemas.PatientCreated(patient_id=patient_id)


@router.get("", response_model=schemas.PatientPage)
async def list_patients(
    who: Caller,
    svc: Services,
    request: Request,
    care_team: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] = None,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500, json_schema_extra=INT32)] = 100,
) -> schemas.PatientPage:
    """Patient ids of a care team, in pages (clinicians: their own teams only)."""
    items = await svc.app.list_patients(caller(request, who), care_team, after=after, limit=limit)
    return schemas.PatientPage(items=items, next_after=items[-1] if len(items) == limit else None)


@router.get("/{patient_id}", response_model=schemas.PatientOut, responses=problems(404, 410))
async def read_patient(
    patient_id: PatientId, who: Caller, svc: Services, request: Request
) -> schemas.PatientOut:
    """The patient's identifiers (their care team, or emergency access)."""
    return await svc.app.read_patient(caller(request, who), patient_id)


@router.delete("/{patient_id}", response_model=schemas.ErasedOut, responses=problems(404, 410))
async def erase_patient(
    patient_id: PatientId, who: Caller, svc: Services, request: Request
) -> schemas.ErasedOut:
    """Erase a patient (admin): destroy the data key, twin state, checkpoints and documents.

    Sent again after an erasure that answered 503 (a place failed), it completes that erasure.
    """
    return await svc.app.erase(caller(request, who), patient_id)


@router.post(
    "/{patient_id}/break-glass",
    status_code=201,
    response_model=schemas.BreakGlassOut,
    responses=problems(*BODY, 404, 410),
)
async def break_glass(
    patient_id: PatientId,
    body: schemas.BreakGlassIn,
    who: Caller,
    svc: Services,
    request: Request,
) -> schemas.BreakGlassOut:
    """Emergency access for a clinician outside the care team: stated reason, bounded time."""
    expires_at = await svc.app.break_glass(caller(request, who), patient_id, body)
    return schemas.BreakGlassOut(patient_id=patient_id, expires_at=expires_at)
