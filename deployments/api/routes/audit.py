"""The audit trail for auditors: read it in pages and verify the hash chain."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from deployments.api.access import INT32, INT64, Caller, Services, require_role
from deployments.api.errors import problems
from deployments.api.headers import V1Route
from twin import schemas
from twin.audit_log import verify_audit_log
from twin.domain.audit import MALFORMED, AuditAnchor, AuditEntry
from twin.event_log import MAX_SEQ

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=problems(), route_class=V1Route)


@router.get("", response_model=schemas.AuditPage)
async def read_audit(
    who: Caller,
    svc: Services,
    request: Request,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, json_schema_extra=INT64)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, json_schema_extra=INT32)] = 100,
) -> schemas.AuditPage:
    """Entries after sequence ``after`` (auditors)."""
    await require_role(svc, request, who, "audit.read", ("auditor",))
    entries = await svc.audit.entries(after_seq=after, limit=limit)
    return schemas.AuditPage(
        items=[_entry_out(e) for e in entries],
        next_after=entries[-1].seq if len(entries) == limit else None,
    )


@router.get("/verify", response_model=schemas.AuditVerifyOut)
async def verify_audit(
    who: Caller,
    svc: Services,
    request: Request,
    expected_head: Annotated[
        str | None, Query(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")
    ] = None,
    anchors: Annotated[
        bool, Query(description="hold the chain to every anchor of the anchor store")
    ] = True,
) -> schemas.AuditVerifyOut:
    """Recompute the whole chain and hold it to its anchors (auditors).

    ``expected_head`` checks a head kept elsewhere too; ``anchors=false`` skips the anchors.
    """
    await require_role(svc, request, who, "audit.verify", ("auditor",))
    report = await verify_audit_log(
        svc.audit, svc.anchors if anchors else None, expected_head=expected_head
    )
    return schemas.AuditVerifyOut(
        ok=report.ok,
        entries=report.entries,
        head_hash=report.head_hash,
        first_bad_seq=report.first_bad_seq,
        reason=report.reason,
        anchors_checked=report.anchors_checked,
        latest_anchor=_anchor_out(report.latest_anchor),
        contradicted_anchor=_anchor_out(report.contradicted_anchor),
    )


def _anchor_out(anchor: AuditAnchor | None) -> schemas.AuditAnchorOut | None:
    if anchor is None:
        return None
    return schemas.AuditAnchorOut(entries=anchor.entries, head_hash=anchor.head_hash, at=anchor.at)


def _entry_out(entry: AuditEntry) -> schemas.AuditEntryOut:
    """An entry as stored; a field no valid entry could hold is shown as ``<malformed>``."""
    fields = {"prev_hash": entry.prev_hash, "hash": entry.hash, **asdict(entry.record)}
    try:
        return schemas.AuditEntryOut(seq=entry.seq, **fields)
    except ValidationError as exc:
        bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        shown = {k: (MALFORMED if k in bad else v) for k, v in fields.items()}
        if "patient_id" in bad:
            shown["patient_id"] = None
        return schemas.AuditEntryOut(seq=entry.seq, **shown)
