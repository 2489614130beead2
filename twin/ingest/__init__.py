"""Bulk ingest without the platform: sources (FHIR, tables) to validated records and events.

The Ray Data pipeline that runs this at scale is :mod:`deployments.pipelines.ingest`.
"""

from twin.ingest.records import Record, patient_id_of, to_event

__all__ = ["Record", "patient_id_of", "to_event"]
