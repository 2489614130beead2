"""Who may do what to which patient, emergency access, and the audit entry of every decision.

Every use case that touches patient data asks :class:`AccessPolicy` first; the decision,
allowed or denied, is appended to the audit trail before anything else happens. A clinician
outside the patient's care team is told the patient does not exist (404, OWASP API1) unless
they hold an unexpired emergency-access grant; such an access is allowed and audited with
purpose ``ETREAT`` (HL7 purpose of use for emergency treatment). Researchers act under
``HRESCH``, clinicians under ``TREAT``.

Nothing here knows HTTP: the caller's identity and the request id arrive as a :class:`Caller`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from twin import errors, ports
from twin.domain.audit import AuditRecord
from twin.domain.audit import now as audit_now

__all__ = [
    "BREAK_GLASS",
    "DISCLOSURES",
    "ROLES",
    "AccessPolicy",
    "Caller",
    "Grant",
    "Principal",
    "Role",
    "reason_digest",
]

Role = Literal["clinician", "researcher", "admin", "service", "auditor"]
ROLES: tuple[Role, ...] = ("clinician", "researcher", "admin", "service", "auditor")
#: The document collection of emergency-access grants.
BREAK_GLASS = "break_glass"
#: Emergency-access reasons a grant keeps (the newest).
GRANT_HISTORY = 50
#: The document collection of disclosure manifests (the patients a listing disclosed).
DISCLOSURES = "disclosure"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        subject: The token's ``sub``.
        role: One of :data:`ROLES`.
        care_team: Care-team ids a clinician belongs to (their patients' teams).
        expires_at: Unix time the credential expires.
    """

    subject: str
    role: Role
    care_team: tuple[str, ...]
    expires_at: int


@dataclass(frozen=True, slots=True)
class Caller:
    """Who acts, and in which request (the audit trail's correlation id)."""

    who: Principal
    request_id: str


@dataclass(frozen=True, slots=True)
class Grant:
    """An emergency-access grant (stored sealed under the patient's key)."""

    subject: str
    reason: str
    expires_at: float


def reason_digest(reason: str, salt: str) -> str:
    """The digest an audit entry binds an emergency-access reason by.

    HMAC-SHA-256 under a random salt kept only in the sealed grant (32 hex digits): the trail
    alone cannot be used to confirm a guessed reason, and it goes with an erasure of the grant.
    """
    return hmac.new(salt.encode(), reason.encode(), hashlib.sha256).hexdigest()[:32]


def _purpose_of(role: str) -> str:
    """The purpose of use a role acts under (HL7: treatment, health research; else the role)."""
    return {"clinician": "TREAT", "researcher": "HRESCH"}.get(role, role)


def _grant_id(patient_id: str, subject: str) -> str:
    return f"{patient_id}:{hashlib.sha256(subject.encode()).hexdigest()[:24]}"


class AccessPolicy:
    """The access rules, and the audit of each decision.

    Args:
        audit: The hash-chained audit trail.
        registry: Patients and their care teams.
        documents: Where emergency-access grants are kept.
        sealer: Seals grants under the patient's data key (erasing the patient erases them).
        break_glass_max_minutes: The longest emergency-access grant.
    """

    def __init__(
        self,
        audit: ports.AuditLog,
        registry: ports.PatientRegistry,
        documents: ports.DocumentStore,
        sealer: ports.Sealer,
        *,
        break_glass_max_minutes: int = 60,
    ) -> None:
        self._audit = audit
        self._registry = registry
        self._documents = documents
        self._sealer = sealer
        self._break_glass_max_minutes = break_glass_max_minutes

    async def record(
        self,
        caller: Caller,
        action: str,
        patient_id: str | None,
        *,
        allowed: bool,
        purpose: str | None = None,
    ) -> None:
        """Append the decision to the audit trail."""
        who = caller.who
        default_purpose = _purpose_of(who.role)
        await self._audit.append(
            AuditRecord(
                actor=who.subject,
                role=who.role,
                action=action,
                patient_id=patient_id,
                outcome="allowed" if allowed else "denied",
                purpose=purpose or default_purpose,
                at=audit_now(),
                request_id=caller.request_id,
            )
        )

    async def record_disclosures(
        self, caller: Caller, action: str, patient_ids: Sequence[str]
    ) -> None:
        """Audit a disclosure of many patients' data: one entry, and a manifest naming them.

        The manifest (document collection :data:`DISCLOSURES`, the patients' opaque ids in
        order) is bound to the entry by its SHA-256 in the entry's purpose, so the hash chain
        covers it; an accounting of disclosures for one patient reads the manifests. One entry
        per request, whatever the page size: a listing cannot flood the trail that every
        other request waits to append to.
        """
        if not patient_ids:
            return
        who = caller.who
        ids = list(dict.fromkeys(patient_ids))
        body = json.dumps(
            {"action": action, "request_id": caller.request_id, "patients": ids},
            separators=(",", ":"),
        ).encode()
        digest = hashlib.sha256(body).hexdigest()
        await self._documents.put(ports.Document(DISCLOSURES, digest[:32], None, body, time.time()))
        purpose = _purpose_of(who.role)
        await self.record(
            caller,
            action,
            None,
            allowed=True,
            purpose=f"{purpose} patients:{len(ids)} manifest-sha256:{digest}",
        )

    async def require_role(
        self,
        caller: Caller,
        action: str,
        roles: tuple[Role, ...],
        patient_id: str | None = None,
    ) -> None:
        """Audit, and refuse callers whose role is not in ``roles``.

        Raises:
            AuthorizationError: The role may not do ``action`` (403).
        """
        allowed = caller.who.role in roles
        await self.record(caller, action, patient_id, allowed=allowed)
        if not allowed:
            raise errors.AuthorizationError(f"role {caller.who.role} may not {action}")

    async def patient_access(
        self, caller: Caller, action: str, patient_id: str, roles: tuple[Role, ...]
    ) -> str:
        """Decide, audit, and raise unless the caller may do ``action`` on the patient.

        Returns:
            The patient's care team.

        Raises:
            AuthorizationError: The role may not do this at all (403).
            NotFoundError: No such patient, or a clinician outside the care team without an
                emergency-access grant (404: existence is not revealed).
        """
        who = caller.who
        team = await self._registry.care_team(patient_id)
        purpose: str | None = None
        if who.role not in roles:
            allowed = False
        elif who.role != "clinician":
            allowed = team is not None
        elif team is not None and team in who.care_team:
            allowed = True
        else:
            grant = None if team is None else await self._active_grant(patient_id, who.subject)
            allowed = grant is not None
            purpose = "ETREAT" if allowed else None
        await self.record(caller, action, patient_id, allowed=allowed, purpose=purpose)
        if who.role not in roles:
            raise errors.AuthorizationError(f"role {who.role} may not {action}")
        if not allowed or team is None:
            raise errors.NotFoundError("no such patient")
        return team

    async def _grant_body(self, patient_id: str, subject: str) -> dict[str, Any]:
        """The stored grant of ``subject`` for the patient, opened (empty when none)."""
        doc = await self._documents.get(BREAK_GLASS, _grant_id(patient_id, subject))
        if doc is None:
            return {}
        try:
            body = await self._sealer.open(patient_id, kind=BREAK_GLASS, version=0, sealed=doc.body)
            found: dict[str, Any] = json.loads(body)
        except (errors.KeyAccessError, errors.CheckpointCorruptError, ValueError):
            return {}  # no readable grant: as if there were none (a new one replaces it)
        return found if isinstance(found, dict) else {}

    async def _active_grant(self, patient_id: str, subject: str) -> Grant | None:
        body = await self._grant_body(patient_id, subject)
        if not body:
            return None
        grant = Grant(body["subject"], body["reason"], body["expires_at"])
        return grant if grant.subject == subject and grant.expires_at > time.time() else None

    async def grant_ends_at(self, who: Principal, patient_id: str) -> float | None:
        """When ``who``'s access to the patient ends by itself: an emergency grant's expiry.

        ``None`` when the access does not rest on a grant (care team, admin) or there is none.
        """
        if who.role != "clinician":
            return None
        team = await self._registry.care_team(patient_id)
        if team is None or team in who.care_team:
            return None
        grant = await self._active_grant(patient_id, who.subject)
        return None if grant is None else grant.expires_at

    async def grant_break_glass(
        self, caller: Caller, patient_id: str, reason: str, minutes: int
    ) -> float:
        """Grant a clinician emergency access to one patient; returns the expiry (Unix seconds).

        The grant start is audited as ``break_glass.start`` with the stated reason as the
        purpose; the grant lasts at most ``break_glass_max_minutes``.

        Raises:
            AuthorizationError: Only clinicians may ask (403).
            NotFoundError: No such patient (404).
        """
        who = caller.who
        team = await self._registry.care_team(patient_id)
        allowed = who.role == "clinician" and team is not None
        minutes = min(minutes, self._break_glass_max_minutes)
        salt = secrets.token_hex(16)
        # The reason may name the patient or their condition: the audit trail (kept six years,
        # declared free of patient data, never erased) binds it by digest; the text itself is
        # kept in the grant, sealed under the patient's key, and goes with an erasure.
        await self.record(
            caller,
            "break_glass.start",
            patient_id,
            allowed=allowed,
            purpose=f"ETREAT reason-hmac:{reason_digest(reason, salt)}",
        )
        if who.role != "clinician":
            raise errors.AuthorizationError("only clinicians may request emergency access")
        if team is None:
            raise errors.NotFoundError("no such patient")
        expires_at = time.time() + 60.0 * minutes
        # Earlier grants' reasons stay with the new one (the audit entries name each by its
        # digest), the newest GRANT_HISTORY of them.
        earlier = await self._grant_body(patient_id, who.subject)
        kept = earlier.get("history")
        if not isinstance(kept, list):  # a grant from before reasons were kept in a history
            kept = [{"reason": earlier["reason"]}] if isinstance(earlier.get("reason"), str) else []
        history = [*kept, {"reason": reason, "salt": salt, "at": time.time()}]
        body = json.dumps(
            {
                "subject": who.subject,
                "reason": reason,
                "expires_at": expires_at,
                "history": history[-GRANT_HISTORY:],
            }
        )
        sealed = await self._sealer.seal(
            patient_id, kind=BREAK_GLASS, version=0, plaintext=body.encode()
        )
        await self._documents.put(
            ports.Document(
                BREAK_GLASS, _grant_id(patient_id, who.subject), patient_id, sealed, time.time()
            )
        )
        return expires_at
