"""A patient erased while an export ran leaves no part of it behind, and is not audited.

The export's last step on the embedded stores (the whole run on Ray is in tests/ray).
"""

from __future__ import annotations

import asyncio

import pytest

from deployments.pipelines.fhir_export import _conclude
from deployments.stores import erasure_ledger, open_audit_log, open_documents
from tests.integration.conftest import api_settings
from twin import ports
from twin.fhir_out import export

pytestmark = pytest.mark.integration


def test_a_patient_erased_while_the_export_ran_is_left_out_at_its_end(tmp_path):
    settings = api_settings(tmp_path)
    ids = ["pkeep", "pgone"]
    job = export.ExportJob(job_id="job1", status="running", care_team="t1", submitted_by="dr")
    request = export.ExportRequest(
        care_team="t1", request_url="http://novamind/fhir/Group/t1/$export",
        submitted_role="clinician",
    )  # fmt: skip

    async def run() -> tuple[list[str], list[str | None]]:
        async with open_documents(settings) as documents:
            for index, pid in enumerate(ids):
                for kind in export.EXPORT_TYPES:
                    doc_id = export.part_id(job.job_id, kind, index)
                    await documents.put(ports.Document(export.PARTS, doc_id, pid, b"x", 0.0))
        # The erasure ran before the part was written: it found nothing of this export.
        await erasure_ledger(settings).record("pgone")
        await _conclude(settings, request, job, ids, {}, [0, 1])
        async with open_documents(settings) as documents:
            left = [d.patient_id for d in await documents.list(export.PARTS, limit=100)]
        async with open_audit_log(settings) as audit:
            audited = [e.record.patient_id for e in await audit.entries()]
        return left, audited

    left, audited = asyncio.run(run())
    assert set(left) == {"pkeep"} and len(left) == len(export.EXPORT_TYPES)
    assert audited == ["pkeep"]
