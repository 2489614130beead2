"""Bulk ingest on Ray Data: sources to validated events in the event store, refusals quarantined.

Pipeline::

    read (NDJSON lines | Bundle files | CSV | Parquet; local paths or s3://)
      -> map_batches: parse + validate (twin.ingest: the twin's own observation rules)
                      -> rows with an event (deterministic idempotency key), a Patient, or a
                         reason
      -> driver: the job's Patients matched by identifier or registered, every subject
                 resolved to a patient and their enrolment (twin.ingest.enrolment)
      -> map_batches: each row placed on its patient's time axis (or refused)
      -> accepted rows: groupby(bucket of patient ids).map_groups(writer actors)
                      -> the patient must exist and not be erased; each patient's events
                         appended in time order, several patients per durable commit
                         (EventStore.append_many: durable when acked)
      -> every row ends as appended | duplicate | quarantined (with its reason)
      -> quarantine/ (Parquet) and report.json in the job's output folder

Nothing is dropped silently: the report's counts add up to the records read (a Patient is a
record: appended when it registers a patient, duplicate when it matches one), and each
quarantined row keeps its source, patient (when known) and reason; never a value. Running the
same job again appends nothing (every key is already in the log, every Patient matches: all
rows come back as duplicates). Events are written to the log only; twins fold them in when next
activated, exactly as after any other append (the log is the truth).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from pyarrow import fs as pa_fs
from ray.data.expressions import col

from deployments import ray_env
from deployments.pipelines import job_status
from deployments.pipelines.loop_bound import LoopBound
from deployments.stores import open_audit_log, open_cohort_stores, open_event_writer
from twin import errors, ports, schemas
from twin.domain import codec
from twin.domain.audit import AuditRecord
from twin.domain.audit import now as audit_time
from twin.domain.events import MAX_EVENT_GAP_DAYS
from twin.ingest import fhir, tabular
from twin.ingest.enrolment import JobPatients, PatientMatcher, Subject, record_start
from twin.ingest.records import PatientFacts, Record, day_of, prepare
from twin.service import jobs
from twin.settings import TwinSettings

__all__ = ["FORMATS", "IngestJob", "IngestReport", "run_ingest"]

Format = Literal["fhir-ndjson", "fhir-bundle", "csv", "parquet"]
FORMATS: tuple[Format, ...] = ("fhir-ndjson", "fhir-bundle", "csv", "parquet")
#: Events per durable commit: a writer groups patients until a commit holds about this many.
_COMMIT_EVENTS = 2_000
#: Rows per writer call (one bucket of patients, so that commits can group them).
_BUCKET_ROWS = 10_000
_UTC = pa.timestamp("us", tz="UTC")
_PREPARED = pa.schema(
    [
        ("subject", pa.string()),
        ("effective", _UTC),
        ("idempotency_key", pa.string()),
        ("payload", pa.string()),
        ("source", pa.string()),
        ("reason", pa.string()),
        ("patient", pa.string()),
    ]
)
_RESOLVED = pa.schema(
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
        origin: Time origin (aware) of registered patients without a stored enrolment; each
            other patient's time axis starts at their own enrolment.
        output: Folder for ``report.json`` and ``quarantine/`` (local or ``s3://``).
        job_id: The job's id (generated).
        care_team: The team the job's new patients are registered to; ``None`` registers none.
        enrolled_at: Enrolment (aware) of the patients the job registers; ``None``: where each
            one's records in the job start.
        submitted_by: Who asked for the job (the token subject through the API); the audit
            trail names them for every patient the job registers or matches.
    """

    paths: tuple[str, ...]
    format: Format
    origin: datetime | None
    output: str
    job_id: str = field(default_factory=jobs.new_job_id)
    care_team: str | None = None
    enrolled_at: datetime | None = None
    submitted_by: str | None = None


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
        registered: Patients the job registered from its Patient resources.
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
    registered: int
    seconds: float
    output: str


def _where(path: str, text: str) -> str:
    """A stable position for a record without an id: the file and a digest of its text."""
    return f"{Path(path).name}@{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _prepared(records: list[Record]) -> pa.Table:
    return pa.table(prepare(records), schema=_PREPARED)


def _parse_ndjson(batch: dict[str, Any]) -> pa.Table:
    records: list[Record] = []
    for line, path in zip(batch["text"], batch["path"], strict=True):
        try:
            resource = json.loads(line)
        except (ValueError, RecursionError):  # nesting deeper than the stack is no record
            records.append(Record.refused(_where(str(path), str(line)), "not a JSON line"))
            continue
        # A resource with a type and an id is its own source; only others need a digest of
        # their text (no SHA-256 of every line).
        named = isinstance(resource, dict) and fhir.source_of(resource)
        where = "" if named else _where(str(path), str(line))
        records.extend(fhir.records_from_resource(resource, where=where))
    return _prepared(records)


def _parse_bundles(batch: dict[str, Any]) -> pa.Table:
    records: list[Record] = []
    for data, path in zip(batch["bytes"], batch["path"], strict=True):
        # Entries without an id are named by a digest of the file's path, not by its name:
        # exporters name Bundle files after the patient (Synthea: Given_Family_<uuid>.json).
        name = "bundle-" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
        try:
            bundle = json.loads(bytes(data))
        except (ValueError, RecursionError):
            records.append(Record.refused(name, "not a JSON file"))
            continue
        records.extend(fhir.records_from_bundle(bundle, where=name))
    return _prepared(records)


def _parse_rows(batch: Any) -> pa.Table:
    records = []
    for row in batch.to_dict(orient="records"):
        path = str(row.pop("path", ""))
        where = _where(path, json.dumps(row, sort_keys=True, default=str))
        records.append(tabular.record_from_row(row, where=where))
    return _prepared(records)


def _outcomes(rows: pa.Table, outcomes: list[str], reasons: list[str | None]) -> pa.Table:
    """The outcome of each of ``rows`` (prepared rows, in order)."""
    return pa.table(
        [rows["patient_id"], rows["source"], pa.array(outcomes, pa.string()),
         pa.array(reasons, pa.string())],
        schema=_OUTCOMES,
    )  # fmt: skip


def _quarantine_rows(batch: pa.Table) -> pa.Table:
    if batch.num_rows == 0:  # an empty block may come without its columns
        batch = _RESOLVED.empty_table()
    return _outcomes(batch, ["quarantined"] * batch.num_rows, batch["reason"].to_pylist())


#: The patient id of a placeholder row (no patient has it): see :func:`_bucketed`.
_PLACEHOLDER = ""


def _bucketed(batch: pa.Table, buckets: int) -> pa.Table:
    """The accepted rows of ``batch``, each with its bucket (CRC-32 of the patient id, mod n).

    ``buckets`` is n. A block with no accepted row becomes one placeholder row (patient id
    ``""``) that the writers skip, so that no block reaches the shuffle empty and without its
    columns.
    """
    if batch.num_rows > 0:
        batch = batch.filter(pc.is_null(batch["reason"]))
    if batch.num_rows == 0:
        batch = pa.table(
            {name: [_PLACEHOLDER if name == "patient_id" else None] for name in _RESOLVED.names},
            schema=_RESOLVED,
        )
    ids = batch["patient_id"].to_pylist()
    bucket = pa.array([zlib.crc32(str(pid).encode()) % buckets for pid in ids], pa.int64())
    return batch.append_column("bucket", bucket)


def _unopened(exc: errors.KeyAccessError) -> str:
    """Why a patient's rows were quarantined: erased (or unknown), or a key that does not open."""
    if isinstance(exc, errors.DataKeyDamagedError):
        return f"patient: {exc}"
    return "patient: unknown or erased"


def _is_stop(payload_json: str) -> bool:
    """Whether an encoded payload stops a drug (a prescription of 0 mg/day)."""
    payload = json.loads(payload_json)
    return payload.get("type") == "prescription" and payload.get("mg_per_day") == 0


class _Writer:
    """A Ray Data actor holding open stores; appends the events of a bucket of patients per call.

    Patients are committed in groups of about :data:`_COMMIT_EVENTS` events (one durable
    commit each, :meth:`twin.ports.EventStore.append_many`) rather than one commit per patient.
    """

    def __init__(self, settings_values: dict[str, Any]) -> None:
        self._stores = LoopBound(open_event_writer(TwinSettings(**settings_values)))
        self._events, self._registry = self._stores.value

    def __call__(self, group: pa.Table) -> pa.Table:
        group = group.filter(pc.not_equal(group["patient_id"], _PLACEHOLDER))
        if group.num_rows == 0:
            return _OUTCOMES.empty_table()
        # Each patient's events in time order: the log refuses an event older than its newest.
        # At one instant a drug's stop goes before any start (a switch written as a stop and a
        # start with the same time must not be a third concurrent drug); other ties by key.
        stops = [_is_stop(payload) for payload in group["payload"].to_pylist()]
        rows = group.append_column("_start", pa.array([not s for s in stops])).sort_by(
            [
                ("patient_id", "ascending"),
                ("day", "ascending"),
                ("_start", "ascending"),
                ("idempotency_key", "ascending"),
            ]
        )
        outcomes, reasons = self._stores.run(self._write(rows))
        return _outcomes(rows, outcomes, reasons)

    async def _write(self, rows: pa.Table) -> tuple[list[str], list[str | None]]:
        keys, days = rows["idempotency_key"].to_pylist(), rows["day"].to_pylist()
        payloads = rows["payload"].to_pylist()
        outcomes: list[str] = [""] * rows.num_rows
        reasons: list[str | None] = [None] * rows.num_rows
        pending: list[tuple[str, int, list[ports.NewEvent]]] = []
        pending_events = start = 0
        for patient_id, run in itertools.groupby(rows["patient_id"].to_pylist()):
            end = start + sum(1 for _ in run)
            if await self._registry.care_team(patient_id) is None:
                outcomes[start:end] = ["quarantined"] * (end - start)
                reasons[start:end] = ["patient: unknown or erased"] * (end - start)
            else:
                batch = [
                    ports.NewEvent(keys[i], days[i], codec.decode(json.loads(payloads[i])))
                    for i in range(start, end)
                ]
                pending.append((patient_id, start, batch))
                pending_events += len(batch)
                if pending_events >= _COMMIT_EVENTS:
                    await self._commit(pending, outcomes, reasons)
                    pending, pending_events = [], 0
            start = end
        await self._commit(pending, outcomes, reasons)
        return outcomes, reasons

    async def _commit(
        self,
        pending: list[tuple[str, int, list[ports.NewEvent]]],
        outcomes: list[str],
        reasons: list[str | None],
    ) -> None:
        """Append the pending patients' batches together; fill in their rows' outcomes."""
        if not pending:
            return
        results = await self._events.append_many([(pid, batch) for pid, _, batch in pending])
        for (patient_id, start, batch), result in zip(pending, results, strict=True):
            if isinstance(result, errors.KeyAccessError):  # erased since the job checked
                outcomes[start : start + len(batch)] = ["quarantined"] * len(batch)
                reasons[start : start + len(batch)] = [_unopened(result)] * len(batch)
                continue
            if isinstance(result, errors.EventOrderError):
                # Some events are older than the patient's log: each alone, those quarantined.
                for i, event in enumerate(batch):
                    outcomes[start + i], reasons[start + i] = await self._one_by_one(
                        patient_id, event
                    )
                continue
            outcomes[start : start + len(batch)] = [
                "duplicate" if ack.duplicate else "appended" for ack in result
            ]

    async def _one_by_one(self, patient_id: str, event: ports.NewEvent) -> tuple[str, str | None]:
        try:
            (ack,) = await self._events.append(patient_id, [event])
        except errors.EventGapError:
            return "quarantined", (
                f"effective time: more than {MAX_EVENT_GAP_DAYS:g} days after the "
                "patient's latest event"
            )
        except errors.EventOrderError:
            return "quarantined", "effective time: older than the twin's newest event"
        except errors.KeyAccessError as exc:
            return "quarantined", _unopened(exc)
        return ("duplicate" if ack.duplicate else "appended"), None


def _read(job: IngestJob, filesystem: Any) -> Any:
    paths = [ray_env.strip_scheme(p, filesystem) for p in job.paths]
    if job.format == "fhir-ndjson":
        # A few blocks per CPU: one NDJSON file is otherwise split into blocks of ~3,400 lines,
        # and every later step pays a task per block (on 2 CPUs, 88 blocks for 300k lines cost
        # 10 s more than 8 in reading and filtering alone).
        blocks = 4 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        ds = ray.data.read_text(
            paths, include_paths=True, filesystem=filesystem, override_num_blocks=blocks
        )
        return ds.map_batches(_parse_ndjson, batch_format="numpy")
    if job.format == "fhir-bundle":
        ds = ray.data.read_binary_files(paths, include_paths=True, filesystem=filesystem)
        return ds.map_batches(_parse_bundles, batch_format="numpy")
    reader = ray.data.read_csv if job.format == "csv" else ray.data.read_parquet
    ds = reader(paths, include_paths=True, filesystem=filesystem)
    return ds.map_batches(_parse_rows, batch_format="pandas")


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
    for name in ("origin", "enrolled_at"):
        when = getattr(job, name)
        if when is not None and when.tzinfo is None:
            raise errors.InvalidInputError(f"{name}: a UTC offset is required")
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
        with job_status.progress(jobs.INGEST, settings) as save:
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

    job_status.tracked(jobs.INGEST, settings, running, work)
    return reports[0]


_STARTS = pa.schema([("subject", pa.string()), ("start", _UTC)])


def _starts_of(group: pa.Table, now: datetime) -> pa.Table:
    """One subject's rows -> where its records start (:func:`record_start`), if anywhere."""
    if group.num_rows == 0:
        return _STARTS.empty_table()
    start = record_start(group["effective"].to_pylist(), now)
    if start is None:
        return _STARTS.empty_table()
    return pa.table({"subject": [group["subject"][0].as_py()], "start": [start]}, schema=_STARTS)


def _record_starts(records: Any, now: datetime) -> dict[str, datetime]:
    """Subject key -> where its accepted records start (the default enrolment of new patients)."""
    accepted = records.filter(expr=col("reason").is_null() & col("subject").is_not_null())
    if accepted.count() == 0:  # no groupby over no rows (its blocks may lack columns)
        return {}
    starts = (
        accepted.select_columns(["subject", "effective"])
        .groupby("subject")
        .map_groups(_starts_of, fn_kwargs={"now": now}, batch_format="pyarrow")
    )
    return {str(row["subject"]): row["start"] for row in starts.iter_rows()}


def _match_patients(
    settings: TwinSettings, job: IngestJob, prepared: Any, records: Any, now: datetime
) -> tuple[JobPatients, list[str]]:
    """Match or register the job's Patients; resolve every subject (twin.ingest.enrolment).

    ``records`` are the prepared rows that are no Patient (their subjects are resolved);
    ``now`` is when the job runs.

    Returns:
        What matching found, and the source of each Patient in the order of its outcomes.
    """
    starts = _record_starts(records, now)
    # One pass for facts and sources: two passes may read the blocks in different orders.
    rows = [
        (str(row["source"]), PatientFacts.from_json(str(row["patient"])))
        for row in prepared.filter(expr=col("patient").is_not_null())
        .select_columns(["source", "patient"])
        .iter_rows()
    ]
    sources, facts = [s for s, _ in rows], [f for _, f in rows]

    async def match() -> JobPatients:
        async with open_cohort_stores(settings) as stores:
            matcher = PatientMatcher(stores.registry, stores.deidentifier.identifier_link)
            found = await matcher.resolve(
                facts, starts, starts, care_team=job.care_team, enrolled_at=job.enrolled_at,
                origin=job.origin, now=now,
            )  # fmt: skip
        await _audit_patients(settings, job, found)
        return found

    return asyncio.run(match()), sources


async def _audit_patients(settings: TwinSettings, job: IngestJob, found: JobPatients) -> None:
    """One audit entry per patient the job registered (``patient.create``) or matched."""
    at = audit_time()
    records = [
        AuditRecord(
            actor=job.submitted_by or "novamind-cli",
            role="service",
            action="patient.create" if outcome == "appended" else "patient.match",
            patient_id=patient_id,
            outcome="allowed",
            purpose="ingest",
            at=at,
            request_id=job.job_id,
        )
        for outcome, _, patient_id in found.outcomes
        if patient_id is not None
    ]
    if records:
        async with open_audit_log(settings, on_failure=job_status.anchor_failures()) as audit:
            await audit.append_many(records)


def _patient_outcomes(sources: list[str], matched: JobPatients) -> pa.Table:
    """The outcome of each Patient resource (``sources`` in the order of the outcomes)."""
    outcomes = [o for o, _, _ in matched.outcomes]
    reasons = [r for _, r, _ in matched.outcomes]
    patient_ids = [p for _, _, p in matched.outcomes]
    return pa.table(
        [pa.array(patient_ids, pa.string()), pa.array(sources, pa.string()),
         pa.array(outcomes, pa.string()), pa.array(reasons, pa.string())],
        schema=_OUTCOMES,
    )  # fmt: skip


@functools.lru_cache(maxsize=1)
def _subjects_of(ref: Any) -> dict[str, Subject | str]:
    # One fetch per worker process and job (every block reads the table); only the latest
    # job's is kept.
    mapping: dict[str, Subject | str] = ray.get(ref)
    return mapping


def _resolved(batch: pa.Table, subjects: list[Any], now: datetime) -> pa.Table:
    """:func:`_placed` with the job's subjects (``[ObjectRef]`` of the table)."""
    if batch.num_rows == 0:  # an empty block may come without its columns
        return _RESOLVED.empty_table()
    return _placed(batch, _subjects_of(subjects[0]), now)


def _placed(batch: pa.Table, mapping: dict[str, Subject | str], now: datetime) -> pa.Table:
    """Rows with their patient id and day, or the reason their subject or time is refused.

    The day is :func:`twin.domain.time_axis.day_of`'s, as for an event the API receives.
    """
    patient_ids: list[str | None] = []
    days: list[float | None] = []
    reasons: list[str | None] = batch["reason"].to_pylist()
    times = batch["effective"].to_pylist()
    for i, key in enumerate(batch["subject"].to_pylist()):
        found = mapping.get(key) if key is not None else None
        patient_ids.append(found.patient_id if isinstance(found, Subject) else None)
        days.append(None)
        if reasons[i] is not None:
            continue
        if key is None:
            reasons[i] = "subject: a reference to the patient is required"
        elif not isinstance(found, Subject):
            reasons[i] = found or "subject: the reference names no Patient of the job"
        else:
            try:
                days[i] = day_of(times[i], found.origin, now=now)
            except errors.InvalidInputError as exc:
                reasons[i] = str(exc)
    accepted = pa.array([r is None for r in reasons])
    return pa.table(
        [pa.array(patient_ids, pa.string()),
         pc.if_else(accepted, batch["idempotency_key"], None),
         pa.array(days, pa.float64()),
         pc.if_else(accepted, batch["payload"], None),
         batch["source"], pa.array(reasons, pa.string())],
        schema=_RESOLVED,
    )  # fmt: skip


def _value_counts(values: Any) -> dict[str, int]:
    """How often each value of an Arrow column occurs."""
    return {str(c["values"]): int(c["counts"]) for c in pc.value_counts(values).to_pylist()}


def _run(
    settings: TwinSettings, job: IngestJob, writers: int, output: tuple[Any, str],
    status: schemas.IngestJobOut, save: Callable[[schemas.IngestJobOut], None],
) -> IngestReport:  # fmt: skip
    started = time.perf_counter()
    prepared = _read(job, ray_env.arrow_filesystem(settings, job.paths)).materialize()
    records_read = prepared.count()
    status = status.model_copy(update={"records_read": records_read, "records_done": 0})
    save(status)
    # Writers take buckets of patients (all of a patient's rows in one bucket), so each call
    # holds many patients and their events share commits.
    # Eight buckets or more per writer, in eight shuffle partitions per writer: the actor pool
    # hands partitions out as writers free up, so no writer is left with a last large share
    # (with four, one writer of two ran alone for the last third of the write phase).
    buckets = max(8 * writers, -(-records_read // _BUCKET_ROWS))
    records = prepared.filter(expr=col("patient").is_null())
    now = datetime.now(UTC)  # one present for the whole job: enrolments and the latest times
    matched, patient_sources = _match_patients(settings, job, prepared, records, now)
    # Materialised: both the refused and the accepted rows are read from it.
    resolved = records.map_batches(
        _resolved,
        fn_kwargs={"subjects": [ray.put(matched.subjects)], "now": now},
        batch_format="pyarrow",
    ).materialize()
    refused = resolved.filter(expr=col("reason").is_not_null())
    outcomes = refused.map_batches(_quarantine_rows, batch_format="pyarrow")
    # A job in which no record is accepted has nothing to write: no shuffle over no rows.
    if resolved.filter(expr=col("reason").is_null()).count() > 0:
        # Accepted rows with their bucket by a map, not a filter: a filter leaves blocks whose
        # rows were all refused empty and without columns, and a shuffle partition that gets
        # only such blocks cannot sort them by bucket (see _bucketed).
        written = (
            resolved.map_batches(_bucketed, fn_kwargs={"buckets": buckets}, batch_format="pyarrow")
            .groupby("bucket", num_partitions=8 * writers)
            .map_groups(
                _Writer,
                fn_constructor_kwargs={"settings_values": settings.for_workers()},
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=writers),
                # The writers wait on the database, not the CPU: a quarter CPU each leaves the
                # parse and quarantine tasks room to run (whole CPUs starve them on a small
                # cluster).
                num_cpus=0.25,
            )
        )
        outcomes = written.union(outcomes)
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

        def tally(batch: pa.Table, *, events: bool = True) -> None:
            # Counted in Arrow columns, not row by row in Python.
            counts.update(_value_counts(batch["outcome"]))
            is_bad = pc.equal(batch["outcome"], "quarantined")
            reasons.update(_value_counts(batch.filter(is_bad)["reason"]))
            if events:  # a registration is no new event
                is_new = pc.equal(batch["outcome"], "appended")
                patients.update(pc.unique(batch.filter(is_new)["patient_id"]).to_pylist())
            quarantine.write_table(batch.filter(is_bad).select(_OUTCOMES.names).cast(_OUTCOMES))

        if matched.outcomes:  # the Patients' outcomes, known on the driver already
            tally(_patient_outcomes(patient_sources, matched), events=False)
        for batch in outcomes.iter_batches(batch_format="pyarrow", batch_size=None):
            tally(batch)
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
        registered=sum(outcome == "appended" for outcome, _, _ in matched.outcomes),
        seconds=time.perf_counter() - started,
        output=str(job.output),
    )
    with filesystem.open_output_stream(f"{root}/report.json") as out:
        out.write(json.dumps(asdict(report), indent=2).encode())
    return report
