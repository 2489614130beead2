"""Patients: create, list (my care teams), read, erase (crypto-shred), emergency access."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request

from deployments.api.access import (
    Caller,
    PatientId,
    Services,
    grant_break_glass,
    patient_access,
    record,
)
from deployments.api.errors import PROBLEMS
from twin import errors, ports, schemas
from twin.domain import events
from twin.domain.patients import Identifiers

router = APIRouter(prefix="/v1/patients", tags=["patients"], responses=PROBLEMS)
#: Idempotency key of the covariates given at registration (the twin's first event).
REGISTRATION_KEY = "novamind:registration:covariates"


@router.post("", status_code=201, response_model=schemas.PatientCreated)
async def create_patient(
    body: schemas.PatientCreate, who: Caller, svc: Services, request: Request
) -> schemas.PatientCreated:
    """Register a patient (admin, or a clinician of the owning care team)."""
    allowed = who.role == "admin" or (who.role == "clinician" and body.care_team in who.care_team)
    await record(svc, request, who, "patient.create", None, allowed=allowed)
    if not allowed:
        raise errors.AuthorizationError(f"role {who.role} may not create patients for this team")
    identifiers = Identifiers(body.name, body.birth_date, body.mrn, body.contact)
    # Checked before the patient exists, so refused covariates register nothing.
    given = None if body.covariates is None else events.Covariates(**body.covariates.model_dump())
    patient_id = await svc.registry.create(identifiers, care_team=body.care_team)
    if given is not None:
        # The twin's first event, audited under the patient; the answer waits for its durable
        # append (the twin applies it in the background, as bulk ingest does).
        await record(svc, request, who, "covariates.ingest", patient_id, allowed=True)
        event = ports.NewEvent(REGISTRATION_KEY, 0.0, given)
        await svc.twins.ingest(patient_id, [event], wait=False)
    return schemas.PatientCreated(patient_id=patient_id)


@router.get("", response_model=schemas.PatientPage)
async def list_patients(
    who: Caller,
    svc: Services,
    request: Request,
    care_team: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] = None,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> schemas.PatientPage:
    """Patient ids of a care team, in pages (clinicians: their own teams only)."""
    team = care_team or (who.care_team[0] if who.role == "clinician" and who.care_team else None)
    allowed = (who.role == "admin" and team is not None) or (
        who.role == "clinician" and team in who.care_team
    )
    await record(svc, request, who, "patient.list", None, allowed=allowed)
    if not allowed:
        raise errors.AuthorizationError(f"role {who.role} may not list this care team")
    assert team is not None  # allowed implies a team
    items = await svc.registry.list_for_team(team, after=after, limit=limit)
    return schemas.PatientPage(items=items, next_after=items[-1] if len(items) == limit else None)


@router.get("/{patient_id}", response_model=schemas.PatientOut)
async def read_patient(
    patient_id: PatientId, who: Caller, svc: Services, request: Request
) -> schemas.PatientOut:
    """The patient's identifiers (their care team, or emergency access)."""
    team = await patient_access(
        svc, request, who, "patient.read", patient_id, ("clinician", "admin")
    )
    ident = await svc.registry.identifiers(patient_id)
    return schemas.PatientOut(patient_id=patient_id, care_team=team, **asdict(ident))


@router.delete("/{patient_id}", response_model=schemas.ErasedOut)
async def erase_patient(
    patient_id: PatientId, who: Caller, svc: Services, request: Request
) -> schemas.ErasedOut:
    """Erase a patient (admin): destroy the data key, twin state, checkpoints and documents.

    Sent again after an erasure that answered 503 (a place failed), it completes that erasure.
    """
    if who.role == "admin" and patient_id in await svc.erasures.incomplete():
        # The patient is gone from the registry already; the rest of the places are retried.
        await record(svc, request, who, "patient.erase", patient_id, allowed=True)
        removed = await svc.eraser.erase(patient_id, record=False)
        return schemas.ErasedOut(
            patient_id=patient_id, erased=True, documents_deleted=removed["documents"]
        )
    await patient_access(svc, request, who, "patient.erase", patient_id, ("admin",))
    # The ledger first (no restore brings the patient back), then every registered place.
    removed = await svc.eraser.erase(patient_id)
    return schemas.ErasedOut(
        patient_id=patient_id,
        erased=removed["registry"] > 0,
        documents_deleted=removed["documents"],
    )


@router.post("/{patient_id}/break-glass", status_code=201, response_model=schemas.BreakGlassOut)
async def break_glass(
    patient_id: PatientId,
    body: schemas.BreakGlassIn,
    who: Caller,
    svc: Services,
    request: Request,
) -> schemas.BreakGlassOut:
    """Emergency access for a clinician outside the care team: stated reason, bounded time."""
    expires_at = await grant_break_glass(svc, request, who, patient_id, body.reason, body.minutes)
    return schemas.BreakGlassOut(patient_id=patient_id, expires_at=expires_at)
