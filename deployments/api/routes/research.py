"""Researcher access: de-identified twin summaries only.

Keyed pseudonyms, no identifiers, no patient ids, and days counted from each patient's own
first event (``record_day``), never the twin's day, which counts from the ingest origin.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from deployments.api.access import INT32, Caller, Services, caller
from deployments.api.errors import problems
from deployments.api.headers import V1Route
from twin import schemas

router = APIRouter(
    prefix="/v1/research", tags=["research"], responses=problems(), route_class=V1Route
)


@router.get("/twins", response_model=schemas.ResearchTwinPage)
async def research_twins(
    who: Caller,
    svc: Services,
    request: Request,
    min_severity: Annotated[float | None, Query(ge=0.0, le=27.0)] = None,
    alert: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, json_schema_extra=INT32)] = 100,
) -> schemas.ResearchTwinPage:
    """De-identified twin summaries, most severe first (researchers)."""
    items = await svc.app.research_twins(
        caller(request, who), min_severity=min_severity, alert=alert, limit=limit
    )
    return schemas.ResearchTwinPage(items=items)
