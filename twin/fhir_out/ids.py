"""FHIR ids of what Novamind exports: its patients' and the resources about them.

A FHIR id is 1-64 of ``A-Z a-z 0-9 - .`` (R4 §2.24 ``id``); a Novamind patient id is 1-64 of
``A-Z a-z 0-9 _ -`` (``pt_`` + 32 hex digits as the registry issues them). A patient's FHIR id
is their patient id with ``_`` written as ``.``: one to one (a patient id has no ``.``), so
``GET /fhir/Patient/pt.4f3a...`` names ``pt_4f3a...`` and nothing else.

A resource about a patient is named from its patient and its place in their log (the event's
sequence number, and a part when one event gives several resources), so an export made again
names the same record by the same id, and bulk ingest (whose idempotency keys include the
source's id) appends nothing twice.
"""

from __future__ import annotations

import hashlib

from twin.domain.patients import is_patient_id

__all__ = ["fhir_patient_id", "patient_id_of", "resource_id"]

_MAX_ID = 64


def fhir_patient_id(patient_id: str) -> str:
    """The FHIR id of a Novamind patient (``_`` written as ``.``)."""
    return patient_id.replace("_", ".")


def patient_id_of(fhir_id: str) -> str | None:
    """The Novamind patient id a FHIR id names, or ``None`` when it names none."""
    if "_" in fhir_id:  # not a FHIR id, and not one this module wrote
        return None
    patient_id = fhir_id.replace(".", "_")
    return patient_id if is_patient_id(patient_id) else None


def resource_id(fhir_patient: str, *parts: str | int) -> str:
    """The id of a resource about ``fhir_patient``: ``<patient>-<part>-<part>...``.

    Ids longer than FHIR's 64 characters (a patient id of over 40 characters) become ``h`` and
    40 hex digits of the name's SHA-256: still the same id for the same record.
    """
    name = "-".join([fhir_patient, *(str(p) for p in parts)])
    if len(name) <= _MAX_ID:
        return name
    return "h" + hashlib.sha256(name.encode()).hexdigest()[:40]
