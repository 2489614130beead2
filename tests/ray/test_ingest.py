"""Bulk ingest on Ray Data against the real event store (SQLite here; PostgreSQL in production).

Every record ends appended, duplicate or quarantined with its reason; a re-run appends nothing;
FHIR NDJSON, Bundles, CSV and Parquet sources; events land in time order and replay into twins.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import LocalFileSystem

from deployments.host_ports import build_host_ports
from deployments.pipelines import ingest
from deployments.pipelines.ingest import IngestJob, run_ingest
from deployments.stores import open_documents, open_event_writer
from twin import errors, schemas
from twin.domain import events as E
from twin.domain.patients import Identifiers
from twin.ingest.enrolment import Subject
from twin.ingest.records import Record
from twin.ports import NewEvent
from twin.service import jobs
from twin.service.host import TwinHost
from twin.settings import TwinSettings

ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
LOINC = "http://loinc.org"


def _observation(oid: str, pid: str, day: int, total: int) -> dict[str, object]:
    return {
        "resourceType": "Observation", "id": oid, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "44261-6"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": f"2024-01-{day:02d}T10:00:00Z",
        "valueQuantity": {"value": total, "code": "{score}"},
    }  # fmt: skip


async def _patients(settings: TwinSettings, n: int, erased: int = 0) -> list[str]:
    async with open_event_writer(settings) as (_, registry):
        pids = [
            await registry.create(Identifiers(f"N{i}", "1970-01-01", f"M{i}", None), care_team="t")
            for i in range(n)
        ]
        for pid in pids[:erased]:
            await registry.erase(pid)
    return pids


async def _log(settings: TwinSettings, pid: str) -> list[tuple[int, float, object]]:
    async with open_event_writer(settings) as (events, _):
        return [(e.seq, e.day, e.payload) for e in await events.read(pid)]


async def _job(settings: TwinSettings, job_id: str) -> schemas.IngestJobOut:
    async with open_documents(settings) as documents:
        found = await documents.get(jobs.INGEST.collection, job_id)
    assert found is not None
    return jobs.INGEST.load(found)


@pytest.fixture
def settings(tmp_path: Path) -> TwinSettings:
    return TwinSettings(data_dir=tmp_path / "data", particles=200)


def test_fhir_ndjson_job_appends_quarantines_and_reruns_as_duplicates(
    ray_cluster, settings, tmp_path, monkeypatch
):
    pids = asyncio.run(_patients(settings, 3))
    # Shuffled on purpose: each patient's events must still land in time order.
    lines = [_observation(f"o{i}-{d}", pid, d, 5 + d) for d in (9, 3, 6) for i, pid in
             enumerate(pids)]  # fmt: skip
    lines.append(_observation("unknown", "pt_nobody", 4, 10))
    lines.append(
        _observation("before", pids[0], 1, 10) | {"effectiveDateTime": "2023-12-30T00:00:00Z"}
    )
    lines.append(_observation("score", pids[1], 4, 99))
    lines.append({"resourceType": "Patient", "id": "p"})
    source = tmp_path / "obs.ndjson"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n{oops\n")

    job = IngestJob((str(source),), "fhir-ndjson", ORIGIN, str(tmp_path / "run1"))
    report = run_ingest(settings, job, writers=2)
    assert (report.records, report.appended, report.duplicates) == (14, 9, 0)
    assert report.quarantined == 5 and report.patients == 3
    assert report.reasons == {
        "patient: unknown or erased": 1,
        "effective time: before the patient's enrolment": 1,
        "phq9.total is invalid: expected integer 0..27": 1,
        "identifier: a record identifier (system and value; not a national or document "
        "number, not old) is required to match the patient": 1,
        "not a JSON line": 1,
    }
    assert json.loads((tmp_path / "run1" / "report.json").read_text())["appended"] == 9
    status = asyncio.run(_job(settings, job.job_id))
    assert status.status == "succeeded" and status.report is not None
    assert (status.report.appended, status.report.reasons) == (9, report.reasons)
    assert (status.records_read, status.records_done) == (14, 14)
    quarantine = pq.read_table(tmp_path / "run1" / "quarantine").to_pylist()
    assert sorted(r["reason"] for r in quarantine) == sorted(
        reason for reason, n in report.reasons.items() for _ in range(n)
    )
    assert all(r["outcome"] == "quarantined" and r["source"] for r in quarantine)
    assert not any("99" in r["reason"] for r in quarantine)  # reasons carry no values
    log = asyncio.run(_log(settings, pids[0]))
    assert [(seq, day) for seq, day, _ in log] == [(1, 2 + 10 / 24), (2, 5 + 10 / 24),
                                                   (3, 8 + 10 / 24)]  # fmt: skip
    assert [p for *_, p in log] == [E.Phq9(8), E.Phq9(11), E.Phq9(14)]

    again = run_ingest(
        settings, IngestJob((str(source),), "fhir-ndjson", ORIGIN, str(tmp_path / "run2"))
    )
    assert (again.appended, again.duplicates, again.quarantined) == (0, 9, 5)
    assert asyncio.run(_log(settings, pids[0])) == log
    # Progress while it runs: the records read once parsing is done, then outcomes so far.
    monkeypatch.setattr(jobs, "PROGRESS_EVERY_S", 0.0)
    saved: list[schemas.IngestJobOut] = []
    run3 = IngestJob((str(source),), "fhir-ndjson", ORIGIN, str(tmp_path / "run3"))
    queued = schemas.IngestJobOut(job_id=run3.job_id, status="running", format="x", sources=1)
    ingest._run(
        settings, run3, 2, (LocalFileSystem(), str(tmp_path / "run3")), queued, saved.append
    )
    done = [s.records_done for s in saved]
    assert saved[0].records_read == 14 and done[0] == 0 and len(saved) >= 2
    assert done == sorted(done) and 0 < done[-1] <= 14
    with pytest.raises(errors.ConfigurationError, match="already holds a report"):
        run_ingest(
            settings, IngestJob((str(source),), "fhir-ndjson", ORIGIN, str(tmp_path / "run2"))
        )
    # A job that fails says so, with the error (the status the API and SDK read).
    missing = IngestJob(
        (str(tmp_path / "absent.ndjson"),), "fhir-ndjson", ORIGIN, str(tmp_path / "x")
    )
    with pytest.raises(Exception, match="absent"):
        run_ingest(settings, missing)
    failed = asyncio.run(_job(settings, missing.job_id))
    assert failed.status == "failed" and failed.error and failed.finished_at


def test_bundles_csv_and_parquet_feed_the_same_log(ray_cluster, settings, tmp_path):
    pids = asyncio.run(_patients(settings, 2, erased=1))
    live, erased = pids[1], pids[0]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": _observation("b1", live, 2, 12)},
        {"resource": _observation("b2", erased, 2, 12)},
    ]}  # fmt: skip
    (tmp_path / "bundles").mkdir()
    (tmp_path / "bundles" / "one.json").write_text(json.dumps(bundle))
    report = run_ingest(
        settings,
        IngestJob((str(tmp_path / "bundles"),), "fhir-bundle", ORIGIN, str(tmp_path / "b")),
    )
    assert (report.appended, report.quarantined) == (1, 1)
    assert report.reasons == {"patient: unknown or erased": 1}

    rows = pd.DataFrame(
        {
            "patient": [live, f"Patient/{live}", live],
            "code": ["70274-6", "93832-4", "44261-6"],
            "value": [9, 420, 10],
            "unit": ["{score}", "min", None],
            "effective": ["2024-01-05T08:00:00Z", "2024-01-06T08:00:00+00:00",
                          "2024-01-03T08:00:00Z"],
            "id": ["c1", "c2", "c3"],
        }
    )  # fmt: skip
    rows.iloc[:2].to_csv(tmp_path / "obs.csv", index=False)
    csv = run_ingest(
        settings, IngestJob((str(tmp_path / "obs.csv"),), "csv", ORIGIN, str(tmp_path / "c"))
    )
    assert (csv.appended, csv.quarantined) == (2, 0)
    assert pq.read_table(tmp_path / "c" / "quarantine").num_rows == 0  # there, and empty
    rows.iloc[2:].to_parquet(tmp_path / "obs.parquet")
    late = run_ingest(
        settings,
        IngestJob((str(tmp_path / "obs.parquet"),), "parquet", ORIGIN, str(tmp_path / "p")),
    )
    # Day 2.33 is older than the twin's newest event (day 5.33): quarantined, not reordered.
    assert (late.appended, late.quarantined) == (0, 1)
    assert late.reasons == {"effective time: older than the twin's newest event": 1}
    log = asyncio.run(_log(settings, live))
    assert [p for *_, p in log] == [E.Phq9(12), E.Gad7(9), E.SleepDuration(7.0)]

    async def twin_day() -> float:
        stores = await build_host_ports(settings)
        try:
            host = TwinHost(stores, settings=settings.host)
            return (await host.summary(live)).day
        finally:
            await stores.aclose()

    assert asyncio.run(twin_day()) >= 5  # the twin folds in the bulk-ingested events


def test_source_in_s3(ray_cluster, settings, tmp_path, monkeypatch):
    from tests.servers import MotoServer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    moto = MotoServer()
    moto.start()
    try:
        s3 = moto.client("s3")
        s3.create_bucket(Bucket="exports")  # type: ignore[attr-defined]
        # The Ray workers started before this test's credentials existed, and production
        # readers use the pod's IAM role; here the export bucket is simply readable.
        s3.put_bucket_acl(Bucket="exports", ACL="public-read")  # type: ignore[attr-defined]
        (pid,) = asyncio.run(_patients(settings, 1))
        body = "\n".join(json.dumps(_observation(f"s{d}", pid, d, 7)) for d in (2, 3))
        s3.put_object(Bucket="exports", Key="fhir/obs.ndjson", Body=body.encode())  # type: ignore[attr-defined]
        remote = settings.model_copy(update={"aws_endpoint_url": moto.endpoint})
        job = IngestJob(("s3://exports/fhir/",), "fhir-ndjson", ORIGIN, str(tmp_path / "s3"))
        report = run_ingest(remote, job, writers=1)
        assert (report.appended, report.quarantined) == (2, 0)
    finally:
        moto.stop()


async def _queue(settings: TwinSettings, request: schemas.IngestJobIn) -> str:
    async with open_documents(settings) as documents:
        return (await jobs.enqueue_ingest(documents, request)).job_id


def test_the_job_runner_runs_an_ingest_job_queued_through_the_api_path(
    ray_cluster, settings, settle
):
    import ray

    from deployments.pipelines.job_runner import ensure_runner
    from deployments.stores import ingest_root

    pids = asyncio.run(_patients(settings, 2))
    inbox = Path(ingest_root(settings))
    inbox.mkdir(parents=True)
    lines = [_observation(f"q{i}-{d}", pid, d, 8 + d) for d in (2, 5) for i, pid in enumerate(pids)]
    (inbox / "day.ndjson").write_text("\n".join(json.dumps(line) for line in lines))
    request = schemas.IngestJobIn(
        paths=[str(inbox / "day.ndjson")], format="fhir-ndjson", origin=ORIGIN
    )
    job_id = asyncio.run(_queue(settings, request))
    runner = ensure_runner(settings, workers=1)
    try:
        status = settle(lambda: asyncio.run(_job(settings, job_id)), 180)
    finally:
        ray.kill(runner, no_restart=True)
    assert status.status == "succeeded" and status.started_at and status.submitted_at
    assert status.report is not None and status.report.appended == 4
    report = Path(settings.data_dir).resolve() / "ingest" / job_id / "report.json"
    assert json.loads(report.read_text())["appended"] == 4


def test_a_writer_commits_patients_together_and_keeps_each_rows_outcome(settings, monkeypatch):
    """Several patients per call and per commit; a refused batch falls back event by event."""
    # Rows are taken patient by patient in id order: the refused patient comes after the others.
    fresh, other, late = sorted(asyncio.run(_patients(settings, 3)))

    async def seed() -> None:
        async with open_event_writer(settings) as (events, _):
            await events.append(late, [NewEvent("seed", 5.0, E.Phq9(10))])

    asyncio.run(seed())

    def record(source: str, pid: str, day: float, total: int) -> Record:
        return Record(source, f"Patient/{pid}", ORIGIN + timedelta(days=day), E.Phq9(total))

    records = [
        record("late-3", late, 3, 11),  # older than the log's day 5
        record("late-7", late, 7, 12),
        record("fresh-2", fresh, 2, 13),
        record("fresh-1", fresh, 1, 14),
        record("nobody", "pt_nobody", 1, 15),
        record("other-4", other, 4, 16),
        record("other-4", other, 4, 16),  # the same fact twice
    ]
    monkeypatch.setattr(ingest, "_COMMIT_EVENTS", 2)  # several commits within the call
    writer = ingest._Writer(settings.for_workers())
    subjects = {f"Patient/{pid}": Subject(pid, ORIGIN) for pid in (fresh, other, late)}
    subjects["Patient/pt_nobody"] = Subject("pt_nobody", ORIGIN)  # erased after resolving
    placed = ingest._placed(ingest._prepared(records), subjects, datetime.now(UTC))
    table = writer(ingest._bucketed(placed, 1))
    got = sorted(zip(*(table[c].to_pylist() for c in ("source", "outcome", "reason")), strict=True))
    assert got == [
        ("fresh-1", "appended", None),
        ("fresh-2", "appended", None),
        ("late-3", "quarantined", "effective time: older than the twin's newest event"),
        ("late-7", "appended", None),
        ("nobody", "quarantined", "patient: unknown or erased"),
        ("other-4", "appended", None),
        ("other-4", "duplicate", None),
    ]
    days = {pid: [day for _, day, _ in asyncio.run(_log(settings, pid))] for pid in
            (late, fresh, other)}  # fmt: skip
    assert days == {late: [5.0, 7.0], fresh: [1.0, 2.0], other: [4.0]}


def test_jobs_with_empty_refused_or_date_only_records_finish_with_a_report(
    ray_cluster, settings, tmp_path
):
    (pid,) = asyncio.run(_patients(settings, 1))
    empty, refused, mixed = tmp_path / "empty", tmp_path / "refused", tmp_path / "mixed"
    for folder in (empty, refused, mixed):
        folder.mkdir()
    (empty / "none.ndjson").write_text("")
    (refused / "bad.ndjson").write_text("not json\n" * 40 + '{"resourceType": "Patient"}\n')
    (mixed / "bad.ndjson").write_text("not json\n" * 40)
    # A date without a time (as US Core's own examples give it) is that day, in UTC.
    dated = {**_observation("o-date", pid, 2, 14), "effectiveDateTime": "2024-01-02"}
    (mixed / "good.ndjson").write_text(json.dumps(dated) + "\n")
    outcome = {}
    for folder in (empty, refused, mixed):
        job = IngestJob((str(folder),), "fhir-ndjson", ORIGIN, str(tmp_path / f"out-{folder.name}"))
        outcome[folder.name] = run_ingest(settings, job, writers=1)
    assert outcome["empty"].records == 0
    assert outcome["refused"].quarantined == 41 and outcome["refused"].appended == 0
    assert outcome["mixed"].appended == 1 and outcome["mixed"].quarantined == 40
    ((_, day, _),) = asyncio.run(_log(settings, pid))
    assert day == (datetime(2024, 1, 2, tzinfo=UTC) - ORIGIN).days


def test_an_instant_posted_to_the_api_and_one_read_from_fhir_land_on_one_day(ray_cluster, tmp_path):
    """The API's ``effective`` and bulk ingest's ``effectiveDateTime`` share one conversion."""
    from tests.integration.conftest import api_settings, bearer, open_env

    # One data folder: the API (with the test token secret) and the job (whose settings carry
    # no secret through Ray; both read the research key generated in the folder).
    data = tmp_path / "data"
    settings = TwinSettings(data_dir=data, particles=200)
    when = "2024-03-05T09:30:00+01:00"  # 4 days 30 minutes after the enrolment

    async def post() -> str:
        async with open_env(api_settings(data, research_key=None)) as env:
            created = await env.http.post(
                "/v1/patients",
                json={"name": "Eve Canary", "birth_date": "1970-01-01", "mrn": "M-eq",
                      "care_team": "t", "enrolled_at": "2024-03-01T08:00:00Z"},
                headers=bearer("admin", "adm"),
            )  # fmt: skip
            pid: str = created.json()["patient_id"]
            item = {"idempotency_key": "api", "effective": when,
                    "payload": {"type": "phq9", "total": 14}}  # fmt: skip
            answer = await env.http.post(
                f"/v1/patients/{pid}/observations", json={"items": [item]},
                headers=bearer("service", "etl"),
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            return pid

    pid = asyncio.run(post())
    fhir = {**_observation("o-eq", pid, 5, 14), "effectiveDateTime": when}
    (tmp_path / "eq.ndjson").write_text(json.dumps(fhir) + "\n")
    job = IngestJob((str(tmp_path / "eq.ndjson"),), "fhir-ndjson", None, str(tmp_path / "out"))
    assert run_ingest(settings, job, writers=1).appended == 1
    days = [day for _, day, _ in asyncio.run(_log(settings, pid))]
    assert days == [4 + 30 / 1440] * 2
