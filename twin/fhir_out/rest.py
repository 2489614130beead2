"""FHIR's RESTful envelope: search Bundles, the CapabilityStatement and OperationOutcomes.

What the server at ``/fhir`` says about itself (:func:`capability_statement`), how a search
answers (:func:`searchset`) and how an error reads (:func:`operation_outcome`, which the HTTP
error mapping uses for every ``/fhir`` path). Plain JSON, built here without HTTP: the routes
give the URLs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twin.fhir_out.validation import checked

__all__ = [
    "BULK_DATA",
    "CAPABILITY_DATE",
    "FHIR_JSON",
    "FHIR_NDJSON",
    "FHIR_VERSION",
    "ISSUE_CODES",
    "capability_statement",
    "operation_outcome",
    "searchset",
]

#: The media type of FHIR JSON (R4 §2.6 "Formats").
FHIR_JSON = "application/fhir+json"
#: The media type of Bulk Data files: one resource per line.
FHIR_NDJSON = "application/fhir+ndjson"
#: The FHIR version every resource and the server declare (R4).
FHIR_VERSION = "4.0.1"
#: HL7 FHIR Bulk Data Access IG, its CapabilityStatement (v2).
BULK_DATA = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
#: When this server's capabilities last changed (the CapabilityStatement's ``date``).
CAPABILITY_DATE = "2026-12-01"
#: HTTP status -> the OperationOutcome issue type (R4 ValueSet issue-type).
ISSUE_CODES = {
    400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
    409: "conflict", 410: "deleted", 413: "too-costly", 422: "processable", 429: "throttled",
    500: "exception", 503: "transient",
}  # fmt: skip
_SECURITY = "http://terminology.hl7.org/CodeSystem/restful-security-service"
_GROUP_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
_SEARCH_PARAMS = [
    {"name": "subject", "type": "reference", "documentation": "Patient/[id]: the patient"},
    {"name": "patient", "type": "reference", "documentation": "[id] or Patient/[id]"},
    {"name": "_count", "type": "number", "documentation": "entries per page, 1-1000"},
    {"name": "_offset", "type": "number", "documentation": "entries to skip (the next link)"},
]


def operation_outcome(
    status: int, diagnostics: str | None, *, severity: str = "error"
) -> dict[str, Any]:
    """An OperationOutcome of one issue: its type from the HTTP ``status``, the text given.

    Built without validation (the error path must not fail); the tests validate its shape.
    """
    issue: dict[str, Any] = {"severity": severity, "code": ISSUE_CODES.get(status, "processing")}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def searchset(
    resources: Sequence[dict[str, Any]],
    *,
    base: str,
    total: int,
    self_url: str,
    next_url: str | None = None,
) -> dict[str, Any]:
    """A search result: a ``searchset`` Bundle of ``resources`` (each already validated).

    Args:
        resources: The page's resources, in order.
        base: The server's base URL (``https://.../fhir``), for each entry's ``fullUrl``.
        total: Matches in all pages.
        self_url: The search as it was asked.
        next_url: The next page's search, when there is one.
    """
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def capability_statement(base: str, software_version: str) -> dict[str, Any]:
    """What the server at ``base`` does (validated).

    Read a Patient; search a patient's Observations (their record and the twin's severity) and
    RiskAssessments; Bulk Data ``$export`` of a care team as a Group (asynchronous, NDJSON).
    Every interaction but this statement needs a bearer token (OAuth 2.0: the platform's IdP).
    """
    subject_search = {"interaction": [{"code": "search-type"}], "searchParam": _SEARCH_PARAMS}
    return checked({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": CAPABILITY_DATE,
        "publisher": "Novamind",
        "kind": "instance",
        "instantiates": [BULK_DATA],
        "software": {"name": "Novamind", "version": software_version},
        "implementation": {
            "description": "Novamind digital twins: patients' records and the twins' estimates",
            "url": base,
        },
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "service": [{"coding": [{"system": _SECURITY, "code": "OAuth"}]}],
                "description": "Authorization: Bearer <token> from the platform's identity "
                "provider; clinicians see their care teams' patients, every access is audited",
            },
            "resource": [
                {"type": "Patient", "interaction": [{"code": "read"}]},
                {"type": "Observation", **subject_search},
                {"type": "RiskAssessment", **subject_search},
                {"type": "Group", "operation": [{
                    "name": "export",
                    "definition": _GROUP_EXPORT,
                }]},
            ],
        }],
    })  # fmt: skip
