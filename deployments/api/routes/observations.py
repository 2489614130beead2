"""Observations and interventions, each event with an idempotency key.

Observations are questionnaires, EMA and wearables; interventions are medication changes, doses
taken or missed, therapy sessions and care status. An answer acknowledges events only once
they are durably stored (:meth:`twin.service.application.TwinService.ingest`).

An item's time is its ``effective`` instant. The float ``day`` of earlier clients is still read
until its sunset; a request that uses it is answered with ``Deprecation`` (RFC 9745) and
``Sunset`` (RFC 8594) headers, so that clients and gateways see it before it goes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from deployments.api.access import Caller, PatientId, Services, caller
from deployments.api.errors import BODY, problems
from deployments.api.headers import V1Route, deprecation_docs, deprecation_headers
from twin import schemas
from twin.service.application import EventKind

router = APIRouter(
    prefix="/v1/patients/{patient_id}",
    tags=["observations"],
    responses=problems(),
    route_class=V1Route,
)

#: The headers of an answer to a request that placed an item by ``day``, and their documents.
DAY_DEPRECATION = deprecation_headers(schemas.DAY_DEPRECATED_AT, schemas.DAY_SUNSET_AT)
_DAY_DOCS = deprecation_docs("an item's `day` (send `effective`)")


def _ingest_route(kind: EventKind, summary: str, description: str) -> None:
    """Mount ``POST /v1/patients/{patient_id}/<kind>``."""

    async def ingest(
        patient_id: PatientId,
        body: schemas.ObservationBatch,
        who: Caller,
        svc: Services,
        request: Request,
        response: Response,
    ) -> schemas.IngestOut:
        out = await svc.app.ingest(caller(request, who), patient_id, kind, body)
        fired = [a.rule for a in out.alerts if a.status == "fired"]
        svc.metrics.ingested(sum(not a.duplicate for a in out.acknowledged), fired)
        if any(item.day is not None for item in body.items):
            response.headers.update(DAY_DEPRECATION)
        return out

    router.add_api_route(
        f"/{kind}",
        ingest,
        methods=["POST"],
        response_model=schemas.IngestOut,
        name=f"ingest_{kind}",
        summary=summary,
        description=description,
        responses={
            **problems(*BODY, 404, 409, 410),
            200: {"description": "Successful Response", "headers": _DAY_DOCS},
        },
    )


_ACK = (
    " Each event happened at its `effective` instant (ISO 8601 with a UTC offset), which the "
    "service places on the patient's time axis from their enrolment; `day` (days since the "
    "enrolment) is deprecated. Each event carries an idempotency key: sent again, it is "
    "acknowledged as a duplicate and stored once. The answer comes once every event is durably "
    "stored, with the alerts they raised, each with its twin day and instant."
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
