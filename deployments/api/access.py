"""HTTP's side of access: authentication, the caller of a request, and the route helpers.

The rules themselves (who may do what to which patient, emergency access, the audit entry of
every decision) are the application's, :mod:`twin.service.access`; the helpers here only give
them the request's caller. Failed authentication is audited here (there is no caller yet).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from deployments.api.auth import Principal, Role
from deployments.api.limiter import Quota
from deployments.api.services import ApiServices
from twin import errors
from twin.domain.audit import AuditRecord
from twin.domain.audit import now as audit_now
from twin.domain.patients import is_patient_id
from twin.fhir_out.ids import patient_id_of
from twin.service.access import Caller as AppCaller

__all__ = [
    "INT32",
    "INT64",
    "Caller",
    "DocumentId",
    "PatientId",
    "Services",
    "caller",
    "grant_ends_at",
    "patient_access",
    "record",
    "require_role",
    "services",
]

#: The integer formats of a query parameter, for OpenAPI clients (JSON Schema has none).
INT32: dict[str, object] = {"format": "int32"}
INT64: dict[str, object] = {"format": "int64"}
#: An opaque patient id in a path (``pt_`` + 32 hex digits when issued by the registry).
PatientId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
#: A document id in a path.
DocumentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


async def services(request: Request) -> ApiServices:
    """The app's services (set by the composition root or the app's lifespan).

    A coroutine function although it awaits nothing: FastAPI runs a plain function dependency
    in a worker thread, a thread hop that every request would pay (measured: bench/api.py).
    """
    found: ApiServices = request.app.state.services
    return found


Services = Annotated[ApiServices, Depends(services)]

#: The security scheme every ``/v1`` operation declares (OpenAPI, the ``Authorize`` button of
#: ``/docs``). It only reads the header: a missing or malformed one is refused by
#: :func:`principal`, audited and budgeted like any other failed authentication.
BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="A JWT (RFC 7519) from the identity provider, sent as `Authorization: Bearer "
    "<token>`, verified following RFC8725: algorithms pinned (RS256/ES256 from the IdP's JWKS; "
    "HS256 locally), `exp`, `iat`, `sub`, `iss`, `aud` and `role` required, lifetimes over 12 h "
    "refused. The token's `role` and `care_team` decide what the caller may do.",
    auto_error=False,
)


async def principal(
    request: Request,
    svc: Services,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Principal:
    """The authenticated caller, from ``Authorization: Bearer``; counts the caller's budget.

    A refused credential is audited too (actor ``anonymous``, action ``authenticate``, the
    addressed patient if any), up to the source's budget of failed authentications per minute;
    beyond it the attempt is refused with 429 and not audited. The budget's state goes out
    with the answer (``request.state.quota``: the ``RateLimit`` headers).
    """
    token = credentials.credentials if credentials is not None else ""
    try:
        if not token:
            raise errors.AuthenticationError("a bearer token is required")
        verify = svc.verifier.verify
        # A JWKS fetch (every few minutes, or for a new kid) must not stall the event loop.
        who = (
            await asyncio.to_thread(verify, token.strip())
            if svc.verifier.fetches_keys
            else verify(token.strip())
        )
    except errors.AuthenticationError:
        # Failures are budgeted per source; a valid token is never refused for others' failures.
        # Past the budget the attempt gets 429 and is not audited, which bounds what one source
        # can write to the trail.
        try:
            request.state.quota = await svc.limiter.count_failure(_source(request))
        except errors.RateLimitedError as exc:
            request.state.quota = Quota(svc.limiter.failures, 0, exc.retry_after_s)
            raise
        # The path is the client's text: only a well-formed patient id is recorded.
        addressed = request.path_params.get("patient_id")
        if addressed is None and isinstance(fhir_id := request.path_params.get("fhir_id"), str):
            addressed = patient_id_of(fhir_id)  # /fhir/Patient/{id} names them by their FHIR id
        await svc.audit.append(
            AuditRecord(
                actor="anonymous",
                role="none",
                action="authenticate",
                patient_id=addressed if is_patient_id(addressed) else None,
                outcome="denied",
                purpose="none",
                at=audit_now(),
                request_id=_request_id(request),
            )
        )
        raise
    try:
        request.state.quota = await svc.limiter.check(f"{who.role}:{who.subject}")
    except errors.RateLimitedError as exc:
        request.state.quota = Quota(svc.limiter.requests, 0, exc.retry_after_s)
        raise
    request.state.role = who.role
    return who


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


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


#: A route parameter that requires an authenticated caller.
Caller = Annotated[Principal, Depends(principal)]


def caller(request: Request, who: Principal) -> AppCaller:
    """The use cases' view of the caller: who, and the request's audit correlation id."""
    return AppCaller(who, _request_id(request))


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
    """Append the decision to the audit trail (:meth:`AccessPolicy.record`)."""
    await svc.app.policy.record(
        caller(request, who), action, patient_id, allowed=allowed, purpose=purpose
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
    await svc.app.policy.require_role(caller(request, who), action, roles, patient_id)


async def patient_access(
    svc: ApiServices,
    request: Request,
    who: Principal,
    action: str,
    patient_id: str,
    roles: tuple[Role, ...],
) -> str:
    """Decide, audit, and raise unless ``who`` may do ``action`` on the patient.

    See :meth:`twin.service.access.AccessPolicy.patient_access`; returns the care team.
    """
    return await svc.app.policy.patient_access(caller(request, who), action, patient_id, roles)


async def grant_ends_at(svc: ApiServices, who: Principal, patient_id: str) -> float | None:
    """When ``who``'s access to the patient ends by itself (an emergency grant's expiry)."""
    return await svc.app.policy.grant_ends_at(who, patient_id)
