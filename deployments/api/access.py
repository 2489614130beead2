"""Who may do what: authentication, the per-route rules, break-glass, and the audit of each.

Every route that touches patient data calls :func:`patient_access` (or :func:`record`) before
doing anything else; the decision, allowed or denied, is appended to the audit trail first.
A clinician outside the patient's care team gets 404 (the API does not reveal that the patient
exists, OWASP API1) unless they hold an unexpired emergency-access grant, in which case the
access is allowed and audited with purpose ``ETREAT`` (HL7 purpose of use for emergency
treatment).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from deployments.api.services import ApiServices
from deployments.auth import Principal, Role
from twin import errors, ports
from twin.domain.audit import AuditRecord

__all__ = [
    "BREAK_GLASS",
    "Caller",
    "DocumentId",
    "PatientId",
    "Services",
    "grant_break_glass",
    "patient_access",
    "record",
    "services",
]

BREAK_GLASS = "break_glass"

#: An opaque patient id in a path (``pt_`` + 32 hex digits when issued by the registry).
PatientId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
#: A document id in a path.
DocumentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def services(request: Request) -> ApiServices:
    """The app's services (set by the composition root or the app's lifespan)."""
    found: ApiServices = request.app.state.services
    return found


Services = Annotated[ApiServices, Depends(services)]


async def principal(request: Request, svc: Services) -> Principal:
    """The authenticated caller, from ``Authorization: Bearer``; counts the caller's budget.

    A refused credential is audited too (actor ``anonymous``, action ``authenticate``, the
    addressed patient if any), up to the source's budget of failed authentications per minute;
    beyond it the attempt is refused with 429 and not audited.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not token:
            raise errors.AuthenticationError("a bearer token is required")
        who = svc.verifier.verify(token.strip())
    except errors.AuthenticationError:
        # Failures are budgeted per source; a valid token is never refused for others' failures.
        # Past the budget the attempt gets 429 and is not audited, which bounds what one source
        # can write to the trail.
        await svc.limiter.count_failure(_source(request))
        # The path is the client's text: only a well-formed patient id is recorded.
        addressed = request.path_params.get("patient_id")
        await svc.audit.append(
            AuditRecord(
                actor="anonymous",
                role="none",
                action="authenticate",
                patient_id=addressed if _is_patient_id(addressed) else None,
                outcome="denied",
                purpose="none",
                at=_now(),
                request_id=_request_id(request),
            )
        )
        raise
    await svc.limiter.check(f"{who.role}:{who.subject}")
    request.state.role = who.role
    return who


_PATIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _source(request: Request) -> str:
    """The client address a failed authentication counts against (IPv6 by its /64).

    It is the address the ASGI server reports: behind proxies, the server must be told which
    proxies to trust for ``X-Forwarded-For`` (docs/operations.md), or every client shares the
    proxy's budget.
    """
    host = request.client.host if request.client is not None else "unknown"
    if ":" in host:
        return ":".join(host.split(":")[:4]) + "::/64"
    return host


def _is_patient_id(value: object) -> bool:
    """Whether a path value has the form of a patient id (what :data:`PatientId` accepts)."""
    return isinstance(value, str) and _PATIENT_ID.fullmatch(value) is not None


def _one_line(text: str) -> str:
    """``text`` on one line, as the audit trail keeps it.

    Every run of spaces, line breaks and other non-printing characters (format marks,
    separators) becomes one space.
    """
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


#: A route parameter that requires an authenticated caller.
Caller = Annotated[Principal, Depends(principal)]


async def record(
    svc: ApiServices,
    request: Request,
    who: Principal,
    action: str,
    patient_id: str | None,
    *,
    allowed: bool,
    purpose: str | None = None,
) -> None:
    """Append the decision to the audit trail."""
    default_purpose = {"clinician": "TREAT", "researcher": "HRESCH"}.get(who.role, who.role)
    await svc.audit.append(
        AuditRecord(
            actor=who.subject,
            role=who.role,
            action=action,
            patient_id=patient_id,
            outcome="allowed" if allowed else "denied",
            purpose=purpose or default_purpose,
            at=_now(),
            request_id=_request_id(request),
        )
    )


async def require_role(
    svc: ApiServices,
    request: Request,
    who: Principal,
    action: str,
    roles: tuple[Role, ...],
    patient_id: str | None = None,
) -> None:
    """Audit and refuse (403) callers whose role is not in ``roles``."""
    allowed = who.role in roles
    await record(svc, request, who, action, patient_id, allowed=allowed)
    if not allowed:
        raise errors.AuthorizationError(f"role {who.role} may not {action}")


def _grant_id(patient_id: str, subject: str) -> str:
    return f"{patient_id}:{hashlib.sha256(subject.encode()).hexdigest()[:24]}"


@dataclass(frozen=True, slots=True)
class Grant:
    """An emergency-access grant (stored sealed under the patient's key)."""

    subject: str
    reason: str
    expires_at: float


async def _active_grant(svc: ApiServices, patient_id: str, subject: str) -> Grant | None:
    doc = await svc.documents.get(BREAK_GLASS, _grant_id(patient_id, subject))
    if doc is None:
        return None
    try:
        body = await svc.sealer.open(patient_id, kind=BREAK_GLASS, version=0, sealed=doc.body)
    except errors.KeyAccessError:
        return None
    grant = Grant(**json.loads(body))
    return grant if grant.subject == subject and grant.expires_at > time.time() else None


async def grant_ends_at(svc: ApiServices, who: Principal, patient_id: str) -> float | None:
    """When ``who``'s access to the patient ends by itself: an emergency grant's expiry.

    ``None`` when the access does not rest on a grant (care team, admin) or there is none.
    """
    if who.role != "clinician":
        return None
    team = await svc.registry.care_team(patient_id)
    if team is None or team in who.care_team:
        return None
    grant = await _active_grant(svc, patient_id, who.subject)
    return None if grant is None else grant.expires_at


async def grant_break_glass(
    svc: ApiServices, request: Request, who: Principal, patient_id: str, reason: str, minutes: int
) -> float:
    """Grant a clinician emergency access to one patient; returns the expiry (Unix seconds).

    The grant start is audited as ``break_glass.start`` with the stated reason as the purpose.
    """
    team = await svc.registry.care_team(patient_id)
    allowed = who.role == "clinician" and team is not None
    minutes = min(minutes, svc.break_glass_max_minutes)
    await record(
        svc,
        request,
        who,
        "break_glass.start",
        patient_id,
        allowed=allowed,
        purpose=f"ETREAT: {_one_line(reason)}",
    )
    if who.role != "clinician":
        raise errors.AuthorizationError("only clinicians may request emergency access")
    if team is None:
        raise errors.NotFoundError("no such patient")
    expires_at = time.time() + 60.0 * minutes
    body = json.dumps({"subject": who.subject, "reason": reason, "expires_at": expires_at})
    sealed = await svc.sealer.seal(patient_id, kind=BREAK_GLASS, version=0, plaintext=body.encode())
    await svc.documents.put(
        ports.Document(
            BREAK_GLASS, _grant_id(patient_id, who.subject), patient_id, sealed, time.time()
        )
    )
    return expires_at


async def patient_access(
    svc: ApiServices,
    request: Request,
    who: Principal,
    action: str,
    patient_id: str,
    roles: tuple[Role, ...],
) -> str:
    """Decide, audit, and raise unless ``who`` may do ``action`` on the patient.

    Returns:
        The patient's care team.

    Raises:
        AuthorizationError: The role may not do this at all (403).
        NotFoundError: No such patient, or a clinician outside the care team without an
            emergency-access grant (404: existence is not revealed).
    """
    team = await svc.registry.care_team(patient_id)
    purpose: str | None = None
    if who.role not in roles:
        allowed = False
    elif who.role != "clinician":
        allowed = team is not None
    elif team is not None and team in who.care_team:
        allowed = True
    else:
        grant = None if team is None else await _active_grant(svc, patient_id, who.subject)
        allowed = grant is not None
        purpose = "ETREAT" if allowed else None
    await record(svc, request, who, action, patient_id, allowed=allowed, purpose=purpose)
    if who.role not in roles:
        raise errors.AuthorizationError(f"role {who.role} may not {action}")
    if not allowed or team is None:
        raise errors.NotFoundError("no such patient")
    return team
