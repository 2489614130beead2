"""Who a FHIR resource is about: subject references and the Patient resources they name.

A subject is written as a key that the job resolves to a Novamind patient
(docs/ingest.md, "Patients from the data"):

- ``Patient/<id>``, from a relative reference, an absolute one ending in ``Patient/<id>`` or a
  versioned one (``Patient/<id>/_history/<v>``);
- ``urn:uuid:<uuid>`` (lower case), the ``fullUrl`` form of transaction Bundles;
- ``identifier:<json [system, value]>``, a logical reference by identifier.

A display-only subject names no one. A Patient resource names itself by ``Patient/<id>``, by
its Bundle entry's ``fullUrl``, and by ``urn:uuid:<id>`` when its id is a UUID (the fullUrl
transaction exports give it, which NDJSON cut from them no longer carries). It is matched to a
registered patient by its identifiers (system and value), and registered with its name, birth
date and medical record number (the identifier typed ``MR``, else the first) when none
matches.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from twin import errors
from twin.domain.codesystems import ENROLMENT_EXTENSION
from twin.domain.patients import is_patient_id
from twin.domain.text import check_line
from twin.ingest.records import PatientFacts

__all__ = ["IDENTIFIER_PREFIX", "MAX_IDENTIFIERS", "patient_facts", "subject_key"]

IDENTIFIER_PREFIX = "identifier:"
#: Identifiers of one Patient taken for matching; more is not a person's record.
MAX_IDENTIFIERS = 32
_MAX_SYSTEM = 255
_MAX_VALUE = 255
#: A FHIR id ([A-Za-z0-9-.]) or a Novamind patient id (which has an underscore).
_PATIENT_REF = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.-]*://[^\s]{0,1000}/)?Patient/([A-Za-z0-9\-._]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?"
)
_UUID = re.compile(
    r"urn:uuid:([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
)
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
#: Identifier types (v2 table 0203) never matched on: national and document numbers are
#: shared by placeholder values in EHRs (999-99-9999) and collide in synthetic data, and a
#: match on them would join two people's records. They are not the record's own numbers.
NOT_MATCHED_TYPES = frozenset({"SS", "SB", "DL", "PPN", "TAX", "NI", "NNxxx", "CZ", "BCT"})
#: Identifier uses never matched on: an old or temporary number may name someone else now.
NOT_MATCHED_USES = frozenset({"old", "temp"})
#: The earliest enrolment a Patient may state (as the registration API's).
_EARLIEST_ENROLMENT = datetime(1900, 1, 1, tzinfo=UTC)


def _identifier(value: object) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return None
    system, text = value.get("system"), value.get("value")
    if not (isinstance(system, str) and isinstance(text, str)):
        return None
    system, text = system.strip(), text.strip()
    if not (0 < len(system) <= _MAX_SYSTEM and 0 < len(text) <= _MAX_VALUE):
        return None
    try:  # the registration API's rule for a line of text, so that both spell one identifier
        check_line(system)
        check_line(text)
    except ValueError:
        return None
    return system, text


def _reference_key(reference: str) -> str | None:
    text = reference.strip()
    match = _UUID.fullmatch(text)
    if match:
        return "urn:uuid:" + match.group(1).lower()
    match = _PATIENT_REF.fullmatch(text)
    if match:
        return "Patient/" + match.group(1)
    # A bare Novamind id (tabular sources, or a reference written without its type).
    return "Patient/" + text if is_patient_id(text) else None


def subject_key(subject: object) -> str | None:
    """The key of a Reference to a patient (see the module docstring), or ``None``."""
    if isinstance(subject, str):
        return _reference_key(subject)
    if not isinstance(subject, dict):
        return None
    reference = subject.get("reference")
    if isinstance(reference, str):
        return _reference_key(reference)
    identifier = _identifier(subject.get("identifier"))
    if identifier is not None:
        return IDENTIFIER_PREFIX + json.dumps(list(identifier), separators=(",", ":"))
    return None


def _name(resource: dict[str, Any]) -> str | None:
    names = [n for n in resource.get("name") or [] if isinstance(n, dict)]
    # The official name, else the usual one, else the first that is not old.
    ranked = sorted(
        (n for n in names if n.get("use") != "old"),
        key=lambda n: {"official": 0, "usual": 1}.get(str(n.get("use")), 2),
    )
    for name in ranked:
        text = name.get("text")
        if isinstance(text, str) and text.strip():
            return text.strip()
        parts = [*(name.get("given") or []), name.get("family")]
        words = [p.strip() for p in parts if isinstance(p, str) and p.strip()]
        if words:
            return " ".join(words)
    return None


def _types(identifier: dict[str, Any]) -> set[str]:
    kind = identifier.get("type")
    codings = kind.get("coding") if isinstance(kind, dict) else None
    return {
        str(c.get("code"))
        for c in codings or []
        if isinstance(c, dict) and c.get("system") == _V2_0203
    }


def _matchable(identifier: dict[str, Any]) -> bool:
    """Whether an identifier is one the patient's record is matched on (see the constants)."""
    if identifier.get("use") in NOT_MATCHED_USES:
        return False
    return not _types(identifier) & NOT_MATCHED_TYPES


def patient_facts(resource: dict[str, Any], *, full_url: str | None = None) -> PatientFacts:
    """What a (validated) Patient resource says to match or register the patient.

    The identifiers matched on are the record's own numbers: not a national or document number
    (:data:`NOT_MATCHED_TYPES`), not an old or temporary one.

    Args:
        resource: The Patient as JSON.
        full_url: Its Bundle entry's ``fullUrl``, when it has one.

    Raises:
        InvalidInputError: No identifier with a system and a value to match on, or more than
            :data:`MAX_IDENTIFIERS`.
    """
    raw = [i for i in resource.get("identifier") or [] if isinstance(i, dict)]
    if len(raw) > MAX_IDENTIFIERS:
        raise errors.InvalidInputError(f"identifier: more than {MAX_IDENTIFIERS}")
    usable = [(i, p) for i in raw if _matchable(i) and (p := _identifier(i)) is not None]
    if not usable:
        raise errors.InvalidInputError(
            "identifier: a record identifier (system and value; not a national or document "
            "number, not old) is required to match the patient"
        )
    pairs = [p for _, p in usable]
    mrn = next((p[1] for i, p in usable if "MR" in _types(i)), pairs[0][1])
    rid = resource.get("id")
    keys = {"Patient/" + rid} if isinstance(rid, str) and rid else set()
    if isinstance(rid, str) and _UUID.fullmatch("urn:uuid:" + rid):
        # Transaction exports (Synthea's among them) give a Patient the fullUrl urn:uuid:<id>;
        # NDJSON cut from them keeps the references but not the fullUrl.
        keys.add("urn:uuid:" + rid.lower())
    if full_url is not None and (key := _reference_key(full_url)) is not None:
        keys.add(key)
    birth = resource.get("birthDate")
    return PatientFacts(
        keys=tuple(sorted(keys)),
        identifiers=tuple(dict.fromkeys(pairs)),
        name=_name(resource),
        birth_date=birth if isinstance(birth, str) else None,
        mrn=mrn,
        enrolled_at=_enrolment(resource),
    )


def _enrolment(resource: dict[str, Any]) -> str | None:
    """The enrolment instant a Patient states (:data:`ENROLMENT_EXTENSION`), ISO 8601 in UTC.

    Raises:
        InvalidInputError: The extension is there but holds no instant with a UTC offset
            between 1900 and now (a day-0 the twin's axis cannot start at).
    """
    stated = [
        e for e in resource.get("extension") or []
        if isinstance(e, dict) and e.get("url") == ENROLMENT_EXTENSION
    ]  # fmt: skip
    if not stated:
        return None
    value = stated[0].get("valueDateTime")
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if len(stated) > 1 or when is None or when.tzinfo is None:
        raise errors.InvalidInputError(
            "extension enrolment: one valueDateTime with a time and a UTC offset"
        )
    when = when.astimezone(UTC)
    if not _EARLIEST_ENROLMENT <= when <= datetime.now(UTC) + timedelta(days=1):
        raise errors.InvalidInputError("extension enrolment: an instant between 1900 and now")
    return when.isoformat()
