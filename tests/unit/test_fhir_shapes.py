"""FHIR shapes real exports use: scores, panels, questionnaire responses, prescriptions, subjects.

Each fixture is written here, after the shapes published examples use (US Core, Synthea, the
FHIR R4 specification, MII): the suite covers them without the external corpus.
"""

from __future__ import annotations

import pytest

from twin.domain import events as E
from twin.ingest import fhir
from twin.ingest.records import prepare
from twin.ingest.subjects import subject_key

LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PHQ9_ITEMS = ("44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5",
              "44253-3", "44260-8")  # fmt: skip
GAD7_ITEMS = ("69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7")
ANSWERS = ("LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9")


def obs(code: str, **value: object) -> dict:
    return {
        "resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "urn:uuid:0b0e1c7a-6f0e-4c39-9a55-0d1e5b6f7a10"},
        "effectiveDateTime": "2024-03-01T10:00:00-05:00", **value,
    }  # fmt: skip


def one(resource: dict) -> object:
    (record,) = fhir.records_from_resource(resource)
    return record


@pytest.mark.parametrize(
    "value",
    [
        {"valueQuantity": {"value": 16, "unit": "{score}", "code": "{score}"}},
        {"valueQuantity": {"value": 16, "unit": "score"}},
        {"valueQuantity": {"value": 16, "unit": "pts.", "code": "score"}},
        {"valueQuantity": {"value": 16}},
        {"valueInteger": 16},
        {"valueString": "16"},
        {"valueString": " 16 "},
    ],
)
def test_a_phq9_total_in_every_shape_exports_use(value):
    assert one(obs("44261-6", **value)).payload == E.Phq9(16)
    assert one(obs("44249-1", **value)).payload == E.Phq9(16)  # the score on the panel


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"valueString": "sixteen"}, "a number required"),
        ({"valueString": "16.0"}, "a number required"),
        ({"valueQuantity": {"value": 16, "code": "kg"}}, "a score unit"),
        ({"valueInteger": 28}, "phq9.total"),
        ({"dataAbsentReason": {"text": "asked, declined"}}, "a number required"),
    ],
)
def test_a_total_that_is_no_score_is_refused_by_rule(value, reason):
    record = one(obs("44261-6", **value))
    assert record.payload is None and reason in record.reason


def test_gad7_total_in_any_score_unit_and_its_panel():
    assert one(obs("70274-6", valueInteger=9)).payload == E.Gad7(9)
    assert one(obs("69737-5", valueQuantity={"value": 9, "unit": "{Score}"})).payload == E.Gad7(9)


def test_a_panel_of_member_observations_is_refused_and_its_members_stand_alone():
    panel = obs("44249-1", hasMember=[{"reference": f"Observation/item-{c}"} for c in PHQ9_ITEMS])
    record = one(panel)
    assert (
        record.payload is None and "member Observations are ingested on their own" in record.reason
    )
    item = one(
        obs("44252-5", valueCodeableConcept={"coding": [{"system": LOINC, "code": ANSWERS[2]}]})
    )
    assert "an item alone is no score" in item.reason
    item9 = obs("44260-8", valueCodeableConcept={"coding": [{"system": LOINC, "code": ANSWERS[1]}]})
    assert one(item9).payload == E.Phq9Item9(1)


def test_scores_are_counted_once_per_administration():
    members = [{"reference": "Observation/total"}]
    # A panel with its score and member Observations: the members carry it.
    panel = one(obs("44249-1", valueInteger=16, hasMember=members))
    assert "its member Observations are ingested on their own" in panel.reason
    # An Observation derived from a questionnaire response: the response is ingested.
    derived = one(
        obs("44261-6", valueInteger=12,
            derivedFrom=[{"reference": "QuestionnaireResponse/phq-9-example"}])
    )  # fmt: skip
    assert "derivedFrom a QuestionnaireResponse" in derived.reason


def test_a_panel_with_its_score_and_item_components_keeps_the_items():
    items = (1, 2, 0, 3, 1, 0, 2, 1, 1)
    components = [
        {"code": {"coding": [{"system": LOINC, "code": c}]},
         "valueCodeableConcept": {"coding": [{"system": LOINC, "code": ANSWERS[a]}]}}
        for c, a in zip(PHQ9_ITEMS, items, strict=True)
    ]  # fmt: skip
    record = one(obs("44249-1", valueInteger=11, component=components))
    assert record.payload == E.Phq9(11, items)
    wrong = one(obs("44249-1", valueInteger=12, component=components))
    assert wrong.payload is None and "phq9.total" in wrong.reason


def test_heart_rate_only_as_the_resting_rate():
    resting = one(
        obs("40443-4", valueQuantity={"value": 58, "unit": "beats/minute", "code": "/min"})
    )
    assert resting.payload == E.RestingHeartRate(58.0)
    spot = one(obs("8867-4", valueQuantity={"value": 88, "unit": "beats/minute", "code": "/min"}))
    assert spot.payload is None and "spot value" in spot.reason
    # A coding list with both reads the resting one, whatever comes first (MII lists SNOMED
    # and ISO 11073 codings before LOINC's).
    both = obs("40443-4", valueQuantity={"value": 58, "code": "/min"})
    both["code"]["coding"] = [{"system": "http://snomed.info/sct", "code": "364075005"},
                              {"system": LOINC, "code": "8867-4"},
                              {"system": LOINC, "code": "40443-4"}]  # fmt: skip
    assert one(both).payload == E.RestingHeartRate(58.0)


def response(items: list[dict], **extra: object) -> dict:
    return {
        "resourceType": "QuestionnaireResponse", "id": "qr1", "status": "completed",
        "questionnaire": "http://example.org/Questionnaire/phq-9",
        "subject": {"reference": "Patient/example"}, "authored": "2024-03-02T09:30:00Z",
        "item": items, **extra,
    }  # fmt: skip


def answered(code: str, answer: int, *, slash: bool = True) -> dict:
    return {"linkId": f"/{code}" if slash else code,
            "answer": [{"valueCoding": {"system": LOINC, "code": ANSWERS[answer]}}]}  # fmt: skip


def test_a_phq9_questionnaire_response_gives_the_total_and_items():
    items = (2, 2, 2, 2, 1, 1, 2, 0, 0)
    given = [answered(c, a) for c, a in zip(PHQ9_ITEMS, items, strict=True)]
    total = {"linkId": "/44261-6", "answer": [{"valueDecimal": 12}]}
    record = one(response([*given, total]))
    assert record.payload == E.Phq9(12, items)
    assert record.effective.isoformat() == "2024-03-02T09:30:00+00:00"
    assert record.patient == "Patient/example"
    wrong = one(response([*given, {"linkId": "/44261-6", "answer": [{"valueDecimal": 13}]}]))
    assert "not the sum of its items" in wrong.reason
    missing = one(response(given[:8]))
    assert "all of them or none" in missing.reason
    nested = one(response([{"linkId": "g", "item": given}]))  # items inside a group
    assert nested.payload == E.Phq9(12, items)


def test_a_gad7_questionnaire_response():
    items = (1, 1, 2, 0, 0, 1, 3)
    given = [answered(c, a, slash=False) for c, a in zip(GAD7_ITEMS, items, strict=True)]
    assert one(response(given)).payload == E.Gad7(8)


def test_a_combined_form_gives_both_scores_and_refuses_each_on_its_own():
    phq = [answered(c, 1) for c in PHQ9_ITEMS]
    gad = [answered(c, 2, slash=False) for c in GAD7_ITEMS]
    first, second = fhir.records_from_resource(response([*phq, *gad]))
    assert (first.part, first.payload) == ("phq9", E.Phq9(9, (1,) * 9))
    assert (second.part, second.payload) == ("gad7", E.Gad7(14))
    broken = [*phq, *gad[:6]]
    first, second = fhir.records_from_resource(response(broken))
    assert first.payload == E.Phq9(9, (1,) * 9)
    assert second.payload is None and "GAD-7 items come as all of them or none" in second.reason


def test_responses_that_cannot_be_scored_are_refused_by_rule():
    local = [{"linkId": f"PHQ.{i}", "answer": [{"valueCoding": {"code": ANSWERS[1]}}]}
             for i in range(1, 10)]  # fmt: skip
    assert "no LOINC-coded" in one(response(local)).reason
    items = [answered(c, 1) for c in PHQ9_ITEMS]
    assert "only completed" in one(response(items, status="in-progress")).reason
    odd = [*items[:8], {"linkId": "/44260-8", "answer": [{"valueInteger": 7}]}]
    assert "whole numbers 0..3" in one(response(odd)).reason
    undated = response(items)
    del undated["authored"]
    assert "authored: required" in one(undated).reason


def request(**extra: object) -> dict:
    return {
        "resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [
            {"system": RXNORM, "code": "406022", "display": "Fluoxetine 25MG"}]},
        "subject": {"reference": "urn:uuid:0b0e1c7a-6f0e-4c39-9a55-0d1e5b6f7a10"},
        "authoredOn": "2023-01-09T06:38:03+00:00",
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1,
                                                     "periodUnit": "d"}},
                               "doseAndRate": [{"doseQuantity": {"value": 1}}]}],
        **extra,
    }  # fmt: skip


def test_a_prescription_in_tablets_takes_the_strength_from_the_drug_name():
    (start,) = fhir.records_from_resource(request())
    assert start.payload == E.Prescription("fluoxetine", 25.0)
    assert start.effective.isoformat() == "2023-01-09T06:38:03+00:00"
    paroxetine = {"text": "paroxetine hydrochloride 10 MG Oral Tablet"}
    twice = request(medicationCodeableConcept=paroxetine,
                    dosageInstruction=[{"timing": {"code": {"coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation",
                         "code": "BID"}]}},
                        "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "TAB"}}]}],
    )  # fmt: skip
    assert one(twice).payload == E.Prescription("paroxetine", 40.0)


def test_a_stopped_prescription_stops_at_its_end_or_is_refused_without_one():
    bounded = request(status="stopped")
    bounded["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"] = {
        "start": "2023-01-10",
        "end": "2023-03-10",
    }
    start, stop = fhir.records_from_resource(bounded)
    assert start.effective.isoformat() == "2023-01-10T00:00:00+00:00"
    assert stop.payload == E.Prescription("fluoxetine", 0.0) and stop.part == "stop"
    # A period's end date is inclusive: the drug is taken through that day.
    assert stop.effective.isoformat() == "2023-03-11T00:00:00+00:00"
    assert "the date it ended is required" in one(request(status="stopped")).reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"intent": "plan"}, "intent plan: not a prescription"),
        ({"status": "on-hold"}, "status on-hold"),
        ({"doNotPerform": True}, "doNotPerform"),
        (
            {
                "medicationCodeableConcept": {
                    "text": "Olanzapine 6 MG / Fluoxetine 25 MG Oral Capsule"
                }
            },
            "combination",
        ),
        ({"medicationCodeableConcept": {"text": "Ibuprofen 100 MG Oral Tablet"}}, "model's table"),
        ({"medicationCodeableConcept": {"text": "Fluoxetine Oral Product"}}, "strength"),
        ({"dosageInstruction": [{"text": "Take 1 tablet daily"}]}, "doseQuantity required"),
        (
            {"dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 1}}]}]},
            "daily timing",
        ),
        ({"dosageInstruction": [{"doseAndRate": [{"doseRange": {"low": {"value": 1}}}]}]}, "range"),
        (
            {
                "medicationReference": {"reference": "Medication/elsewhere"},
                "medicationCodeableConcept": None,
            },
            "neither contained nor in the same Bundle",
        ),
    ],
)
def test_prescriptions_the_twin_cannot_take_are_refused_by_rule(change, reason):
    resource = {k: v for k, v in (request() | change).items() if v is not None}
    record = one(resource)
    assert record.payload is None and reason in record.reason


@pytest.mark.parametrize(
    ("text", "dose"),
    [
        ("Sertraline 1,000 MG Oral Tablet", 1000.0),  # a thousands separator, not "000 MG"
        ("Sertraline 0.5 MG Oral Tablet", 0.5),
        ("Venlafaxine 37,5 mg Kapseln", None),  # a decimal comma: no strength, not 5 mg
        ("Fluoxetine 20 MG/0 ML Oral Solution", None),
        ("Fluoxetine 0 MG Oral Tablet", None),
    ],
)
def test_strengths_in_drug_names_are_read_whole_or_not_at_all(text, dose):
    record = one(request(medicationCodeableConcept={"text": text}))
    if dose is None:
        assert record.payload is None and record.reason
    else:
        assert record.payload.mg_per_day == dose


@pytest.mark.parametrize(
    ("dosage", "reason"),
    [
        ({"timing": {"repeat": {"frequency": 1, "period": 5e-324, "periodUnit": "h"}},
          "doseAndRate": [{"doseQuantity": {"value": 1}}]}, "doses a day"),
        ({"timing": {"repeat": {"frequency": 1, "frequencyMax": 3, "period": 1,
                                "periodUnit": "d"}},
          "doseAndRate": [{"doseQuantity": {"value": 1}}]}, "a range, or weekdays"),
        ({"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
          "doseAndRate": [{"doseQuantity": {"value": 0}}]}, "more than 0 mg"),
    ],
)  # fmt: skip
def test_doses_that_are_no_daily_dose_are_refused(dosage, reason):
    record = one(request(dosageInstruction=[dosage]))
    assert record.payload is None and reason in record.reason


def test_an_ingredient_code_takes_the_strength_from_the_name_beside_it():
    coded = {
        "coding": [{"system": RXNORM, "code": "36437", "display": "sertraline 50 MG Oral Tablet"}]
    }
    assert one(request(medicationCodeableConcept=coded)).payload == E.Prescription(
        "sertraline", 50.0
    )


def test_prescriptions_that_would_leave_a_drug_on_are_refused():
    split = request()
    split["dosageInstruction"] = split["dosageInstruction"] * 2  # morning and evening
    assert "more than one instruction" in one(split).reason
    backwards = request(status="stopped")
    backwards["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"] = {
        "start": "2023-03-10T12:00:00Z",
        "end": "2023-03-10T08:00:00Z",
    }
    assert "end: not after the start" in one(backwards).reason
    valid_till = request(status="completed", dispenseRequest={
        "validityPeriod": {"start": "2023-01-09", "end": "2023-02-09"}})  # fmt: skip
    # How long a prescription may be filled is not when the drug was stopped.
    assert "the date it ended is required" in one(valid_till).reason


def test_what_a_parser_cannot_read_refuses_one_record_never_the_job():
    odd = request(contained=[{"resourceType": "MedicinalProduct", "id": "x"}])
    record = one(odd)
    assert record.payload is None and record.reason.startswith("not valid FHIR MedicationRequest")
    far = obs("44261-6", valueInteger=3, effectiveDateTime="0001-01-01T00:00:00+14:00")
    record = one(far)
    assert record.payload is None or record.effective is None
    assert prepare([record])["reason"][0]  # refused in the pipeline's rows, not raised
    invented = obs("44261-6", valueInteger=3, JohnSmith=1)
    assert one(invented).reason == "not valid FHIR Observation: ?"
    assert "JohnSmith" not in one(obs("44261-6", valueInteger=3) | {"status": "JohnSmith"}).reason


def test_an_instant_time_is_read():
    timed = obs("44261-6", valueInteger=3)
    del timed["effectiveDateTime"]
    record = one(timed | {"effectiveInstant": "2024-03-01T10:00:00Z"})
    assert (
        record.payload == E.Phq9(3) and record.effective.isoformat() == "2024-03-01T10:00:00+00:00"
    )


def test_a_medication_reference_reads_the_contained_or_bundled_medication():
    medication = {"resourceType": "Medication", "id": "med1",
                  "code": {"text": "Sertraline oral tablet"},
                  "ingredient": [{"itemCodeableConcept": {"text": "sertraline"},
                                  "strength": {"numerator": {"value": 50, "code": "mg"},
                                               "denominator": {"value": 1, "code": "TAB"}}}],
    }  # fmt: skip
    contained = request(medicationReference={"reference": "#med1"}, contained=[medication])
    del contained["medicationCodeableConcept"]
    assert one(contained).payload == E.Prescription("sertraline", 50.0)
    bundled = request(
        medicationReference={"reference": "urn:uuid:5e2d6a4e-0000-4000-8000-000000000001"}
    )
    del bundled["medicationCodeableConcept"]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:5e2d6a4e-0000-4000-8000-000000000001", "resource": medication},
        {"fullUrl": "urn:uuid:5e2d6a4e-0000-4000-8000-000000000002", "resource": bundled},
    ]}  # fmt: skip
    records = fhir.records_from_bundle(bundle, where="b.json")
    assert "resourceType Medication" in records[0].reason
    assert records[1].payload == E.Prescription("sertraline", 50.0)


def test_a_dispensing_is_a_dose_taken_when_handed_over():
    dispense = {"resourceType": "MedicationDispense", "id": "d1", "status": "completed",
                "medicationCodeableConcept": {"coding": [
                    {"system": RXNORM, "code": "861064",
                     "display": "sertraline 50 MG Oral Tablet"}]},
                "subject": {"reference": "Patient/example"},
                "whenHandedOver": "2016-12-08T06:38:52Z"}  # fmt: skip
    record = one(dispense)
    assert record.payload == E.DoseTaken("sertraline", True)
    assert "status in-progress" in one(dispense | {"status": "in-progress"}).reason
    undated = {k: v for k, v in dispense.items() if k != "whenHandedOver"}
    assert "whenHandedOver: required" in one(undated).reason


@pytest.mark.parametrize(
    ("subject", "key"),
    [
        ({"reference": "Patient/example"}, "Patient/example"),
        ({"reference": "Patient/example/_history/3"}, "Patient/example"),
        ({"reference": "https://ehr.example.org/fhir/Patient/123"}, "Patient/123"),
        (
            {"reference": "urn:uuid:0B0E1C7A-6F0E-4C39-9A55-0D1E5B6F7A10"},
            "urn:uuid:0b0e1c7a-6f0e-4c39-9a55-0d1e5b6f7a10",
        ),
        ({"reference": "pt_0123456789abcdef"}, "Patient/pt_0123456789abcdef"),
        (
            {"identifier": {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}},
            'identifier:["urn:oid:1.2.36.146.595.217.0.1","12345"]',
        ),
        ({"display": "Amy Shaw"}, None),
        ({"reference": "Group/g1"}, None),
        ({"reference": "urn:uuid:not-a-uuid"}, None),
        ({"identifier": {"system": "s", "value": "x" * 300}}, None),
        ({"identifier": {"system": "s", "value": "a\nb"}}, None),
        ("Patient/1", "Patient/1"),
        (42, None),
    ],
)
def test_subject_references_become_keys(subject, key):
    assert subject_key(subject) == key


def test_a_patient_resource_gives_what_matching_and_registration_need():
    patient = {
        "resourceType": "Patient", "id": "example",
        "identifier": [
            {"system": "https://github.com/synthetichealth/synthea", "value": "abc"},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                  "code": "MR"}]},
             "system": "http://hospital.example.org", "value": "MRN-7"},
            {"system": "no-value"},
        ],
        "name": [{"use": "old", "family": "Shaw", "given": ["Amy"]},
                 {"use": "official", "family": "Baxter", "given": ["Amy", "V."]}],
        "birthDate": "1987-02-20",
    }  # fmt: skip
    (record,) = fhir.records_from_bundle(
        {"resourceType": "Bundle", "type": "transaction",
         "entry": [{"fullUrl": "urn:uuid:0b0e1c7a-6f0e-4c39-9a55-0d1e5b6f7a10",
                    "resource": patient}]},
        where="b.json",
    )  # fmt: skip
    facts = record.enrolee
    assert record.reason is None and record.payload is None
    assert facts.keys == ("Patient/example", "urn:uuid:0b0e1c7a-6f0e-4c39-9a55-0d1e5b6f7a10")
    assert facts.identifiers == (("https://github.com/synthetichealth/synthea", "abc"),
                                 ("http://hospital.example.org", "MRN-7"))  # fmt: skip
    assert (facts.name, facts.birth_date, facts.mrn) == ("Amy V. Baxter", "1987-02-20", "MRN-7")
    anonymous = one({"resourceType": "Patient", "id": "p2", "name": [{"text": "X"}]})
    assert "identifier: a record identifier" in anonymous.reason
    only_ssn = one({"resourceType": "Patient", "id": "p3", "identifier": [
        {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                              "code": "SS"}]},
         "system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-99-9999"},
        {"use": "old", "system": "http://hospital.example.org", "value": "OLD-1"}]})  # fmt: skip
    assert "identifier: a record identifier" in only_ssn.reason
