"""FHIR Bulk Data export of a care team on Ray Data: each patient's record and twin, sealed.

Pipeline::

    the care team's patients (registry), in id order -> items (patient id, place)
      -> map_batches as Ray tasks, a share of the patients each: per patient their identifiers
         and enrolment, their event log, their twin rebuilt from its checkpoint and the log
         after it, its forecast under continued care; the resources (twin.fhir_out); one
         NDJSON part per resource type, sealed under the patient's data key, put in the
         document store
      -> the driver: progress into the job's status document; the count of each file; an
         OperationOutcome line per patient that could not be exported (erased meanwhile, no
         enrolment instant); an audit entry per patient exported

A part is named by the export, its resource type and the patient's place in the export, so a run
the job runner starts again (after a restart) writes the same parts; the parts of an earlier
attempt are deleted first, and a run that fails or is cancelled deletes what it wrote. A
finished export's parts live until it expires (``fhir_export_ttl_hours``) or its client deletes
it; erasing a patient deletes their parts and shreds the key they were sealed under. The patient
ids cross Ray's object store as opaque ids only; what is written is sealed before it leaves the
task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import ray

from deployments.pipelines import job_status
from deployments.stores import (
    Stores,
    checkpoint_store,
    erasure_ledger,
    open_audit_log,
    open_documents,
    open_event_writer,
    open_stores,
)
from twin import errors, ports
from twin.domain.audit import AuditRecord
from twin.domain.audit import now as audit_time
from twin.domain.specs import Scenario
from twin.fhir_out import estimates, export, record
from twin.fhir_out.ids import fhir_patient_id
from twin.fhir_out.rest import operation_outcome
from twin.forecast.summary import forecast
from twin.service import jobs
from twin.service.fhir import RISK_WEEKS, delete_parts, enrolment_of, part_kind
from twin.service.priors import DocumentPriorRegistry, PriorParameters
from twin.service.restore import current_states
from twin.settings import TwinSettings

__all__ = ["run_export"]

#: Patients per task call: enough to amortise opening the stores, few enough for progress.
_SHARE = 16
_OUT = pa.schema([("index", pa.int64()), ("counts", pa.string()), ("error", pa.string())])
#: Failures that leave one patient out of the export (the rest go on): erased, no enrolment.
_LEFT_OUT = (errors.KeyAccessError, errors.InvalidInputError, errors.NotFoundError)


def _why(exc: errors.TwinError) -> str:
    if isinstance(exc, errors.DataKeyDamagedError):
        return str(exc)  # left out, and said to be no erasure
    if isinstance(exc, errors.KeyAccessError | errors.NotFoundError):
        return "the patient was erased while the export ran"
    return str(exc)


def _ndjson(resources: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in resources).encode()


async def _export_one(
    stores: Stores,
    twin_stores: tuple[ports.EventStore, ports.CheckpointStore, ports.Sealer],
    priors: PriorParameters,
    request: export.ExportRequest,
    job_id: str,
    patient_id: str,
    index: int,
    particles: int,
) -> dict[str, int]:
    """Export one patient: their parts put, sealed; returns the resources of each type.

    A patient no longer in the exported care team is left out without a word (an empty count).
    """
    if await stores.registry.care_team(patient_id) != request.care_team:
        return {}
    wanted = request.wanted()
    identifiers = await stores.registry.identifiers(patient_id)
    enrolment = enrolment_of(identifiers)
    log = await stores.events.read(patient_id)
    resources = [record.patient_resource(patient_id, identifiers)]
    resources += record.record_resources(patient_id, enrolment, log)
    if log and ("Observation" in wanted or "RiskAssessment" in wanted):
        (state,) = await current_states(
            twin_stores, [patient_id], particles=particles, priors=priors
        )
        params = await priors.of(state.prior_version)
        future = forecast(state, Scenario(), weeks=RISK_WEEKS, params=params)
        resources += estimates.estimate_resources(
            patient_id, enrolment, estimates.estimate_of(state), future,
            record.phq9_ids(resources),
        )  # fmt: skip
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        if resource["resourceType"] in wanted:
            by_type.setdefault(resource["resourceType"], []).append(resource)
    for kind, found in by_type.items():
        sealed = await stores.sealer.seal(
            patient_id, kind=part_kind(job_id, kind), version=index, plaintext=_ndjson(found)
        )
        await stores.documents.put(
            ports.Document(
                export.PARTS, export.part_id(job_id, kind, index), patient_id, sealed, time.time()
            )
        )
    return {kind: len(found) for kind, found in by_type.items()}


async def _export_share_async(
    settings: TwinSettings, request: export.ExportRequest, job_id: str, items: list[tuple[str, int]]
) -> pa.Table:
    async with AsyncExitStack() as stack:
        stores = await open_stores(settings, stack)
        twin_stores = (stores.events, checkpoint_store(settings), stores.sealer)
        priors = PriorParameters(DocumentPriorRegistry(stores.documents))
        indexes: list[int] = []
        counts: list[str | None] = []
        reasons: list[str | None] = []
        for patient_id, index in items:
            indexes.append(index)
            try:
                found = await _export_one(
                    stores, twin_stores, priors, request, job_id, patient_id, index,
                    settings.particles,
                )  # fmt: skip
            except _LEFT_OUT as exc:
                counts.append(None)
                reasons.append(_why(exc))
            else:
                counts.append(json.dumps(found))
                reasons.append(None)
    return pa.table({"index": indexes, "counts": counts, "error": reasons}, schema=_OUT)


def _export_share(
    batch: dict[str, Any], request_json: str, settings_values: dict[str, Any], job_id: str
) -> pa.Table:
    """Export a share of the patients (a Ray task): see :func:`_export_one`."""
    request = export.ExportRequest.model_validate_json(request_json)
    settings = TwinSettings(**settings_values)
    items = [(str(p), int(i)) for p, i in zip(batch["patient_id"], batch["index"], strict=True)]
    return asyncio.run(_export_share_async(settings, request, job_id, items))


async def _members(settings: TwinSettings, care_team: str) -> list[str]:
    """The care team's patients, in id order."""
    out: list[str] = []
    async with open_event_writer(settings) as (_, registry):
        after: str | None = None
        while True:
            page = await registry.list_for_team(care_team, after=after, limit=1000)
            out.extend(page)
            if len(page) < 1000:
                return out
            after = page[-1]


async def _clear(settings: TwinSettings, job: export.ExportJob) -> None:
    async with open_documents(settings) as documents:
        await delete_parts(documents, job)


async def _raise_if_cancelled(settings: TwinSettings, job_id: str) -> None:
    async with open_documents(settings) as documents:
        await jobs.raise_if_cancelled(documents, job_id)


async def _conclude(
    settings: TwinSettings,
    request: export.ExportRequest,
    job: export.ExportJob,
    ids: list[str],
    failures: dict[int, str],
    exported: list[int],
) -> None:
    """The OperationOutcome parts of the patients left out; an audit entry per patient exported.

    A patient erased while the export ran is left out after all: an erasure that ran before
    their part was written found none to delete (and the part would be sealed under a key the
    erasure destroyed, or a new one).
    """
    erased = set(await erasure_ledger(settings).erased())
    gone = [index for index in exported if ids[index] in erased]
    exported[:] = [index for index in exported if ids[index] not in erased]
    async with open_documents(settings) as documents:
        for index in gone:
            for kind in export.EXPORT_TYPES:
                await documents.delete(export.PARTS, export.part_id(job.job_id, kind, index))
        for index, reason in sorted(failures.items()):
            line = operation_outcome(500, f"Patient/{fhir_patient_id(ids[index])}: {reason}")
            line["issue"][0]["code"] = "processing"
            doc_id = export.part_id(job.job_id, export.OUTCOMES, index)
            body = _ndjson([line])
            await documents.put(ports.Document(export.PARTS, doc_id, None, body, time.time()))
    at = audit_time()
    role = request.submitted_role
    records = [
        AuditRecord(
            actor=job.submitted_by or "novamind-cli",
            role=role,
            action="fhir.export.read",
            patient_id=ids[index],
            outcome="allowed",
            purpose={"clinician": "TREAT"}.get(role, role),
            at=at,
            request_id=job.job_id,
        )
        for index in exported
    ]
    if records:
        async with open_audit_log(settings, on_failure=job_status.anchor_failures()) as audit:
            await audit.append_many(records)


def _blocks(n: int, workers: int) -> int:
    return max(1, min(n, max(workers, -(-n // _SHARE))))


def _run(
    settings: TwinSettings, request: export.ExportRequest, status: export.ExportJob, workers: int
) -> export.ExportJob:
    asyncio.run(_clear(settings, status))  # what an interrupted attempt wrote
    try:
        ids = asyncio.run(_members(settings, request.care_team))
        status = status.model_copy(update={"patients_total": len(ids)})
        counts: Counter[str] = Counter()
        failures: dict[int, str] = {}
        exported: list[int] = []
        with job_status.progress(jobs.EXPORT, settings) as save:
            save(status)
            if ids:
                n_blocks = _blocks(len(ids), workers)
                items = [{"patient_id": pid, "index": i} for i, pid in enumerate(ids)]
                ds = ray.data.from_items(items, override_num_blocks=n_blocks).map_batches(
                    _export_share,
                    fn_kwargs={
                        "request_json": request.model_dump_json(),
                        "settings_values": settings.for_workers(),
                        "job_id": status.job_id,
                    },
                    concurrency=max(1, min(workers, n_blocks)), num_cpus=0.5,
                    batch_format="numpy", batch_size=None,
                )  # fmt: skip
                last = time.monotonic()
                for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                    for row in batch.to_pylist():
                        if row["error"] is not None:
                            failures[row["index"]] = row["error"]
                        else:
                            found = json.loads(row["counts"])
                            counts.update(found)
                            if found:
                                exported.append(row["index"])
                    done = len(failures) + len(exported)
                    status = status.model_copy(update={"patients_done": done})
                    if time.monotonic() - last >= jobs.PROGRESS_EVERY_S:
                        last = time.monotonic()
                        save(status)
        asyncio.run(_conclude(settings, request, status, ids, failures, sorted(exported)))
        # Deleted while it ran (after the last progress check): nothing is kept.
        asyncio.run(_raise_if_cancelled(settings, status.job_id))
    except BaseException:
        # A failed or cancelled export keeps nothing (the job runner's sweep deletes what this
        # could not, its store out).
        with contextlib.suppress(Exception):  # the original failure is what the job reports
            asyncio.run(_clear(settings, status))
        raise
    finished = datetime.now(UTC)
    ttl = timedelta(hours=settings.fhir_export_ttl_hours)
    return status.model_copy(
        update={
            "status": "succeeded",
            "finished_at": finished.isoformat(),
            "expires_at": (finished + ttl).isoformat(),
            "patients_done": len(ids),
            "outputs": [
                export.ExportOutput(type=kind, count=counts[kind])
                for kind in export.EXPORT_TYPES
                if counts[kind] > 0
            ],
            "errors": len(failures),
        }
    )


def run_export(
    settings: TwinSettings,
    request: export.ExportRequest,
    *,
    queued: export.ExportJob,
    workers: int = 2,
) -> export.ExportJob:
    """Export a care team on the connected Ray cluster (``ray.init`` first).

    Args:
        settings: The platform's settings (stores, particles of stored twins, export lifetime).
        request: The care team, the types, who asked.
        queued: The export's status as the job runner starts it.
        workers: Export tasks run at once.

    Returns:
        The final status (``succeeded``), also saved as the export's document.

    Raises:
        TwinError: The export failed or was cancelled; its document says so.
    """
    started = jobs.utc_now()
    running = queued.model_copy(
        update={"status": "running", "started_at": started, "transaction_time": started}
    )
    return job_status.tracked(
        jobs.EXPORT, settings, running, lambda status: _run(settings, request, status, workers)
    )
