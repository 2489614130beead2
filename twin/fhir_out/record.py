"""A patient's record as FHIR R4: the Patient, and their events as the resources EHRs use.

Each event of the log becomes the resource bulk ingest (:mod:`twin.ingest.fhir`) reads back into
the same event, dated ``enrolment + day`` (:func:`twin.domain.time_axis.instant_of`):

==========================  ==================================================================
event                       resource
==========================  ==================================================================
``Phq9``                    Observation LOINC 44261-6, ``valueQuantity`` {score}; the items, when
                            given, as components (LOINC item codes, LOINC answers LA6568-5 ...)
``Phq9Item9``               Observation LOINC 44260-8, a LOINC answer
``Gad7``                    Observation LOINC 70274-6, {score}
``RestingHeartRate``        Observation LOINC 40443-4, /min
``SleepDuration``           Observation LOINC 93832-4, h; component ``wear-time`` (h)
``Steps``                   Observation LOINC 41950-7, /(24.h); component ``wear-time`` (h)
``Prescription``            MedicationStatement (RxNorm ingredient, dose in mg once a day) from
                            the dose's start: ``active`` while it lasts, ``stopped`` at a stop
                            (0 mg/day), ``completed`` when a new dose of the drug replaces it
``DoseTaken``               MedicationAdministration, ``completed`` (taken) or ``not-done``
``Covariates``              Condition: a current depressive episode (SNOMED CT 370143000, onset
                            = the day minus its duration) and an active anxiety disorder
                            (197480006); age as Observation LOINC 30525-0; the rest (prior
                            episodes, no anxiety disorder) as Novamind-coded Observations
``EmaAffect``, ``LnRmssd``  Observations in Novamind's code system (no standard code exists)
``TherapySession``          Procedure (Novamind's code: psychotherapy or CBT-I), completed
``CareStatus``              Observation in Novamind's code system (active, and the setting)
==========================  ==================================================================

Bulk ingest reads every one of them back into its event, with two differences of form: a dose
change comes back as a stop and a start at the same instant (ingest orders the stop first: the
same dose from then on), and a covariates event as one event per covariate. A stop of a drug the
log never started is no resource (it changed nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from twin.domain import events
from twin.domain.codesystems import (
    CODE_SYSTEM,
    CODES,
    ENROLMENT_EXTENSION,
    IDENTIFIER_SYSTEM,
    LOINC_SYSTEM,
    NAMESPACE,
    RXNORM_SYSTEM,
    SNOMED_SYSTEM,
    UCUM_SYSTEM,
)
from twin.domain.patients import Identifiers
from twin.domain.time_axis import instant_of
from twin.fhir_out.dates import fhir_date, iso_instant
from twin.fhir_out.ids import fhir_patient_id, resource_id
from twin.fhir_out.validation import checked
from twin.ingest.medications import RXNORM_INGREDIENTS
from twin.ingest.questionnaires import PHQ9_ITEM_CODES, PHQ_ITEM_ANSWERS

__all__ = [
    "CATEGORY_SYSTEM",
    "MRN_SYSTEM",
    "RECORD_TYPES",
    "novamind_concept",
    "patient_resource",
    "phq9_ids",
    "record_resources",
    "subject",
]

#: HL7's observation categories.
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
#: The system of an MRN registered without one (``POST /v1/patients`` takes ``mrn`` alone).
MRN_SYSTEM = f"{NAMESPACE}/sid/mrn"
#: Resource types a patient's record is exported as (besides the twin's estimates).
RECORD_TYPES = (
    "Patient", "Observation", "MedicationStatement", "MedicationAdministration", "Condition",
    "Procedure",
)  # fmt: skip
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_DRUGS_RXNORM = {name: rxcui for rxcui, name in RXNORM_INGREDIENTS.items()}
#: LOINC answer list LL358-3: item score -> (answer code, display).
_ANSWERS = {score: code for code, score in PHQ_ITEM_ANSWERS.items()}
_ANSWER_TEXT = ("Not at all", "Several days", "More than half the days", "Nearly every day")
_LOINC_NAMES = {
    "44261-6": "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
    "44260-8": "Thoughts that you would be better off dead, or of hurting yourself in some way",
    "70274-6": "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]",
    "40443-4": "Heart rate --resting",
    "93832-4": "Sleep duration",
    "41950-7": "Number of steps in 24 hour Measured",
    "30525-0": "Age",
}
_EPISODE = ("370143000", "Major depressive disorder")
_ANXIETY = ("197480006", "Anxiety disorder")


def subject(fhir_patient: str) -> dict[str, str]:
    """A reference to the patient."""
    return {"reference": f"Patient/{fhir_patient}"}


def novamind_concept(code: str, text: str | None = None) -> dict[str, Any]:
    """A CodeableConcept of Novamind's code system (:data:`twin.domain.codesystems.CODES`)."""
    concept: dict[str, Any] = {
        "coding": [{"system": CODE_SYSTEM, "code": code, "display": CODES[code]}]
    }
    if text is not None:
        concept["text"] = text
    return concept


def _loinc(code: str) -> dict[str, Any]:
    name = _LOINC_NAMES[code]
    return {"coding": [{"system": LOINC_SYSTEM, "code": code, "display": name}], "text": name}


def _quantity(value: float, unit: str, code: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM_SYSTEM, "code": code or unit}


def _category(code: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": CATEGORY_SYSTEM, "code": code}]}]


def patient_resource(patient_id: str, identifiers: Identifiers) -> dict[str, Any]:
    """The Patient: identifiers, official name, birth date and the enrolment instant.

    Identifiers: the record's MRN (typed ``MR``: the external identifier whose value it is,
    else under :data:`MRN_SYSTEM`), the external identifiers it was registered or matched by,
    and its Novamind patient id (typed ``PI``), so that bulk ingest can match or register the
    patient from any of them. The contact (phone or e-mail, its kind unknown) is not exported.
    """
    fid = fhir_patient_id(patient_id)
    mr = {"coding": [{"system": _V2_0203, "code": "MR"}], "text": "Medical record number"}
    listed: list[dict[str, Any]] = []
    mrn_system = next((s for s, v in identifiers.external if v == identifiers.mrn), MRN_SYSTEM)
    listed.append({"use": "usual", "type": mr, "system": mrn_system, "value": identifiers.mrn})
    listed.extend(
        {"system": system, "value": value}
        for system, value in identifiers.external
        if (system, value) != (mrn_system, identifiers.mrn)
    )
    listed.append({
        "use": "secondary",
        "type": {"coding": [{"system": _V2_0203, "code": "PI"}], "text": "Novamind patient id"},
        "system": IDENTIFIER_SYSTEM,
        "value": patient_id,
    })  # fmt: skip
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": fid,
        "identifier": listed,
        "name": [{"use": "official", "text": identifiers.name}],
        "birthDate": identifiers.birth_date,
    }
    enrolment = identifiers.enrolment()
    if enrolment is not None:
        resource["extension"] = [
            {"url": ENROLMENT_EXTENSION, "valueDateTime": iso_instant(enrolment)}
        ]
    return checked(resource)


class _Builder:
    """The resources of one patient's events (see the module docstring)."""

    def __init__(self, patient_id: str, enrolment: datetime) -> None:
        self.fid = fhir_patient_id(patient_id)
        self.enrolment = enrolment
        self.out: list[dict[str, Any]] = []
        # Per drug, the MedicationStatement of its current dose (not yet ended).
        self.open: dict[str, dict[str, Any]] = {}

    def when(self, day: float) -> str:
        return fhir_date(day, self.enrolment)

    def observation(
        self, event: events.Event, code: dict[str, Any], category: str | None,
        value: dict[str, Any], *, part: str | None = None,
        components: list[dict[str, Any]] | None = None,
    ) -> None:  # fmt: skip
        parts: tuple[str | int, ...] = (event.seq,) if part is None else (event.seq, part)
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": resource_id(self.fid, *parts),
            "status": "final",
            "code": code,
            "subject": subject(self.fid),
            "effectiveDateTime": self.when(event.day),
            **value,
        }
        if category is not None:
            resource["category"] = _category(category)
        if components:
            resource["component"] = components
        self.out.append(resource)

    def add(self, event: events.Event) -> None:
        p = event.payload
        if isinstance(p, events.Phq9):
            items = None
            if p.items is not None:
                items = [
                    {"code": _item(code), "valueCodeableConcept": _answer(answer)}
                    for code, answer in zip(PHQ9_ITEM_CODES, p.items, strict=True)
                ]
            self.observation(
                event, _loinc("44261-6"), "survey",
                {"valueQuantity": _quantity(p.total, "{score}")}, components=items,
            )  # fmt: skip
        elif isinstance(p, events.Phq9Item9):
            self.observation(
                event, _loinc("44260-8"), "survey", {"valueCodeableConcept": _answer(p.answer)}
            )
        elif isinstance(p, events.Gad7):
            self.observation(
                event, _loinc("70274-6"), "survey", {"valueQuantity": _quantity(p.total, "{score}")}
            )
        elif isinstance(p, events.RestingHeartRate):
            self.observation(
                event, _loinc("40443-4"), "vital-signs", {"valueQuantity": _quantity(p.bpm, "/min")}
            )
        elif isinstance(p, events.SleepDuration):
            self.observation(
                event, _loinc("93832-4"), "activity", {"valueQuantity": _quantity(p.hours, "h")},
                components=[_wear(p.wear_hours)],
            )  # fmt: skip
        elif isinstance(p, events.Steps):
            self.observation(
                event, _loinc("41950-7"), "activity",
                {"valueQuantity": _quantity(p.count, "steps/day", "/(24.h)")},
                components=[_wear(p.wear_hours)],
            )  # fmt: skip
        elif isinstance(p, events.EmaAffect):
            self.observation(
                event, novamind_concept("ema-negative-affect"), "survey",
                {"valueInteger": p.rating},
            )  # fmt: skip
        elif isinstance(p, events.LnRmssd):
            self.observation(
                event, novamind_concept("ln-rmssd"), "vital-signs",
                {"valueQuantity": {"value": p.value, "unit": "ln(ms)"}},
            )  # fmt: skip
        elif isinstance(p, events.Covariates):
            self.covariates(event, p)
        elif isinstance(p, events.Prescription):
            self.prescription(event, p)
        elif isinstance(p, events.DoseTaken):
            self.out.append({
                "resourceType": "MedicationAdministration",
                "id": resource_id(self.fid, event.seq),
                "status": "completed" if p.taken else "not-done",
                "medicationCodeableConcept": _drug(p.drug),
                "subject": subject(self.fid),
                "effectiveDateTime": self.when(event.day),
            })  # fmt: skip
        elif isinstance(p, events.TherapySession):
            self.out.append({
                "resourceType": "Procedure",
                "id": resource_id(self.fid, event.seq),
                "status": "completed",
                "category": novamind_concept("therapy-session"),
                "code": novamind_concept(p.kind),
                "subject": subject(self.fid),
                "performedDateTime": self.when(event.day),
            })  # fmt: skip
        elif isinstance(p, events.CareStatus):
            setting = (
                [{"code": novamind_concept("care-setting"),
                  "valueCodeableConcept": {"text": p.setting}}]
                if p.setting is not None else None
            )  # fmt: skip
            self.observation(
                event, novamind_concept("care-status"), None, {"valueBoolean": p.active},
                components=setting,
            )  # fmt: skip

    def covariates(self, event: events.Event, p: events.Covariates) -> None:
        when = instant_of(event.day, self.enrolment)
        if p.episode_weeks is not None:
            onset = when - timedelta(weeks=p.episode_weeks)
            self.condition(event, "episode", _EPISODE, onset=iso_instant(onset))
        if p.anxiety_comorbid:
            self.condition(event, "anxiety", _ANXIETY)
        elif p.anxiety_comorbid is False:
            self.observation(
                event, novamind_concept("anxiety-comorbid"), None, {"valueBoolean": False},
                part="anxiety",
            )  # fmt: skip
        if p.prior_episodes is not None:
            self.observation(
                event, novamind_concept("prior-episodes"), None,
                {"valueInteger": p.prior_episodes}, part="prior",
            )  # fmt: skip
        if p.age_years is not None:
            self.observation(
                event, _loinc("30525-0"), None, {"valueQuantity": _quantity(p.age_years, "a")},
                part="age",
            )  # fmt: skip

    def condition(
        self, event: events.Event, part: str, code: tuple[str, str], *, onset: str | None = None
    ) -> None:
        resource: dict[str, Any] = {
            "resourceType": "Condition",
            "id": resource_id(self.fid, event.seq, part),
            "clinicalStatus": {"coding": [{"system": _CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": _VERIFICATION, "code": "confirmed"}]},
            "code": {"coding": [{"system": SNOMED_SYSTEM, "code": code[0], "display": code[1]}],
                     "text": code[1]},
            "subject": subject(self.fid),
            "recordedDate": self.when(event.day),
        }  # fmt: skip
        if onset is not None:
            resource["onsetDateTime"] = onset
        self.out.append(resource)

    def prescription(self, event: events.Event, p: events.Prescription) -> None:
        current = self.open.pop(p.drug, None)
        if current is not None:
            current["status"] = "stopped" if p.mg_per_day == 0 else "completed"
            current["effectivePeriod"]["end"] = self.when(event.day)
        if p.mg_per_day == 0:
            return
        statement: dict[str, Any] = {
            "resourceType": "MedicationStatement",
            "id": resource_id(self.fid, event.seq),
            "status": "active",
            "medicationCodeableConcept": _drug(p.drug),
            "subject": subject(self.fid),
            "effectivePeriod": {"start": self.when(event.day)},
            "dosage": [{
                "text": f"{p.mg_per_day:g} mg once a day",
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": _quantity(p.mg_per_day, "mg")}],
            }],
        }  # fmt: skip
        self.open[p.drug] = statement
        self.out.append(statement)


def _answer(score: int) -> dict[str, Any]:
    """A PHQ item's answer as its LOINC answer code (list LL358-3)."""
    coding = {"system": LOINC_SYSTEM, "code": _ANSWERS[score], "display": _ANSWER_TEXT[score]}
    return {"coding": [coding]}


def _item(code: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC_SYSTEM, "code": code}]}


def _wear(hours: float) -> dict[str, Any]:
    return {"code": novamind_concept("wear-time"), "valueQuantity": _quantity(hours, "h")}


def _drug(name: str) -> dict[str, Any]:
    coding = {"system": RXNORM_SYSTEM, "code": _DRUGS_RXNORM[name], "display": name}
    return {"coding": [coding], "text": name}


def record_resources(
    patient_id: str,
    enrolment: datetime,
    log: Sequence[events.Event],
    *,
    types: Sequence[str] | None = None,
    check: bool = True,
) -> list[dict[str, Any]]:
    """The FHIR resources of a patient's events (module docstring).

    Args:
        patient_id: The Novamind patient id.
        enrolment: Day 0 of the patient's time axis (aware).
        log: Their events in sequence order.
        types: Only resources of these types (``None``: all).
        check: Validate each (:func:`twin.fhir_out.validation.checked`); ``False`` leaves it to
            the caller, which sends only a page of them.

    Returns:
        The resources in the order of the events that began them (a MedicationStatement at its
        dose's start, ended by a later event).
    """
    builder = _Builder(patient_id, enrolment)
    for event in log:
        builder.add(event)
    kept = [r for r in builder.out if types is None or r["resourceType"] in types]
    return [checked(r) for r in kept] if check else kept


def phq9_ids(resources: Sequence[dict[str, Any]]) -> list[str]:
    """The ids of the PHQ-9 Observations (LOINC 44261-6) among ``resources``, in order."""
    return [
        r["id"]
        for r in resources
        if r["resourceType"] == "Observation"
        and any(
            c.get("system") == LOINC_SYSTEM and c.get("code") == "44261-6"
            for c in r["code"].get("coding", [])
        )
    ]
