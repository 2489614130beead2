"""Observations and interventions, each event with an idempotency key.

Observations are questionnaires, EMA and wearables; interventions are medication changes, doses
taken or missed, therapy sessions and care status. An answer acknowledges events only once
they are durably stored.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from deployments.api.access import Caller, PatientId, Services, patient_access
from deployments.api.errors import PROBLEMS
from deployments.api.services import ApiServices
from twin import errors, ports, schemas
from twin.domain import codec, events, loinc

router = APIRouter(prefix="/v1/patients/{patient_id}", tags=["observations"], responses=PROBLEMS)


def _payload(item: schemas.ObservationIn) -> events.Payload:
    if item.loinc is not None:
        return loinc.from_loinc(item.loinc.code, item.loinc.value, item.loinc.unit)
    assert item.payload is not None  # the schema requires exactly one form
    return codec.decode(item.payload)


async def _ingest(
    svc: ApiServices,
    patient_id: PatientId,
    body: schemas.ObservationBatch,
    allowed: tuple[type[events.Payload], ...],
    kind: str,
) -> schemas.IngestOut:
    batch = []
    for i, item in enumerate(body.items):
        payload = _payload(item)
        if not isinstance(payload, allowed):
            raise errors.ObservationRangeError(f"items.{i}.type", type(payload).__name__, kind)
        batch.append(ports.NewEvent(item.idempotency_key, item.day, payload))
    result = await svc.twins.ingest(patient_id, batch)
    fired = [a.rule for a in result.alerts if a.status == "fired"]
    svc.metrics.ingested(sum(not r.duplicate for r in result.appended), fired)
    return schemas.IngestOut(
        acknowledged=[
            schemas.AckOut(seq=r.seq, duplicate=r.duplicate, rejected=result.rejected.get(r.seq))
            for r in result.appended
        ],
        alerts=[
            schemas.AlertOut(
                rule=a.rule, status=a.status, severity=a.severity, seq=a.seq, detail=a.detail
            )
            for a in result.alerts
        ],
        last_seq=result.last_seq,
    )


def _ingest_route(
    kind: str, allowed: tuple[type[events.Payload], ...], what: str, summary: str
) -> None:
    """Mount ``POST /v1/patients/{patient_id}/<kind>`` accepting only ``allowed`` payloads."""

    async def ingest(
        patient_id: PatientId,
        body: schemas.ObservationBatch,
        who: Caller,
        svc: Services,
        request: Request,
    ) -> schemas.IngestOut:
        await patient_access(
            svc, request, who, f"{kind}.ingest", patient_id, ("clinician", "admin", "service")
        )
        return await _ingest(svc, patient_id, body, allowed, what)

    router.add_api_route(
        f"/{kind}",
        ingest,
        methods=["POST"],
        response_model=schemas.IngestOut,
        name=f"ingest_{kind}",
        summary=summary,
    )


_ingest_route(
    "observations",
    events.OBSERVATION_TYPES,
    "an observation",
    "Observations in time order (codec payloads or LOINC-coded values)",
)
_ingest_route(
    "interventions",
    events.INTERVENTION_TYPES,
    "an intervention",
    "Medication start/stop/dose change, doses taken or missed, therapy sessions, care",
)
