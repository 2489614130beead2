"""FHIR R4 out: a patient's record and their twin's estimates as resources EHRs take.

Pure: resources are built from the domain's events, a patient's identifiers and a twin's state
and forecast, and validated with the ``fhir.resources`` models; the use cases that read the stores
and check access are :mod:`twin.service.fhir`, the HTTP routes ``deployments/api/routes/fhir.py``
and the Bulk Data export job ``deployments/pipelines/fhir_export.py``. Codes: ``docs/fhir.md``.
"""

from twin.fhir_out.estimates import (
    Estimate,
    estimate_of,
    estimate_resources,
    risk_assessment,
    severity_observation,
)
from twin.fhir_out.export import EXPORT_TYPES, ExportJob, ExportRequest, kickoff_parameters
from twin.fhir_out.ids import fhir_patient_id, patient_id_of, resource_id
from twin.fhir_out.record import patient_resource, record_resources
from twin.fhir_out.rest import (
    FHIR_JSON,
    FHIR_NDJSON,
    capability_statement,
    operation_outcome,
    searchset,
)

__all__ = [
    "EXPORT_TYPES",
    "FHIR_JSON",
    "FHIR_NDJSON",
    "Estimate",
    "ExportJob",
    "ExportRequest",
    "capability_statement",
    "estimate_of",
    "estimate_resources",
    "fhir_patient_id",
    "kickoff_parameters",
    "operation_outcome",
    "patient_id_of",
    "patient_resource",
    "record_resources",
    "resource_id",
    "risk_assessment",
    "searchset",
    "severity_observation",
]
