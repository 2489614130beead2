"""What the routes use, as one object the composition root builds (no I/O here)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from deployments.api.auth import TokenVerifier
from deployments.api.limiter import RateLimiter
from deployments.api.observability import Metrics
from twin import ports
from twin.domain.audit import AnchoringPolicy
from twin.domain.deidentify import Deidentifier
from twin.service.application import TwinService
from twin.service.erasure import Eraser
from twin.service.fhir import FhirService
from twin.service.operations import TwinOperations

__all__ = ["ApiServices", "Twins"]

#: The twin runtime the API uses (TwinHost in-process, TwinRuntime on Ray).
Twins = TwinOperations


@dataclass(frozen=True, slots=True)
class ApiServices:
    """Everything the routes use.

    Attributes:
        verifier: Bearer-token verification.
        registry: Patients and their identifiers (sealed).
        audit: The hash-chained audit trail (anchored every N entries in the background).
        anchors: The audit chain's anchors (what verification holds the chain to).
        twins: The twin runtime.
        events: The event log (read side, for the change feed).
        index: Twin summaries for search.
        documents: Saved reports and emergency-access grants.
        sealer: Envelope encryption of document bodies under the patient's key.
        deidentifier: Pseudonyms for researchers.
        limiter: Per-caller request budget.
        erasures: The erasure ledger (every erasure is noted there first).
        eraser: Erasure of a patient from every place patient data lives.
        app: The use cases (access rules and their audit included).
        fhir: The FHIR use cases (resources, Bulk Data exports).
        metrics: Request and twin metrics.
        ready: Checks every dependency; ``None`` means always ready.
        ingest_root: Where ingest jobs submitted through the API may read.
        feed_poll_s: How often an open change feed looks for new events.
        streams_per_caller: Open change-feed streams one caller may hold in this replica.
        stream_recheck_s: How often an open stream re-checks its caller's access.
        open_streams: Open change-feed streams per caller in this replica (mutable).
        public_base_url: The API's URL as clients reach it (FHIR's absolute URLs); ``None``: the
            request's own.
        anchoring: How recently the audit chain must have been anchored (verification's
            check); ``None`` asks nothing.
    """

    verifier: TokenVerifier
    registry: ports.PatientRegistry
    audit: ports.AuditLog
    anchors: ports.AuditAnchorStore
    twins: Twins
    events: ports.EventStore
    index: ports.TwinIndex
    documents: ports.DocumentStore
    sealer: ports.Sealer
    deidentifier: Deidentifier
    limiter: RateLimiter
    erasures: ports.ErasureLedger
    eraser: Eraser
    app: TwinService
    fhir: FhirService
    metrics: Metrics
    ready: Callable[[], Awaitable[bool]] | None = None
    ingest_root: str = "/nonexistent"
    feed_poll_s: float = 0.5
    streams_per_caller: int = 4
    stream_recheck_s: float = 60.0
    open_streams: dict[str, int] = field(default_factory=dict)
    public_base_url: str | None = None
    anchoring: AnchoringPolicy | None = None
