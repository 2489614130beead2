"""Bulk-ingest mapping: FHIR resources and table rows to records, events and refusals."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from twin import errors
from twin.domain import events as E
from twin.ingest import fhir, tabular
from twin.ingest.records import ROW_COLUMNS, Record, day_of, patient_id_of, prepare, to_event

ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def observation(code="44261-6", value=14, unit="{score}", **extra):
    resource = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/pt_1"},
        "effectiveDateTime": "2024-01-02T12:00:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                          "code": unit},
    }  # fmt: skip
    resource.update(extra)
    return resource


def statement(status="completed", dosage=None, **extra):
    resource = {
        "resourceType": "MedicationStatement",
        "id": "m1",
        "status": status,
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "36437"}]},
        "subject": {"reference": "Patient/pt_1"},
        "effectivePeriod": {"start": "2024-01-03T08:00:00Z", "end": "2024-02-03T08:00:00Z"},
        "dosage": dosage
        if dosage is not None
        else [{"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
               "doseAndRate": [{"doseQuantity": {"value": 25, "unit": "mg", "code": "mg"}}]}],
    }  # fmt: skip
    resource.update(extra)
    return resource


def test_observation_becomes_an_event_on_the_origin_axis():
    (record,) = fhir.records_from_resource(observation())
    assert record.payload == E.Phq9(14) and record.source == "Observation/o1"
    patient, event = to_event(record, ORIGIN, now=NOW)
    assert patient == "pt_1" and event.day == 1.5 and event.payload == E.Phq9(14)
    assert event.idempotency_key.startswith("ingest:") and len(event.idempotency_key) <= 128
    # Deterministic: the same fact gives the same key; another fact another key.
    again = to_event(fhir.records_from_resource(observation())[0], ORIGIN, now=NOW)[1]
    other = to_event(fhir.records_from_resource(observation(value=15))[0], ORIGIN, now=NOW)[1]
    assert again.idempotency_key == event.idempotency_key != other.idempotency_key


@pytest.mark.parametrize(
    ("code", "value", "unit", "payload"),
    [
        ("70274-6", 9, "{score}", E.Gad7(9)),
        ("40443-4", 58.5, "/min", E.RestingHeartRate(58.5)),
        ("93832-4", 450, "min", E.SleepDuration(7.5)),
        ("41950-7", 8000, "/(24.h)", E.Steps(8000)),
    ],
)
def test_every_mapped_loinc_code(code, value, unit, payload):
    (record,) = fhir.records_from_resource(observation(code, value, unit))
    assert record.payload == payload


def test_phq9_items_come_from_the_panel_components():
    items = [1, 2, 1, 0, 3, 1, 0, 1, 2]
    components = [
        {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueInteger": answer}
        for code, answer in zip(fhir.PHQ9_ITEM_CODES, items, strict=True)
    ]
    (record,) = fhir.records_from_resource(observation(value=11, component=components))
    assert record.payload == E.Phq9(11, tuple(items))
    (partial,) = fhir.records_from_resource(observation(value=11, component=components[:8]))
    assert partial.payload is None and "all of them or none" in partial.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "preliminary"}, "status preliminary"),
        ({"code": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}}, "no LOINC"),
        ({"code": {"coding": [{"system": LOINC, "code": "80404-7"}]}}, "SDNN"),
        ({"code": {"coding": [{"system": LOINC, "code": "2339-0"}]}}, "code 2339-0: not supported"),
        ({"code": {"coding": [{"system": LOINC, "code": "8867-4"}]}}, "spot value"),
        ({"code": {"coding": [{"system": LOINC, "code": "44250-9"}]}}, "an item alone"),
        ({"valueQuantity": {"value": 30, "code": "{score}"}}, "phq9.total"),
        ({"valueQuantity": {"value": 14.5, "code": "{score}"}}, "whole number"),
        ({"valueQuantity": {"value": 14, "code": "kg"}}, "unit"),
        ({"valueQuantity": None, "valueString": "fourteen"}, "a number required"),
        ({"valueQuantity": None, "valueString": "1e1"}, "a number required"),
        ({"effectiveDateTime": "last tuesday"}, "not valid FHIR Observation: effectiveDateTime"),
    ],
)
def test_observations_the_twin_cannot_take_are_refused_with_a_reason(change, reason):
    resource = observation()
    resource.update(change)
    resource = {k: v for k, v in resource.items() if v is not None}
    (record,) = fhir.records_from_resource(resource)
    assert record.payload is None and reason in record.reason
    assert record.patient == "Patient/pt_1"  # kept for the quarantine report
    assert "14" not in record.reason.replace("14.5", "")  # reasons name rules, not values


def test_medication_statement_gives_start_and_stop_doses():
    start, stop = fhir.records_from_resource(statement())
    assert start.payload == E.Prescription("sertraline", 50.0) and start.part == "start"
    assert stop.payload == E.Prescription("sertraline", 0.0) and stop.part == "stop"
    keys = {to_event(r, ORIGIN, now=NOW)[1].idempotency_key for r in (start, stop)}
    assert len(keys) == 2
    active = fhir.records_from_resource(statement(status="active"))
    assert [r.payload for r in active] == [E.Prescription("sertraline", 50.0)]


def test_medication_by_product_text_and_refusals():
    gts = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
    once_daily = {"timing": {"code": {"coding": [{"system": gts, "code": "QD"}]}},
                  "doseAndRate": [{"doseQuantity": {"value": 10, "code": "mg"}}]}  # fmt: skip
    product = statement(
        medicationCodeableConcept={"text": "Escitalopram 10 MG Oral Tablet"}, dosage=[once_daily]
    )
    assert fhir.records_from_resource(product)[0].payload == E.Prescription("escitalopram", 10.0)
    unknown = statement(medicationCodeableConcept={"text": "Lithium carbonate 300 MG"})
    assert "model's table" in fhir.records_from_resource(unknown)[0].reason
    no_timing = statement(dosage=[{"doseAndRate": [{"doseQuantity": {"value": 50, "code": "mg"}}]}])
    assert "daily timing" in fhir.records_from_resource(no_timing)[0].reason
    assert (
        "status entered-in-error"
        in fhir.records_from_resource(statement(status="entered-in-error"))[0].reason
    )


def test_medication_administration_logs_taken_and_missed_doses():
    administration = {
        "resourceType": "MedicationAdministration",
        "id": "a1",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "4493"}]},
        "subject": {"reference": "Patient/pt_1"},
        "effectiveDateTime": "2024-01-05T09:00:00Z",
    }
    assert fhir.records_from_resource(administration)[0].payload == E.DoseTaken("fluoxetine", True)
    missed = dict(administration, status="not-done")
    assert fhir.records_from_resource(missed)[0].payload == E.DoseTaken("fluoxetine", False)


def test_bundles_and_other_resources():
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": observation()}, {"resource": {"resourceType": "Patient", "id": "x"}},
                  {"fullUrl": "urn:uuid:1"}],
    }  # fmt: skip
    records = fhir.records_from_bundle(bundle, where="b.json")
    assert [r.reason is None for r in records] == [True, False, False]
    assert "identifier" in records[1].reason and records[2].source == "b.json#entry2"
    assert "not a FHIR Bundle" in fhir.records_from_bundle({"resourceType": "Patient"})[0].reason


def test_time_and_patient_rules():
    record = fhir.records_from_resource(observation())[0]
    early = Record(record.source, record.patient, datetime(2023, 12, 31, tzinfo=UTC), E.Phq9(3))
    with pytest.raises(errors.InvalidInputError, match="before the patient's enrolment"):
        to_event(early, ORIGIN, now=NOW)
    naive = Record(record.source, record.patient, datetime(2024, 2, 1), E.Phq9(3))
    with pytest.raises(errors.InvalidInputError, match="UTC offset"):
        to_event(naive, ORIGIN, now=NOW)
    assert patient_id_of("Patient/pt_9") == "pt_9" == patient_id_of("pt_9")
    assert patient_id_of("Group/g1") is None and patient_id_of(None) is None
    no_subject = copy.deepcopy(observation())
    del no_subject["subject"]
    with pytest.raises(errors.InvalidInputError, match="subject"):
        to_event(fhir.records_from_resource(no_subject)[0], ORIGIN, now=NOW)


def test_table_rows():
    row = {"patient": "pt_2", "code": "44261-6", "value": "12", "unit": "",
           "effective": "2024-01-03T00:00:00+00:00", "id": "r-7"}  # fmt: skip
    record = tabular.record_from_row(row, where="obs.csv:2")
    assert record.payload == E.Phq9(12) and record.source == "row/r-7"
    assert to_event(record, ORIGIN, now=NOW)[1].day == 2.0
    assert "missing code" in tabular.record_from_row({**row, "code": None}, where="x").reason
    assert (
        "ISO 8601" in tabular.record_from_row({**row, "effective": "yesterday"}, where="x").reason
    )
    assert "not a number" in tabular.record_from_row({**row, "value": "many"}, where="x").reason
    positional = tabular.record_from_row({**row, "id": None}, where="obs.csv:2")
    assert positional.source == "obs.csv:2"


def test_prepare_gives_pipeline_rows():
    records = [*fhir.records_from_resource(observation()),
               *fhir.records_from_resource(observation(value=99)),
               Record("row/1", "pt_2", datetime(2024, 1, 2, 6, tzinfo=UTC), E.Phq9(3))]  # fmt: skip
    columns = prepare(records)
    assert tuple(columns) == ROW_COLUMNS
    good, bad, row = ({name: values[i] for name, values in columns.items()} for i in range(3))
    assert good["reason"] is None and good["subject"] == "Patient/pt_1"
    assert good["effective"] == datetime(2024, 1, 2, 12, tzinfo=UTC)
    assert good["payload"] == '{"items":null,"total":14,"type":"phq9"}'
    assert good["idempotency_key"] == to_event(records[0], ORIGIN, now=NOW)[1].idempotency_key
    assert bad["payload"] is None and bad["reason"] and bad["subject"] == "Patient/pt_1"
    assert row["subject"] == "Patient/pt_2"  # a bare id of a table row
    assert day_of(good["effective"], ORIGIN, now=NOW) == 1.5


def test_idempotency_keys_never_change_form():
    """Keys of jobs already run are in the log: a re-run must derive the very same ones."""
    when = datetime(2024, 3, 1, 10, tzinfo=UTC)
    phq9 = Record("Observation/o1", "Patient/pt_1", when, E.Phq9(14, (1, 2, 3, 0, 1, 2, 3, 1, 1)))
    dose = Record("MedicationStatement/m1", "Patient/pt_1", when + timedelta(minutes=30),
                  E.Prescription("sertraline", 50.0), part="start")  # fmt: skip
    # Pinned when the key was first defined (sha256 of the compact JSON [source, part, time,
    # payload]); recomputed here from that definition as well.
    assert to_event(phq9, ORIGIN, now=NOW)[1].idempotency_key == (
        "ingest:324f6bffc1be4e809600d36d5636de745b749f2e17eacaf8"
    )
    assert to_event(dose, ORIGIN, now=NOW)[1].idempotency_key == (
        "ingest:de87e486e3aef6df88c5b077610256896eb08d0bbf841801"
    )
    fact = [dose.source, dose.part, (when + timedelta(minutes=30)).isoformat(),
            {"drug": "sertraline", "mg_per_day": 50.0, "type": "prescription"}]  # fmt: skip
    digest = hashlib.sha256(json.dumps(fact, sort_keys=True, separators=(",", ":")).encode())
    key = to_event(dose, ORIGIN, now=NOW)[1].idempotency_key
    assert key == "ingest:" + digest.hexdigest()[:48]


def test_a_fhir_time_keeps_its_offset_in_the_key():
    """A source's -05:00 stays -05:00 in the key, as in every job run before."""
    resource = observation(value=14) | {"effectiveDateTime": "2024-01-02T07:00:00-05:00"}
    (record,) = fhir.records_from_resource(resource)
    fact = ["Observation/o1", "", "2024-01-02T07:00:00-05:00",
            {"items": None, "total": 14, "type": "phq9"}]  # fmt: skip
    digest = hashlib.sha256(json.dumps(fact, sort_keys=True, separators=(",", ":")).encode())
    assert prepare([record])["idempotency_key"] == ["ingest:" + digest.hexdigest()[:48]]


@pytest.mark.parametrize(
    "value",
    [
        {"valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6570-1"}]}},
        {"valueInteger": 2},
        {"valueQuantity": {"value": 2, "code": "{score}"}},
    ],
)
def test_item9_alone_becomes_the_safety_screen_payload(value):
    resource = observation(code="44260-8") | {"valueQuantity": None} | value
    (record,) = fhir.records_from_resource(resource)
    assert record.payload == E.Phq9Item9(2)


def test_item9_with_an_unknown_answer_code_is_refused():
    other = {"valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA9999-9"}]}}
    (record,) = fhir.records_from_resource(observation(code="44260-8", valueQuantity=None, **other))
    assert record.payload is None and "LOINC answer code" in record.reason


def test_rmssd_rows_become_the_twins_hrv_stream():
    row = {"patient": "pt_1", "code": "rmssd", "value": "42.5", "unit": "ms",
           "effective": "2024-01-02T10:00:00Z"}  # fmt: skip
    record = tabular.record_from_row(row, where="hrv.csv:2")
    assert record.payload == E.LnRmssd(math.log(42.5))
    for bad, reason in (({"unit": "s"}, "rmssd.unit"), ({"value": "0.5"}, "rmssd")):
        refused = tabular.record_from_row({**row, **bad}, where="x")
        assert refused.payload is None and reason in refused.reason


@pytest.mark.parametrize(
    ("code", "value", "unit", "payload"),
    [
        ("episode_weeks", "30", "wk", E.Covariates(episode_weeks=30.0)),
        ("episode_weeks", "14", "d", E.Covariates(episode_weeks=2.0)),
        ("episode_weeks", "2", "a", E.Covariates(episode_weeks=2 * 365.25 / 7)),
        ("prior_episodes", "3", "", E.Covariates(prior_episodes=3)),
        ("anxiety_comorbid", "1", "", E.Covariates(anxiety_comorbid=True)),
        ("anxiety_comorbid", "0", "", E.Covariates(anxiety_comorbid=False)),
        ("age_years", "67", "a", E.Covariates(age_years=67.0)),
    ],
)
def test_covariate_rows_become_the_twins_covariates(code, value, unit, payload):
    row = {"patient": "pt_1", "code": code, "value": value, "unit": unit,
           "effective": "2024-01-02T10:00:00Z"}  # fmt: skip
    assert tabular.record_from_row(row, where="cov.csv:2").payload == payload


@pytest.mark.parametrize(
    ("code", "value", "unit", "reason"),
    [
        ("episode_weeks", "30", "h", "episode_weeks.unit"),
        ("episode_weeks", "-3", "wk", "covariates.episode_weeks"),
        ("prior_episodes", "2.5", "", "prior_episodes"),
        ("anxiety_comorbid", "2", "", "anxiety_comorbid"),
        ("age_years", "9", "a", "covariates.age_years"),
    ],
)
def test_covariate_rows_outside_their_domain_are_refused_with_a_reason(code, value, unit, reason):
    row = {"patient": "pt_1", "code": code, "value": value, "unit": unit,
           "effective": "2024-01-02T10:00:00Z"}  # fmt: skip
    refused = tabular.record_from_row(row, where="cov.csv:2")
    assert refused.payload is None and reason in refused.reason


SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def condition(system=SNOMED, code="370143000", clinical="active", verification=None, **extra):
    resource = {
        "resourceType": "Condition",
        "id": "c1",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/pt_1"},
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
        "onsetDateTime": "2024-01-01T00:00:00Z",
        "recordedDate": "2024-03-11T00:00:00Z",
    }
    if verification is not None:
        resource["verificationStatus"] = {
            "coding": [{"system": VERIFICATION, "code": verification}]
        }
    resource.update(extra)
    return resource


def test_an_active_depressive_episode_gives_its_duration_on_the_recorded_day():
    (record,) = fhir.records_from_resource(condition())
    assert record.payload == E.Covariates(episode_weeks=10.0)
    assert record.effective == datetime(2024, 3, 11, tzinfo=UTC)
    patient, event = to_event(record, ORIGIN, now=NOW)
    assert patient == "pt_1" and event.day == 70.0
    assert event.payload == E.Covariates(episode_weeks=10.0)
    # ICD-10-CM, with or without the dot; a month-precision onset is taken at mid-month.
    (icd,) = fhir.records_from_resource(
        condition(ICD10CM, "F32.1", onsetDateTime="2023-12", verification="confirmed")
    )
    mid_december = datetime(2023, 12, 16, 12, tzinfo=UTC)
    weeks = (datetime(2024, 3, 11, tzinfo=UTC) - mid_december).total_seconds() / 86_400 / 7
    assert icd.payload.episode_weeks == pytest.approx(weeks)
    (dotless,) = fhir.records_from_resource(condition(ICD10CM, "f329"))
    assert dotless.payload == E.Covariates(episode_weeks=10.0)
    # An onset in the recorded month: the middle of the part of the month before the record.
    (same_month,) = fhir.records_from_resource(condition(onsetDateTime="2024-03"))
    assert same_month.payload.episode_weeks == pytest.approx(5 / 7)
    # Without a recorded date the onset's own day says the episode has just begun.
    without = condition()
    del without["recordedDate"]
    (fresh,) = fhir.records_from_resource(without)
    assert fresh.payload == E.Covariates(episode_weeks=0.0)
    assert fresh.effective == datetime(2024, 1, 1, tzinfo=UTC)


def test_anxiety_disorders_give_comorbid_anxiety_while_active_and_none_once_resolved():
    (active,) = fhir.records_from_resource(condition(code="21897009"))
    assert active.payload == E.Covariates(anxiety_comorbid=True)
    assert active.effective == datetime(2024, 3, 11, tzinfo=UTC)
    resolved = condition(ICD10CM, "F41.0", clinical="resolved",
                         abatementDateTime="2024-05-01")  # fmt: skip
    (ended,) = fhir.records_from_resource(resolved)
    assert ended.payload == E.Covariates(anxiety_comorbid=False)
    assert ended.effective == datetime(2024, 5, 1, tzinfo=UTC)
    by_month = condition(code="371631005", clinical="remission", abatementPeriod={"end": "2024-06"})
    (june,) = fhir.records_from_resource(by_month)
    assert june.effective == datetime(2024, 6, 16, tzinfo=UTC)


def test_a_condition_coded_as_an_episode_and_an_anxiety_disorder_gives_both():
    both = condition()
    both["code"]["coding"].append({"system": SNOMED, "code": "21897009"})
    records = fhir.records_from_resource(both)
    assert [r.payload for r in records] == [
        E.Covariates(episode_weeks=10.0), E.Covariates(anxiety_comorbid=True),
    ]  # fmt: skip
    assert len({r.part for r in records}) == 2  # two facts, two idempotency keys


def _coded(system, code):
    return {"code": {"coding": [{"system": system, "code": code}]}}


def _status(system, code):
    return {"coding": [{"system": system, "code": code}]}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_coded(SNOMED, "44054006"), "not a depressive"),
        (_coded(SNOMED, "35489007"), "not a depressive"),  # depressive disorder: dysthymia too
        (_coded(ICD10CM, "F40.21"), "not a depressive"),
        (_coded(ICD10CM, "F41.2"), "not a depressive"),
        (_coded(ICD10CM, "F32.5"), "not a depressive"),
        (_coded(ICD10CM, "F32.A"), "not a depressive"),
        (_coded(ICD10CM, "F32.81"), "not a depressive"),
        (_coded(ICD10CM, "F3210000000"), "not a depressive"),
        (_coded(ICD10CM, "F33.1"), "recurrent depression"),
        (_coded(SNOMED, "66344007"), "recurrent depression"),
        ({"verificationStatus": _status(VERIFICATION, "refuted")}, "verificationStatus refuted"),
        (
            {"verificationStatus": _status(VERIFICATION, "provisional")},
            "verificationStatus provisional",
        ),
        ({"verificationStatus": {"text": "confirmed"}}, "verificationStatus: no code"),
        (
            {"verificationStatus": _status("http://example.org/local", "ok")},
            "verificationStatus: no code",
        ),
        ({"clinicalStatus": _status(CLINICAL, "remission")}, "no current episode"),
        ({"clinicalStatus": _status(CLINICAL, "recurrence")}, "dates the disorder"),
        ({"clinicalStatus": {"text": "active"}}, "clinicalStatus: no code"),
        ({"clinicalStatus": None}, "clinicalStatus None"),
        ({"onsetDateTime": None}, "onset: a date"),
        ({"onsetDateTime": "2024-04-01T00:00:00Z"}, "after recordedDate"),
        ({"onsetDateTime": "1990-01-01T00:00:00Z"}, "episode_weeks"),
        ({"onsetDateTime": "9999"}, "not a FHIR date"),
        ({"recordedDate": "2024-03"}, "a day or an instant"),
        ({"onsetDateTime": "2024-13"}, "not valid FHIR"),
    ],
)
def test_conditions_the_twin_cannot_take_are_refused_with_a_reason(change, reason):
    resource = condition()
    for key, value in change.items():
        if value is None:
            resource.pop(key)
        else:
            resource[key] = value
    (record,) = fhir.records_from_resource(resource)
    assert record.payload is None and reason in record.reason


@pytest.mark.parametrize("onset", ["9999", "9999-12"])
def test_a_far_future_partial_onset_is_refused_not_a_crash(onset):
    resource = condition(code="21897009", onsetDateTime=onset)
    del resource["recordedDate"]
    (record,) = fhir.records_from_resource(resource)
    assert record.payload is None and "not a FHIR date" in record.reason


def test_a_resolved_anxiety_disorder_without_an_end_date_is_refused():
    resource = condition(code="371631005", clinical="inactive")
    (record,) = fhir.records_from_resource(resource)
    assert record.payload is None and "abatement" in record.reason


@pytest.mark.parametrize(
    "reference",
    [{"x": 1}, ["Patient/pt_1"], 7, "Patient/a\x00b", "Patient/" + "a" * 65, "Patient/\ud800", ""],
)
def test_a_reference_that_is_not_a_patient_id_refers_to_no_one(reference):
    assert patient_id_of(reference) is None
    # The record is refused with a reason (quarantined), never a crash of the whole job.
    for record in fhir.records_from_resource(observation(subject={"reference": reference})):
        if record.payload is not None:
            with pytest.raises(errors.InvalidInputError, match="subject"):
                to_event(record, origin=datetime(2024, 1, 1, tzinfo=UTC), now=NOW)
        else:
            assert record.reason


@pytest.mark.parametrize("kind", [["Observation"], {"a": 1}, 3, "Obs\x1b[31m", "x" * 10_000])
def test_a_malformed_resource_type_is_refused_without_repeating_it(kind):
    (record,) = fhir.records_from_resource({**observation(), "resourceType": kind})
    assert record.payload is None and record.reason == "resourceType ?: not ingested"


def test_refusal_reasons_never_repeat_invented_keys_or_codes():
    (record,) = fhir.records_from_resource(observation(**{"x\x00" + "y" * 500: 1}))
    assert "\x00" not in (record.reason or "") and len(record.reason or "") < 200
    (record,) = fhir.records_from_resource(observation(status="\x1b]0;pwn\x07" * 50))
    assert record.reason == "status ?: only final results"


def test_fhir_partial_dates_place_a_day_or_are_refused_never_crash():
    (day,) = fhir.records_from_resource(observation(effectiveDateTime="1999-07-02"))
    assert day.effective == datetime(1999, 7, 2, tzinfo=UTC) and day.payload is not None
    for coarse in ("1999", "1999-07"):
        (record,) = fhir.records_from_resource(observation(effectiveDateTime=coarse))
        assert record.payload is None
        assert record.reason == "effective time: a day or an instant required"
    period = {"start": "2024-03-05"}
    (started,) = fhir.records_from_resource(
        {k: v for k, v in observation(effectivePeriod=period).items() if k != "effectiveDateTime"}
    )
    assert started.effective == datetime(2024, 3, 5, tzinfo=UTC)
