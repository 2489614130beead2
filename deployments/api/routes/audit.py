"""The audit trail for auditors: read it in pages and verify the hash chain.

A verification streams the whole chain through the replica (page by page, never holding it)
and lists every anchor: one at a time per process, so an auditor's requests cannot take a
replica's database connections and memory from the requests it serves; a second one meanwhile
gets 503 with ``Retry-After``.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from deployments.api.access import INT32, INT64, Caller, Services, require_role
from deployments.api.errors import problems
from deployments.api.headers import V1Route
from twin import errors, schemas
from twin.audit_log import verify_audit_log
from twin.domain.audit import MALFORMED, AuditAnchor, AuditEntry
from twin.event_log import MAX_SEQ

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=problems(), route_class=V1Route)
#: Held while this process verifies the chain (taken without waiting: a second call is told).
_VERIFYING = threading.Lock()
#: When a refused verification may be tried again, seconds.
VERIFY_RETRY_S = 30


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
    Outside local use a chain with no anchor past N entries, or whose latest anchor is older
    than twice the anchoring interval, is not ``ok``; locally that is a warning.
    """
    await require_role(svc, request, who, "audit.verify", ("auditor",))
    if not _VERIFYING.acquire(blocking=False):
        raise errors.VerificationRunningError(VERIFY_RETRY_S)
    try:
        report = await verify_audit_log(
            svc.audit,
            svc.anchors if anchors else None,
            expected_head=expected_head,
            policy=svc.anchoring if anchors else None,
            offload=True,  # hashing a page holds no request of this loop
        )
    finally:
        _VERIFYING.release()
    return schemas.AuditVerifyOut(
        ok=report.ok,
        entries=report.entries,
        head_hash=report.head_hash,
        first_bad_seq=report.first_bad_seq,
        reason=_bounded(report.reason),
        anchors_checked=report.anchors_checked,
        latest_anchor=_anchor_out(report.latest_anchor),
        contradicted_anchor=_anchor_out(report.contradicted_anchor),
        contradicted_anchors=[_anchor(a) for a in report.contradicted_anchors],
        contradicted_count=report.contradicted_count,
        conflicting_lengths=list(report.conflicting_lengths),
        unreadable_anchors=[n[: schemas.MAX_DETAIL] for n in report.unreadable_anchors],
        unreadable_count=report.unreadable_count,
        warnings=[w[: schemas.MAX_DETAIL] for w in report.warnings],
    )


def _bounded(text: str | None) -> str | None:
    """A message within the document's bound (cut with an ellipsis, never refused)."""
    if text is None or len(text) <= schemas.MAX_DETAIL:
        return text
    return text[: schemas.MAX_DETAIL - 1] + "…"


def _anchor(anchor: AuditAnchor) -> schemas.AuditAnchorOut:
    return schemas.AuditAnchorOut(entries=anchor.entries, head_hash=anchor.head_hash, at=anchor.at)


def _anchor_out(anchor: AuditAnchor | None) -> schemas.AuditAnchorOut | None:
    return None if anchor is None else _anchor(anchor)


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
