"""Real-world FHIR exports end to end: patients from the data, every shape, nothing crashes.

Two sources: the suite's own fixtures (``tests/fixtures/fhir``, written after the shapes that
published exports use; always run), and the conformance corpus of published FHIR R4 files
(``../shared/fhir-examples`` or ``NOVAMIND_FHIR_CORPUS``; run where it is present). No
reference is rewritten and no patient exists before the jobs: they register from the data.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from deployments.host_ports import build_host_ports
from deployments.pipelines.ingest import IngestJob, IngestReport, run_ingest
from deployments.stores import open_audit_log, open_event_writer
from twin.domain import events as E
from twin.ingest import fhir
from twin.service.host import TwinHost
from twin.settings import TwinSettings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "fhir"
CORPUS = Path(
    os.environ.get("NOVAMIND_FHIR_CORPUS", Path(__file__).parents[3] / "shared" / "fhir-examples")
)
TEAM = "clinic-1"


def _quarantine(report: IngestReport) -> dict[str, str]:
    rows = pq.read_table(Path(report.output) / "quarantine").to_pylist()
    return {str(r["source"]): str(r["reason"]) for r in rows}


def _job(paths: list[Path], kind: str, out: Path, **options: object) -> IngestJob:
    return IngestJob(tuple(map(str, paths)), kind, None, str(out), **options)  # type: ignore[arg-type]


async def _patient_logs(settings: TwinSettings) -> dict[str, list[tuple[float, object]]]:
    async with open_event_writer(settings) as (events, registry):
        pids = await registry.list_for_team(TEAM, limit=1000)
        return {
            (await registry.identifiers(pid)).mrn: [
                (e.day, e.payload) for e in await events.read(pid)
            ]
            for pid in pids
        }


async def _audited(settings: TwinSettings) -> dict[str, Counter[str]]:
    async with open_audit_log(settings) as audit:
        entries = await audit.entries()
    out: dict[str, Counter[str]] = {}
    for entry in entries:
        out.setdefault(entry.record.request_id, Counter())[entry.record.action] += 1
    return out


def test_an_export_and_a_transaction_bundle_register_their_patients_and_rerun_as_duplicates(
    ray_cluster, settings, tmp_path
):
    export = run_ingest(
        settings, _job([FIXTURES / "export"], "fhir-ndjson", tmp_path / "e1", care_team=TEAM)
    )
    assert (export.records, export.appended, export.duplicates, export.quarantined) == (
        24,
        13,
        0,
        11,
    )
    assert (export.registered, export.patients) == (2, 2)
    assert _quarantine(export) == {
        "Patient/c-anonymous": "identifier: a record identifier (system and value; not a "
        "national or document number, not old) is required to match the patient",
        "Observation/a-panel": "panel 44249-1: its member Observations are ingested on their "
        "own",
        "Observation/a-item1": "item 44250-9: an item alone is no score (the total, its items "
        "as components, and PHQ-9 item 9 are ingested)",
        "Observation/a-hr-clinic": "heart rate 8867-4: a spot value (clinic, monitor or "
        "exercise), not the daily resting rate the twin takes (40443-4)",
        "Observation/b-year": "effective time: a day or an instant required",
        "Observation/x-display": "subject: a reference to the patient is required",
        "Observation/x-unknown": "patient: unknown or erased",
        "Observation/x-anonymous": "patient: unknown or erased",
        "Observation/a-lab": "code 2339-0: not supported",
        "MedicationRequest/a-rx-unended": "status stopped: the date it ended is required to "
        "stop the dose",
        "MedicationRequest/a-rx-other": "medication: not a drug of the model's table",
    }  # fmt: skip
    bundle = run_ingest(
        settings, _job([FIXTURES / "bundles"], "fhir-bundle", tmp_path / "b1", care_team=TEAM)
    )
    assert (bundle.records, bundle.appended, bundle.quarantined, bundle.registered) == (5, 3, 2, 1)
    assert set(_quarantine(bundle).values()) == {
        "resourceType Medication: not ingested",
        "resourceType Encounter: not ingested",
    }
    # Nothing the sources identify people by reaches a report or a quarantine file.
    for report in (export, bundle):
        written = b"".join(p.read_bytes() for p in Path(report.output).rglob("*") if p.is_file())
        for secret in (b"A-1001", b"999-00-1001", b"Okafor", b"B-2002", b"Moreau", b"1984-06-02"):
            assert secret not in written

    logs = asyncio.run(_patient_logs(settings))
    assert set(logs) == {"A-1001", "B-2002", "C-3003"}
    ada = logs["A-1001"]
    # Enrolled at her first record (2024-02-01 09:00 -05:00): day 0; everything in time order.
    assert ada[0] == (0.0, E.Phq9(16))
    assert [p for _, p in ada] == [
        E.Phq9(16), E.Prescription("sertraline", 50.0), E.Gad7(9), E.Phq9(12), E.Phq9Item9(1),
        E.RestingHeartRate(61.0), E.Prescription("sertraline", 0.0),
        E.Prescription("escitalopram", 10.0), E.DoseTaken("escitalopram", True),
    ]  # fmt: skip
    assert [day for day, _ in ada] == sorted(day for day, _ in ada)
    assert [p for _, p in logs["B-2002"]] == [E.Phq9(7), E.Phq9(6, (1, 1, 2, 1, 0, 1, 0, 0, 0))]
    assert [p for _, p in logs["C-3003"]] == [E.Gad7(14), E.Prescription("venlafaxine", 150.0)]

    # Again, and the export without a care team: every patient matches, nothing is appended.
    again = run_ingest(settings, _job([FIXTURES / "export"], "fhir-ndjson", tmp_path / "e2"))
    assert (again.appended, again.duplicates, again.quarantined, again.registered) == (0, 13, 11, 0)
    # Every registration and match is in the audit trail, under the job.
    actions = asyncio.run(_audited(settings))
    assert actions[export.job_id] == Counter({"patient.create": 2})
    assert actions[again.job_id] == Counter({"patient.match": 2})
    again = run_ingest(
        settings, _job([FIXTURES / "bundles"], "fhir-bundle", tmp_path / "b2", care_team=TEAM)
    )
    assert (again.appended, again.duplicates, again.quarantined, again.registered) == (0, 3, 2, 0)
    assert asyncio.run(_patient_logs(settings)) == logs

    async def twins_replay() -> None:
        stores = await build_host_ports(settings)
        try:
            host = TwinHost(stores, settings=settings.host)
            async with open_event_writer(settings) as (_, registry):
                for pid in await registry.list_for_team(TEAM):
                    assert (await host.summary(pid)).day >= 0
        finally:
            await stores.aclose()

    asyncio.run(twins_replay())


def _expected_records(paths: list[Path], *, bundles: bool) -> int:
    """Records the parser gives for ``paths`` (the job must account for every one)."""
    total = 0
    for path in paths:
        if bundles:
            total += len(fhir.records_from_bundle(json.loads(path.read_text()), where=path.name))
        else:
            for line in path.read_text().splitlines():
                total += len(fhir.records_from_resource(json.loads(line)))
    return total


#: Every reason a corpus record may be quarantined with: each names the rule that refused it.
CORPUS_REASONS = (
    "code", "resourceType ", "status ", "intent ", "item ", "panel 44249-1", "heart rate 8867-4",
    "medication: ", "medicationReference: ", "items: no LOINC-coded", "subject: ",
    "patient: unknown or erased", "effective time: ", "dosage", "not valid FHIR", "derivedFrom",
    "end: ", "identifier: ",
)  # fmt: skip


@pytest.mark.skipif(
    not (CORPUS / "MANIFEST.md").exists(),
    reason="the FHIR conformance corpus is not on this machine",
)
def test_every_file_of_the_published_corpus(ray_cluster, settings, tmp_path):
    ndjson = sorted((CORPUS / "ndjson").glob("*.ndjson"))
    bundles = sorted(
        p for p in (CORPUS / "originals").rglob("*.json")
        if json.loads(p.read_text()).get("resourceType") == "Bundle"
    )  # fmt: skip
    singles = run_ingest(settings, _job(ndjson, "fhir-ndjson", tmp_path / "n1", care_team=TEAM))
    whole = run_ingest(settings, _job(bundles, "fhir-bundle", tmp_path / "b1", care_team=TEAM))
    assert singles.records == _expected_records(ndjson, bundles=False)
    assert whole.records == _expected_records(bundles, bundles=True)
    outcome: dict[str, Counter[str]] = {}
    for report in (singles, whole):
        assert report.records == report.appended + report.duplicates + report.quarantined
        for source, reason in _quarantine(report).items():
            assert reason.startswith(CORPUS_REASONS), (source, reason)
        outcome[report.job_id] = Counter(report.reasons)
    # Every Patient registers or matches (the Bundles hold the NDJSON's Synthea patients).
    patients = len((CORPUS / "ndjson" / "Patient.ndjson").read_text().splitlines())
    assert singles.registered == patients and whole.registered == 0
    quarantined = _quarantine(singles)
    for source in (
        "Observation/ra-obs02pat03",  # PHQ-9 total as valueInteger (Da Vinci RA)
        "Observation/mii-exa-pro-phq-9-observation",  # the score on the panel code (MII)
        "QuestionnaireResponse/phq-9-example",  # US Core questionnaire response
        "MedicationRequest/2ca8e3ef-9568-4c8a-b639-40c65069ce70",  # Synthea fluoxetine 25MG
        "MedicationRequest/261da65e-644b-41c0-a713-0e5e113e8843",  # Synthea sertraline 100MG
    ):
        assert source not in quarantined or quarantined[source].startswith(
            ("effective time: more than", "patient: unknown")
        ), (source, quarantined.get(source))
    assert quarantined["QuestionnaireResponse/mii-exa-pro-phq-9-response"].startswith(
        "items: no LOINC-coded"
    )
    # US Core publishes the PHQ-9 both as a response and as Observations derived from it: the
    # response counts, once.
    for item in ("44261-6", "44260-8"):
        assert quarantined[f"Observation/PHQ9-item-example-{item}"].startswith("derivedFrom")
    assert "spot value" in quarantined["Observation/heart-rate"]  # US Core's, and the spec's
    # Run again: nothing appended, nobody registered, every outcome the same.
    for report, paths, kind in ((singles, ndjson, "fhir-ndjson"), (whole, bundles, "fhir-bundle")):
        again = run_ingest(
            settings, _job(paths, kind, tmp_path / f"again-{report.job_id}", care_team=TEAM)
        )
        assert (again.appended, again.registered) == (0, 0)
        assert again.duplicates == report.appended + report.duplicates
        assert again.reasons == report.reasons
