"""FHIR out: valid R4 resources, their codes, units, dates and intervals; ingest reads them back."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from tests.builders import Log, depressed_twin, twin
from twin import errors
from twin.assimilation import kernel
from twin.domain import codesystems
from twin.domain import events as E
from twin.domain.patients import Identifiers
from twin.domain.time_axis import day_of, instant_of
from twin.fhir_out import estimates, export, ids, record, rest
from twin.fhir_out.dates import fhir_date, iso_instant
from twin.fhir_out.validation import model_of
from twin.forecast.summary import Probability, forecast
from twin.ingest.fhir import MODEL_DERIVED_REASON, records_from_resource
from twin.model.dynamics import Row

ENROLMENT = datetime(2024, 1, 1, 9, 30, tzinfo=UTC)
#: The present the ingest mapping checks times against (after every record of the tests).
NOW = datetime(2026, 1, 1, tzinfo=UTC)
PID = "pt_0123456789abcdef0123456789abcdef"
FID = "pt.0123456789abcdef0123456789abcdef"
LOINC = "http://loinc.org"


def _log() -> list[E.Event]:
    """Every kind of event, a dose started, changed and stopped."""
    log = Log()
    for day, payload in [
        (0.0, E.Covariates(episode_weeks=6.5, anxiety_comorbid=True, age_years=40.0,
                           prior_episodes=2)),
        (0.5, E.Phq9(14, (2, 2, 2, 2, 2, 1, 1, 1, 1))),
        (0.75, E.Phq9(11)),
        (1.0, E.Phq9Item9(1)),
        (1.2, E.Gad7(9)),
        (2.0, E.SleepDuration(6.5, 3.0)),
        (2.0, E.Steps(5000, 14.0)),
        (3.0, E.RestingHeartRate(61.5)),
        (3.1, E.LnRmssd(3.2)),
        (3.2, E.EmaAffect(4)),
        (4.0, E.Prescription("sertraline", 50.0)),
        (5.0, E.DoseTaken("sertraline", True)),
        (6.0, E.DoseTaken("sertraline", False)),
        (20.0, E.Prescription("sertraline", 100.0)),
        (25.0, E.Prescription("escitalopram", 10.0)),
        (40.0, E.Prescription("sertraline", 0.0)),
        (41.0, E.Prescription("fluoxetine", 0.0)),  # never started: no resource
        (41.5, E.TherapySession("cbti")),
        (42.0, E.CareStatus(True, "usual")),
        (43.0, E.Covariates(anxiety_comorbid=False)),
    ]:  # fmt: skip
        log.add(day, payload)
    return log.events


def _identifiers() -> Identifiers:
    return Identifiers(
        "Ann Lee", "1980-02-03", "M1", "555-0100", enrolled_at=ENROLMENT.isoformat(),
        external=(("urn:mrn", "M1"), ("urn:other", "X9")),
    )  # fmt: skip


def _by_id(resources: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in resources}


def test_every_resource_is_valid_fhir_and_dated_enrolment_plus_day():
    log = _log()
    resources = record.record_resources(PID, ENROLMENT, log)
    for resource in resources:
        model_of(resource["resourceType"]).model_validate(resource)  # again, explicitly
    types = [r["resourceType"] for r in resources]
    assert set(types) == {
        "Observation", "Condition", "MedicationStatement", "MedicationAdministration", "Procedure"
    }  # fmt: skip
    found = _by_id(resources)
    by_seq = {e.seq: e for e in log}
    for rid, resource in found.items():
        seq = int(rid.removeprefix(FID + "-").split("-")[0])
        when = (
            resource.get("effectiveDateTime")
            or resource.get("recordedDate")
            or resource.get("performedDateTime")
            or resource.get("effectivePeriod", {}).get("start")
        )
        assert when == fhir_date(by_seq[seq].day, ENROLMENT), rid
        assert resource["subject"] == {"reference": f"Patient/{FID}"}
    # An EMA beep at 14:18 (day 3.2 from an enrolment at 09:30): the time of day is kept.
    assert found[f"{FID}-10"]["effectiveDateTime"] == "2024-01-04T14:18:00Z"


def test_codes_units_and_components():
    found = _by_id(record.record_resources(PID, ENROLMENT, _log()))
    phq9 = found[f"{FID}-2"]
    assert phq9["code"]["coding"][0] == {
        "system": LOINC, "code": "44261-6",
        "display": "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
    }  # fmt: skip
    assert phq9["valueQuantity"] == {
        "value": 14, "unit": "{score}", "system": "http://unitsofmeasure.org", "code": "{score}"
    }  # fmt: skip
    items = [(c["code"]["coding"][0]["code"], c["valueCodeableConcept"]["coding"][0]["code"])
             for c in phq9["component"]]  # fmt: skip
    assert items[0] == ("44250-9", "LA6570-1") and items[8] == ("44260-8", "LA6569-3")
    assert "component" not in found[f"{FID}-3"]  # a total without items
    sleep = found[f"{FID}-6"]
    assert sleep["valueQuantity"]["code"] == "h" and sleep["valueQuantity"]["value"] == 6.5
    wear = sleep["component"][0]
    assert wear["code"]["coding"][0] == {
        "system": codesystems.CODE_SYSTEM, "code": "wear-time",
        "display": codesystems.CODES["wear-time"],
    }  # fmt: skip
    assert wear["valueQuantity"]["value"] == 3.0
    assert found[f"{FID}-7"]["valueQuantity"]["code"] == "/(24.h)"
    assert found[f"{FID}-8"]["valueQuantity"]["code"] == "/min"
    assert found[f"{FID}-8"]["category"][0]["coding"][0]["code"] == "vital-signs"
    episode = found[f"{FID}-1-episode"]
    assert episode["code"]["coding"][0]["code"] == "370143000"
    onset = datetime.fromisoformat(episode["onsetDateTime"])
    assert onset == ENROLMENT - timedelta(weeks=6.5)
    assert found[f"{FID}-1-age"]["code"]["coding"][0]["code"] == "30525-0"
    assert found[f"{FID}-1-age"]["valueQuantity"]["code"] == "a"


def test_prescriptions_are_statements_from_start_to_change_or_stop():
    found = _by_id(record.record_resources(PID, ENROLMENT, _log()))
    first, second = found[f"{FID}-11"], found[f"{FID}-14"]
    assert first["status"] == "completed"  # replaced by a new dose
    assert first["effectivePeriod"] == {
        "start": iso_instant(ENROLMENT + timedelta(days=4)),
        "end": iso_instant(ENROLMENT + timedelta(days=20)),
    }
    assert second["status"] == "stopped"
    assert second["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 100.0
    assert second["dosage"][0]["timing"]["repeat"] == {"frequency": 1, "period": 1,
                                                       "periodUnit": "d"}  # fmt: skip
    ongoing = found[f"{FID}-15"]
    assert ongoing["status"] == "active" and "end" not in ongoing["effectivePeriod"]
    assert ongoing["medicationCodeableConcept"]["coding"][0] == {
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "321988",
        "display": "escitalopram",
    }  # fmt: skip
    assert f"{FID}-17" not in found  # the stop of a drug never started
    assert found[f"{FID}-13"]["status"] == "not-done"


def _ingested(resources: list[dict]) -> tuple[list[tuple[float, E.Payload]], dict[str, str]]:
    """What bulk ingest reads from ``resources``: (day, payload) events and refusals by source."""
    read: list[tuple[float, E.Payload]] = []
    refused: dict[str, str] = {}
    for resource in resources:
        for rec in records_from_resource(resource):
            if rec.reason is not None:
                refused[rec.source] = rec.reason
            elif rec.payload is not None:
                assert rec.effective is not None
                read.append((day_of(rec.effective, ENROLMENT, now=NOW), rec.payload))
    return read, refused


def _split(payload: E.Payload) -> list[E.Payload]:
    """Covariates one field at a time (FHIR gives each its own resource, ingest its own event)."""
    if not isinstance(payload, E.Covariates):
        return [payload]
    fields = ("episode_weeks", "prior_episodes", "anxiety_comorbid", "age_years")
    return [
        E.Covariates(**{name: getattr(payload, name)})
        for name in fields
        if getattr(payload, name) is not None
    ]


def test_bulk_ingest_reads_the_record_back_event_for_event():
    log = _log()
    read, refused = _ingested(record.record_resources(PID, ENROLMENT, log))
    assert refused == {}  # every event comes back, Novamind's own codes included
    expected: list[tuple[float, E.Payload]] = []
    given: dict[str, float] = {}
    for event in log:
        p = event.payload
        if isinstance(p, E.Prescription):
            if given.get(p.drug, 0.0) == 0.0 and p.mg_per_day == 0.0:
                continue  # the stop of a drug never started is no resource
            if given.get(p.drug, 0.0) > 0.0 and p.mg_per_day > 0.0:
                # A dose change: a stop and a start at the same instant (the stop first).
                expected.append((event.day, E.Prescription(p.drug, 0.0)))
            given[p.drug] = p.mg_per_day
        expected += [(event.day, part) for part in _split(p)]
    got = sorted(read, key=lambda r: (r[0], not _stop(r[1]), repr(r[1])))
    want = sorted(expected, key=lambda r: (r[0], not _stop(r[1]), repr(r[1])))
    assert [p for _, p in got] == [p for _, p in want]
    assert all(abs(a - b) < 1e-9 for (a, _), (b, _) in zip(got, want, strict=True))


def test_ingest_refuses_what_is_no_event_of_novamind_code_system():
    found = _by_id(record.record_resources(PID, ENROLMENT, _log()))
    ema = found[f"{FID}-10"]
    untagged_estimate = {
        **ema, "code": {"coding": [{"system": codesystems.CODE_SYSTEM, "code": "latent-severity"}]}
    }  # fmt: skip
    (rec,) = records_from_resource(untagged_estimate)
    assert rec.reason == "code latent-severity: not an event Novamind ingests"
    (rec,) = records_from_resource({**ema, "valueInteger": 9})
    assert rec.reason == "ema.rating is invalid: expected integer 1..7"
    (rec,) = records_from_resource({**found[f"{FID}-18"], "status": "in-progress"})
    assert rec.reason == "status in-progress: only completed procedures"
    surgery = {"coding": [{"system": "http://snomed.info/sct", "code": "80146002"}]}
    (rec,) = records_from_resource({**found[f"{FID}-18"], "code": surgery})
    assert rec.reason == "code: not a therapy session the twin takes"


def _stop(payload: E.Payload) -> bool:
    return isinstance(payload, E.Prescription) and payload.mg_per_day == 0


def test_patient_carries_identifiers_name_birth_date_and_enrolment():
    patient = record.patient_resource(PID, _identifiers())
    model_of("Patient").model_validate(patient)
    assert patient["id"] == FID
    assert patient["identifier"][0]["type"]["coding"][0]["code"] == "MR"
    assert [(i["system"], i["value"]) for i in patient["identifier"]] == [
        ("urn:mrn", "M1"), ("urn:other", "X9"), (codesystems.IDENTIFIER_SYSTEM, PID),
    ]  # fmt: skip
    assert patient["name"] == [{"use": "official", "text": "Ann Lee"}]
    assert patient["birthDate"] == "1980-02-03"
    assert "telecom" not in patient  # the contact is not exported
    assert patient["extension"] == [
        {"url": codesystems.ENROLMENT_EXTENSION, "valueDateTime": "2024-01-01T09:30:00Z"}
    ]
    (facts,) = [r.enrolee for r in records_from_resource(patient)]
    assert facts is not None and facts.enrolment() == ENROLMENT
    assert facts.mrn == "M1" and ("urn:other", "X9") in facts.identifiers
    # An MRN registered without its system is exported under Novamind's.
    plain = record.patient_resource(PID, Identifiers("A", "1980-02-03", "M7"))
    assert plain["identifier"][0]["system"] == record.MRN_SYSTEM
    assert "extension" not in plain


@pytest.mark.parametrize(
    "value",
    ["2024-01-01", "2024-01-01T10:00:00", "1850-01-01T00:00:00Z", "soon", None],
)
def test_a_patient_stating_no_usable_enrolment_is_refused(value):
    patient = record.patient_resource(PID, _identifiers())
    patient["extension"][0] = {"url": codesystems.ENROLMENT_EXTENSION, "valueDateTime": value}
    (rec,) = records_from_resource(patient)
    # Refused by FHIR's own dateTime rule (a time without an offset, not a date) or by ours.
    assert rec.reason is not None and "extension" in rec.reason and rec.enrolee is None


def test_credible_interval_is_the_weighted_posterior_quantiles():
    state = twin("ci", particles=1000)
    rng = np.random.default_rng(5)
    state.particles[Row.S] = rng.uniform(0, 27, state.n_particles).astype(np.float32)
    logits = rng.normal(size=state.n_particles)
    state.log_weights = logits - np.log(np.exp(logits).sum())
    got = estimates.estimate_of(state)
    values = state.particles[Row.S].astype(np.float64)
    order = np.argsort(values)
    cdf = np.cumsum(state.weights[order])
    assert got.severity_low == pytest.approx(float(values[order][np.argmax(cdf >= 0.025)]))
    assert got.severity_high == pytest.approx(float(values[order][np.argmax(cdf >= 0.975)]))
    inside = state.weights[(values >= got.severity_low) & (values <= got.severity_high)].sum()
    assert inside >= 0.95 - 1e-12
    assert got.severity_mean == kernel.posterior_mean(state, Row.S)
    assert got.severity_sd == kernel.posterior_sd(state, Row.S)
    assert got.severity_low < got.severity_mean < got.severity_high


def test_severity_observation_is_model_derived_and_ingest_refuses_it():
    state = depressed_twin(particles=500)
    estimate = estimates.estimate_of(state)
    observation = estimates.severity_observation(PID, ENROLMENT, estimate)
    assert observation["meta"]["tag"][0]["code"] == codesystems.MODEL_DERIVED
    assert observation["code"]["coding"][0]["code"] == "latent-severity"
    assert all(c["system"] != LOINC for c in observation["code"]["coding"])  # not a PHQ-9 score
    assert observation["valueQuantity"]["value"] == round(estimate.severity_mean, 2)
    assert observation["valueQuantity"]["code"] == "{score}"
    interval = observation["component"][0]
    assert interval["code"]["coding"][0]["code"] == "credible-interval-95"
    low, high = interval["valueRange"]["low"]["value"], interval["valueRange"]["high"]["value"]
    assert 0 <= low < estimate.severity_mean < high <= 27
    assert observation["effectiveDateTime"] == iso_instant(ENROLMENT + timedelta(days=state.day))
    assert "Model-derived" in observation["method"]["text"]
    (rec,) = records_from_resource(observation)
    assert rec.reason == MODEL_DERIVED_REASON


def test_risk_assessment_predictions_and_horizons():
    state = depressed_twin(particles=500)
    estimate = estimates.estimate_of(state)
    future = forecast(state, weeks=12)
    risk = estimates.risk_assessment(PID, ENROLMENT, estimate, future, ["a", "b"])
    at = ENROLMENT + timedelta(days=state.day)
    assert risk["occurrenceDateTime"] == iso_instant(at)
    assert risk["basis"] == [
        {"reference": f"Observation/{FID}-severity-{state.last_seq}"},
        {"reference": "Observation/a"},
        {"reference": "Observation/b"},
    ]
    horizon = {
        (p["outcome"]["coding"][0]["code"], p["whenPeriod"]["start"], p["whenPeriod"]["end"]):
        p for p in risk["prediction"]
    }  # fmt: skip
    week = timedelta(weeks=1)
    now = iso_instant(at)
    assert set(horizon) == {
        ("episode", now, now), ("severe", now, now),
        ("remission", iso_instant(at + 8 * week), iso_instant(at + 8 * week)),
        ("remission", iso_instant(at + 12 * week), iso_instant(at + 12 * week)),
        ("response", iso_instant(at + 8 * week), iso_instant(at + 8 * week)),
        ("response", iso_instant(at + 12 * week), iso_instant(at + 12 * week)),
        ("deterioration", now, iso_instant(at + 4 * week)),
        ("deterioration", now, iso_instant(at + 8 * week)),
    }  # fmt: skip
    assert horizon[("severe", now, now)]["probabilityDecimal"] == round(estimate.p_severe, 4)
    remission = future.remission[12]
    assert remission.value is not None
    assert horizon[("remission", *[iso_instant(at + 12 * week)] * 2)]["probabilityDecimal"] == (
        round(remission.value, 4)
    )
    assert all(0.0 <= p.get("probabilityDecimal", 0.0) <= 1.0 for p in risk["prediction"])
    assert (
        "standard error" in horizon[("deterioration", now, iso_instant(at + 4 * week))]["rationale"]
    )
    (rec,) = records_from_resource(risk)
    assert rec.reason == MODEL_DERIVED_REASON


def test_a_probability_the_forecast_cannot_give_has_its_reason_and_no_value():
    state = depressed_twin(particles=200)
    future = forecast(state, weeks=12)
    future = type(future)(**{
        **{f: getattr(future, f) for f in future.__slots__},
        "response": {8: Probability.unavailable("no baseline PHQ-9 observed")},
    })  # fmt: skip
    risk = estimates.risk_assessment(PID, ENROLMENT, estimates.estimate_of(state), future, [])
    (response,) = [p for p in risk["prediction"] if p["outcome"]["coding"][0]["code"] == "response"]
    assert "probabilityDecimal" not in response
    assert response["rationale"] == "no estimate: no baseline PHQ-9 observed"


def test_ids_are_fhir_ids_and_name_one_patient():
    assert ids.fhir_patient_id(PID) == FID and ids.patient_id_of(FID) == PID
    assert ids.patient_id_of("pt_x") is None  # not a FHIR id
    assert ids.patient_id_of("a" * 65) is None
    long = ids.fhir_patient_id("p" * 64)
    rid = ids.resource_id(long, 12, "episode")
    assert len(rid) <= 64 and rid == ids.resource_id(long, 12, "episode")
    assert rid != ids.resource_id(long, 13, "episode")
    assert ids.resource_id(FID, 3) == f"{FID}-3"


def test_fhir_dates_round_trip_to_the_microsecond():
    far = ENROLMENT + timedelta(days=20_000)
    for day in (0.0, 0.5, 3.6042, 365.25, 12_345.678901):
        text = fhir_date(day, ENROLMENT)
        assert text.endswith("Z")
        back = day_of(datetime.fromisoformat(text), ENROLMENT, now=far)
        assert math.isclose(back, day, abs_tol=1e-10)
    assert fhir_date(1.0, ENROLMENT) == "2024-01-02T09:30:00Z"
    assert iso_instant(instant_of(0.5, ENROLMENT)) == "2024-01-01T21:30:00Z"
    with pytest.raises(errors.InvalidInputError):
        iso_instant(datetime(2024, 1, 1))  # no offset


def test_searchset_capability_and_outcome_validate():
    resources = record.record_resources(PID, ENROLMENT, _log())
    bundle = rest.searchset(
        resources[:3], base="https://x/fhir", total=40, self_url="https://x/fhir/Observation?a",
        next_url="https://x/fhir/Observation?b",
    )  # fmt: skip
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "searchset" and parsed.total == 40
    assert bundle["entry"][0]["fullUrl"] == f"https://x/fhir/Condition/{FID}-1-episode"
    statement = rest.capability_statement("https://x/fhir", "1.0")
    assert statement["fhirVersion"] == "4.0.1" and rest.BULK_DATA in statement["instantiates"]
    resources_offered = {r["type"] for r in statement["rest"][0]["resource"]}
    assert resources_offered == {"Patient", "Observation", "RiskAssessment", "Group"}
    for status in (400, 401, 403, 404, 410, 429, 500, 503):
        outcome = rest.operation_outcome(status, "why")
        OperationOutcome.model_validate(outcome)
        assert outcome["issue"][0]["code"] == rest.ISSUE_CODES[status]


def test_kickoff_parameters_take_type_and_format_and_refuse_the_rest():
    assert export.kickoff_parameters([]) is None
    got = export.kickoff_parameters(
        [("_type", "Patient, Observation"), ("_type", "Patient"), ("_outputFormat", "ndjson")]
    )
    assert got == ["Patient", "Observation"]
    for params, reason in [
        ([("_since", "2024-01-01T00:00:00Z")], "_since: not supported"),
        ([("_type", "Encounter")], "_type: each of"),
        ([("_outputFormat", "application/fhir+json")], "_outputFormat"),
        ([("_typeFilter", "Observation?code=x")], "_typeFilter: not supported"),
        ([("name=Ann", "1")], "an unknown parameter: not supported"),
    ]:
        with pytest.raises(errors.InvalidInputError, match=reason):
            export.kickoff_parameters(params)


def test_manifest_lists_a_file_per_type_and_the_errors():
    job = export.ExportJob(
        job_id="j1", status="succeeded", care_team="t", transaction_time="2026-01-01T00:00:00Z",
        outputs=[export.ExportOutput(type="Patient", count=3),
                 export.ExportOutput(type="Observation", count=40)],
        errors=1,
    )  # fmt: skip
    body = export.manifest(job, request_url="https://x/k", file_url=lambda n: f"https://x/{n}")
    assert body == {
        "transactionTime": "2026-01-01T00:00:00Z",
        "request": "https://x/k",
        "requiresAccessToken": True,
        "output": [
            {"type": "Patient", "url": "https://x/Patient", "count": 3},
            {"type": "Observation", "url": "https://x/Observation", "count": 40},
        ],
        "error": [{"type": "OperationOutcome", "url": "https://x/OperationOutcome", "count": 1}],
    }
    assert export.part_id("j1", "Patient", 7) == "j1.Patient.0000007"
    assert export.part_id("j1", "Patient", 7).startswith(export.part_prefix("j1", "Patient"))
