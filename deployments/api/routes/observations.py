"""Observations and interventions, each event with an idempotency key.

Observations are questionnaires, EMA and wearables; interventions are medication changes, doses
taken or missed, therapy sessions and care status. An answer acknowledges events only once
they are durably stored (:meth:`twin.service.application.TwinService.ingest`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from deployments.api.access import Caller, PatientId, Services, caller
from deployments.api.errors import BODY, problems
from deployments.api.headers import V1Route
from twin import schemas
from twin.service.application import EventKind

router = APIRouter(
    prefix="/v1/patients/{patient_id}",
    tags=["observations"],
    responses=problems(),
    route_class=V1Route,
)


def _ingest_route(kind: EventKind, summary: str, description: str) -> None:
    """Mount ``POST /v1/patients/{patient_id}/<kind>``."""

    async def ingest(
        patient_id: PatientId,
        body: schemas.ObservationBatch,
        who: Caller,
        svc: Services,
        request: Request,
    ) -> schemas.IngestOut:
        result = await svc.app.ingest(caller(request, who), patient_id, kind, body)
        fired = [a.rule for a in result.alerts if a.status == "fired"]
        svc.metrics.ingested(sum(not r.duplicate for r in result.appended), fired)
        return schemas.IngestOut(
            acknowledged=[
                schemas.AckOut(
                    seq=r.seq, duplicate=r.duplicate, rejected=result.rejected.get(r.seq)
                )
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

    router.add_api_route(
        f"/{kind}",
        ingest,
        methods=["POST"],
        response_model=schemas.IngestOut,
        name=f"ingest_{kind}",
        summary=summary,
        description=description,
        responses=problems(*BODY, 404, 409, 410),
    )


_ACK = (
    " Each event carries an idempotency key: sent again, it is acknowledged as a duplicate and "
    "stored once. The answer comes once every event is durably stored, with the alerts they "
    "raised."
)
_ingest_route(
    "observations",
    "Observations in time order (codec payloads or LOINC-coded values)",
    "Questionnaires (PHQ-9, GAD-7, ...), EMA and wearable values, as event-codec payloads or "
    "LOINC-coded values." + _ACK,
)
_ingest_route(
    "interventions",
    "Medication start/stop/dose change, doses taken or missed, therapy sessions, care",
    "Medication starts, stops and dose changes, doses taken or missed, therapy sessions and "
    "care status, as event-codec payloads." + _ACK,
)
