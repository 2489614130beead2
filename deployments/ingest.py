"""Bulk ingest on Ray Data: sources to validated events in the event store, refusals quarantined.

Pipeline::

    read (NDJSON lines | Bundle files | CSV | Parquet; local paths or s3://)
      -> map_batches: parse + validate (twin.ingest: the twin's own observation rules)
                      -> rows with an event (deterministic idempotency key) or a reason
      -> accepted rows: groupby(patient_id).map_groups(writer actors)
                      -> the patient must exist and not be erased; events appended in time
                         order, in batches, through the EventStore port (durable when acked)
      -> every row ends as appended | duplicate | quarantined (with its reason)
      -> quarantine/ (Parquet) and report.json in the job's output folder

Nothing is dropped silently: the report's counts add up to the records read, and each
quarantined row keeps its source, patient (when known) and reason; never a value. Running the
same job again appends nothing (every key is already in the log: all rows come back as
duplicates). Events are written to the log only; twins fold them in when next activated, exactly
as after any other append (the log is the truth).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from pyarrow import fs as pa_fs
from ray.data.expressions import col

from deployments import jobs, ray_env
from deployments.bootstrap import open_event_writer
from twin import errors, ports, schemas
from twin.domain import codec
from twin.ingest import fhir, tabular
from twin.ingest.records import Record, prepare
from twin.settings import TwinSettings

__all__ = ["FORMATS", "IngestJob", "IngestReport", "run_ingest"]

Format = Literal["fhir-ndjson", "fhir-bundle", "csv", "parquet"]
FORMATS: tuple[Format, ...] = ("fhir-ndjson", "fhir-bundle", "csv", "parquet")
_APPEND_CHUNK = 500
_PREPARED = pa.schema(
    [
        ("patient_id", pa.string()),
        ("idempotency_key", pa.string()),
        ("day", pa.float64()),
        ("payload", pa.string()),
        ("source", pa.string()),
        ("reason", pa.string()),
    ]
)
_OUTCOMES = pa.schema(
    [
        ("patient_id", pa.string()),
        ("source", pa.string()),
        ("outcome", pa.string()),
        ("reason", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class IngestJob:
    """One bulk-ingest job.

    Attributes:
        paths: Files or folders (local, or ``s3://`` with the pod's IAM role).
        format: ``fhir-ndjson`` (one resource per line), ``fhir-bundle`` (one Bundle per
            file), ``csv`` or ``parquet`` (:mod:`twin.ingest.tabular` columns).
        origin: Start of the twins' time axis (aware); records before it are quarantined.
        output: Folder for ``report.json`` and ``quarantine/`` (local or ``s3://``).
        job_id: The job's id (generated).
    """

    paths: tuple[str, ...]
    format: Format
    origin: datetime
    output: str
    job_id: str = field(default_factory=jobs.new_job_id)


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What a job did. ``records == appended + duplicates + quarantined``.

    Attributes:
        job_id: The job.
        records: Records read (one resource may hold several, e.g. a start and a stop dose).
        appended: New events acknowledged by the event store.
        duplicates: Events already in the log (a re-run, or a repeated source row).
        quarantined: Records refused; ``reasons`` counts them by reason.
        reasons: Refusals by reason.
        patients: Patients that received at least one new event.
        seconds: Wall time, s.
        output: Where the report and the quarantine dataset are.
    """

    job_id: str
    records: int
    appended: int
    duplicates: int
    quarantined: int
    reasons: dict[str, int]
    patients: int
    seconds: float
    output: str


def _where(path: str, text: str) -> str:
    """A stable position for a record without an id: the file and a digest of its text."""
    return f"{Path(path).name}@{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _table(rows: list[dict[str, object]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def _parse_ndjson(batch: dict[str, Any], origin: datetime) -> pa.Table:
    records: list[Record] = []
    for line, path in zip(batch["text"], batch["path"], strict=True):
        where = _where(str(path), str(line))
        try:
            resource = json.loads(line)
        except ValueError:
            records.append(Record.refused(where, "not a JSON line"))
            continue
        records.extend(fhir.records_from_resource(resource, where=where))
    return _table(prepare(records, origin), _PREPARED)


def _parse_bundles(batch: dict[str, Any], origin: datetime) -> pa.Table:
    records: list[Record] = []
    for data, path in zip(batch["bytes"], batch["path"], strict=True):
        name = Path(str(path)).name
        try:
            bundle = json.loads(bytes(data))
        except ValueError:
            records.append(Record.refused(name, "not a JSON file"))
            continue
        records.extend(fhir.records_from_bundle(bundle, where=name))
    return _table(prepare(records, origin), _PREPARED)


def _parse_rows(batch: Any, origin: datetime) -> pa.Table:
    records = []
    for row in batch.to_dict(orient="records"):
        path = str(row.pop("path", ""))
        where = _where(path, json.dumps(row, sort_keys=True, default=str))
        records.append(tabular.record_from_row(row, where=where))
    return _table(prepare(records, origin), _PREPARED)


def _quarantine_rows(batch: pa.Table) -> pa.Table:
    rows = [
        {"patient_id": r["patient_id"], "source": r["source"], "outcome": "quarantined",
         "reason": r["reason"]}
        for r in batch.to_pylist()
    ]  # fmt: skip
    return _table(rows, _OUTCOMES)


class _Writer:
    """A Ray Data actor holding open stores; appends one patient's events per call."""

    def __init__(self, settings_values: dict[str, Any]) -> None:
        self._settings = TwinSettings(**settings_values)
        self._loop = asyncio.new_event_loop()
        self._stack = AsyncExitStack()
        self._events, self._registry = self._loop.run_until_complete(self._open())

    async def _open(self) -> tuple[ports.EventStore, ports.PatientRegistry]:
        return await self._stack.enter_async_context(open_event_writer(self._settings))

    def __call__(self, group: pa.Table) -> pa.Table:
        return _table(self._loop.run_until_complete(self._write(group.to_pylist())), _OUTCOMES)

    async def _write(self, rows: list[dict[str, Any]]) -> list[dict[str, object]]:
        patient_id = str(rows[0]["patient_id"])

        def outcome(row: dict[str, Any], what: str, reason: str | None = None) -> dict[str, object]:
            return {"patient_id": patient_id, "source": row["source"], "outcome": what,
                    "reason": reason}  # fmt: skip

        if await self._registry.care_team(patient_id) is None:
            return [outcome(r, "quarantined", "patient: unknown or erased") for r in rows]
        rows.sort(key=lambda r: (r["day"], r["idempotency_key"]))
        results: list[dict[str, object]] = []
        for start in range(0, len(rows), _APPEND_CHUNK):
            chunk = rows[start : start + _APPEND_CHUNK]
            batch = [
                ports.NewEvent(
                    r["idempotency_key"], r["day"], codec.decode(json.loads(r["payload"]))
                )
                for r in chunk
            ]
            try:
                acks = await self._events.append(patient_id, batch)
            except errors.EventOrderError:
                results += [await self._one_by_one(patient_id, row, event, outcome)
                            for row, event in zip(chunk, batch, strict=True)]  # fmt: skip
                continue
            results += [
                outcome(row, "duplicate" if ack.duplicate else "appended")
                for row, ack in zip(chunk, acks, strict=True)
            ]
        return results

    async def _one_by_one(
        self, patient_id: str, row: dict[str, Any], event: ports.NewEvent, outcome: Any
    ) -> dict[str, object]:
        try:
            (ack,) = await self._events.append(patient_id, [event])
        except errors.EventOrderError:
            return outcome(row, "quarantined", "effective time: older than the twin's newest event")
        return outcome(row, "duplicate" if ack.duplicate else "appended")

    def __del__(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._stack.aclose())
            self._loop.close()


def _read(job: IngestJob, filesystem: Any) -> Any:
    paths = [ray_env.strip_scheme(p, filesystem) for p in job.paths]
    origin = {"origin": job.origin}
    if job.format == "fhir-ndjson":
        ds = ray.data.read_text(paths, include_paths=True, filesystem=filesystem)
        return ds.map_batches(_parse_ndjson, fn_kwargs=origin, batch_format="numpy")
    if job.format == "fhir-bundle":
        ds = ray.data.read_binary_files(paths, include_paths=True, filesystem=filesystem)
        return ds.map_batches(_parse_bundles, fn_kwargs=origin, batch_format="numpy")
    reader = ray.data.read_csv if job.format == "csv" else ray.data.read_parquet
    ds = reader(paths, include_paths=True, filesystem=filesystem)
    return ds.map_batches(_parse_rows, fn_kwargs=origin, batch_format="pandas")


def run_ingest(
    settings: TwinSettings,
    job: IngestJob,
    *,
    writers: int = 2,
    queued: schemas.IngestJobOut | None = None,
) -> IngestReport:
    """Run ``job`` on the connected Ray cluster (``ray.init`` first); write its report.

    The job's status (running, then succeeded with the report or failed with the error) is kept
    as a document that ``GET /v1/ingest/jobs/{job_id}`` and the SDK read.

    Args:
        settings: The platform's settings.
        job: What to ingest and where the report goes.
        writers: Writer actors.
        queued: The job's ``queued`` status when it was submitted through the API.

    Raises:
        InvalidInputError: Unknown format, or an origin without a UTC offset.
        ConfigurationError: The output folder already holds a report.
    """
    if job.format not in FORMATS:
        raise errors.InvalidInputError(f"format: one of {', '.join(FORMATS)}")
    if job.origin.tzinfo is None:
        raise errors.InvalidInputError("origin: a UTC offset is required")
    filesystem, root = ray_env.output_root(settings, job.output)
    if filesystem.get_file_info(f"{root}/report.json").type != pa_fs.FileType.NotFound:
        raise errors.ConfigurationError(f"{job.output} already holds a report")
    running = (
        queued
        or schemas.IngestJobOut(
            job_id=job.job_id, status="queued", format=job.format, sources=len(job.paths)
        )
    ).model_copy(update={"status": "running", "started_at": jobs.utc_now()})
    reports: list[IngestReport] = []

    def work(status: schemas.IngestJobOut) -> schemas.IngestJobOut:
        with jobs.INGEST.progress(settings) as save:
            reports.append(_run(settings, job, writers, (filesystem, root), status, save))
        return status.model_copy(
            update={
                "status": "succeeded",
                "finished_at": jobs.utc_now(),
                "records_read": reports[0].records,
                "records_done": reports[0].records,
                "report": schemas.IngestReportOut.model_validate(asdict(reports[0])),
            }
        )

    jobs.INGEST.tracked(settings, running, work)
    return reports[0]


def _run(
    settings: TwinSettings, job: IngestJob, writers: int, output: tuple[Any, str],
    status: schemas.IngestJobOut, save: Callable[[schemas.IngestJobOut], None],
) -> IngestReport:  # fmt: skip
    started = time.perf_counter()
    prepared = _read(job, ray_env.arrow_filesystem(settings, job.paths)).materialize()
    status = status.model_copy(update={"records_read": prepared.count(), "records_done": 0})
    save(status)
    accepted = prepared.filter(expr=col("reason").is_null())
    refused = prepared.filter(expr=col("reason").is_not_null())
    # A few shuffle partitions per writer keep patients spread without 200 near-empty blocks.
    written = accepted.groupby("patient_id", num_partitions=4 * writers).map_groups(
        _Writer,
        fn_constructor_kwargs={"settings_values": ray_env.worker_settings(settings)},
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=writers),
        # The writers wait on the database, not the CPU: a quarter CPU each leaves the parse
        # and quarantine tasks room to run (whole CPUs starve them on a small cluster).
        num_cpus=0.25,
    )
    outcomes = written.union(refused.map_batches(_quarantine_rows, batch_format="pyarrow"))
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    patients: set[str] = set()
    filesystem, root = output
    filesystem.create_dir(f"{root}/quarantine")
    last = time.monotonic()
    # Outcomes stream to the driver as writers finish: counted, the job's progress saved every
    # few seconds, quarantined rows written as they come (the file exists, empty, when none is).
    with (
        filesystem.open_output_stream(f"{root}/quarantine/part-00000.parquet") as stream,
        pq.ParquetWriter(stream, _OUTCOMES) as quarantine,
    ):
        for batch in outcomes.iter_batches(batch_format="pyarrow", batch_size=None):
            for row in batch.to_pylist():
                counts[row["outcome"]] += 1
                if row["outcome"] == "quarantined":
                    reasons[row["reason"]] += 1
                elif row["outcome"] == "appended":
                    patients.add(row["patient_id"])
            bad = batch.filter(pc.equal(batch["outcome"], "quarantined"))
            quarantine.write_table(bad.select(_OUTCOMES.names).cast(_OUTCOMES))
            if time.monotonic() - last >= jobs.PROGRESS_EVERY_S:
                last = time.monotonic()
                save(status.model_copy(update={"records_done": sum(counts.values())}))
    report = IngestReport(
        job_id=job.job_id,
        records=sum(counts.values()),
        appended=counts["appended"],
        duplicates=counts["duplicate"],
        quarantined=counts["quarantined"],
        reasons=dict(reasons.most_common()),
        patients=len(patients),
        seconds=time.perf_counter() - started,
        output=str(job.output),
    )
    with filesystem.open_output_stream(f"{root}/report.json") as out:
        out.write(json.dumps(asdict(report), indent=2).encode())
    return report
