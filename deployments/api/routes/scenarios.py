"""Scenario comparisons, saved as documents.

Alternative schedules are forecast on one posterior (common random numbers) and contrasted
with the first; the report is kept sealed under the patient's data key, so erasing the patient
erases their reports.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request

from deployments.api.access import Caller, DocumentId, PatientId, Services, patient_access
from deployments.api.errors import PROBLEMS
from deployments.api.routes.twins import forecast_out
from twin import errors, ports, schemas

router = APIRouter(
    prefix="/v1/patients/{patient_id}/scenarios", tags=["scenarios"], responses=PROBLEMS
)

COLLECTION = "scenario"


@router.post("", status_code=201, response_model=schemas.ScenarioReportOut)
async def compare_scenarios(
    patient_id: PatientId,
    body: schemas.ScenarioReportIn,
    who: Caller,
    svc: Services,
    request: Request,
) -> schemas.ScenarioReportOut:
    """Compare 2..6 scenarios and save the report."""
    await patient_access(svc, request, who, "scenario.create", patient_id, ("clinician", "admin"))
    forecasts, contrasts = await svc.twins.compare(patient_id, body.scenarios, weeks=body.weeks)
    report = schemas.ScenarioReportOut(
        report_id=uuid.uuid4().hex,
        patient_id=patient_id,
        title=body.title,
        created_at=time.time(),
        forecasts=[forecast_out(f) for f in forecasts],
        contrasts=[schemas.ContrastOut.model_validate(asdict(c)) for c in contrasts],
    )
    plain = report.model_dump_json().encode()
    sealed = await svc.sealer.seal(patient_id, kind=COLLECTION, version=0, plaintext=plain)
    await svc.documents.put(
        ports.Document(COLLECTION, report.report_id, patient_id, sealed, report.created_at)
    )
    return report


async def _open(svc: Services, patient_id: str, doc: ports.Document) -> schemas.ScenarioReportOut:
    plain = await svc.sealer.open(patient_id, kind=COLLECTION, version=0, sealed=doc.body)
    return schemas.ScenarioReportOut.model_validate(json.loads(plain))


@router.get("", response_model=schemas.ScenarioReportPage)
async def list_scenarios(
    patient_id: PatientId,
    who: Caller,
    svc: Services,
    request: Request,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> schemas.ScenarioReportPage:
    """The patient's saved reports (ids, titles, times)."""
    await patient_access(svc, request, who, "scenario.list", patient_id, ("clinician", "admin"))
    docs = await svc.documents.list(COLLECTION, patient_id=patient_id, after=after, limit=limit)
    items: list[dict[str, str | float]] = []
    for doc in docs:
        report = await _open(svc, patient_id, doc)
        items.append(
            {"report_id": report.report_id, "title": report.title, "created_at": report.created_at}
        )
    return schemas.ScenarioReportPage(
        items=items, next_after=docs[-1].doc_id if len(docs) == limit else None
    )


@router.get("/{report_id}", response_model=schemas.ScenarioReportOut)
async def read_scenario(
    patient_id: PatientId, report_id: DocumentId, who: Caller, svc: Services, request: Request
) -> schemas.ScenarioReportOut:
    """One saved report."""
    await patient_access(svc, request, who, "scenario.read", patient_id, ("clinician", "admin"))
    doc = await svc.documents.get(COLLECTION, report_id)
    if doc is None or doc.patient_id != patient_id:
        raise errors.NotFoundError("no such report")
    return await _open(svc, patient_id, doc)
