"""FHIR R4 resources to bulk-ingest records (parsed and validated with ``fhir.resources``).

Why ``fhir.resources``: the maintained pydantic models of every FHIR resource; a resource that
is not valid FHIR is refused with the model's own error instead of being half-read. R4B's
``Observation``, ``MedicationStatement``, ``MedicationAdministration`` and ``Bundle`` have the
same shape as R4's for every element read here.

It is also what caps bulk-ingest speed: validating one Observation costs ~170-250 µs of CPU
(its Python validators run for each of the five models in one; ``bench.ingest`` measures it as
``fhir_validate_us``). ``fhirkit-rs`` 0.1.0 (Rust, 2026-10) validates the same resource in ~10 µs,
but it is a first release and accepts an ``id`` of ``"a b"``, which R4's id type forbids and
``fhir.resources`` refuses: psychiatric records are not the place to try it.

Mapped:

- ``Patient``: matched to a registered patient by identifier, or registered
  (:mod:`twin.ingest.subjects`); every resource's ``subject`` is resolved through it.
- ``Observation`` (status final/amended/corrected) with a LOINC code of
  :mod:`twin.domain.loinc` and a number (units checked). PHQ-9 and GAD-7 in every shape of
  :mod:`twin.ingest.questionnaires` (totals, panels with the score or with components, items);
  item 9 on its own (44260-8, as a number or a LOINC answer code LA6568-5 ... LA6571-9) becomes
  ``Phq9Item9`` (it fires the safety alert; it is no severity evidence).
- ``QuestionnaireResponse`` (completed, amended) of the PHQ-9 or the GAD-7 with LOINC-coded
  items: ``Phq9(total, items)`` or ``Gad7``, at ``authored``.
- ``MedicationStatement``, ``MedicationRequest``, ``MedicationDispense`` and
  ``MedicationAdministration`` of a drug in the model's table: doses and doses taken
  (:mod:`twin.ingest.medications`).
- ``Observation`` in Novamind's code system (:mod:`twin.domain.codesystems`), what Novamind's
  FHIR export writes for the events no standard code names: EMA ratings, ln RMSSD, care status,
  prior episodes, no comorbid anxiety; and LOINC 30525-0 (Age, in years) as the age covariate.
- ``Procedure`` (completed) coded ``psychotherapy`` or ``cbti`` in Novamind's code system: a
  ``TherapySession`` at ``performed[x]``.
- ``Condition`` of a depressive episode or an anxiety disorder (SNOMED CT, ICD-10 or
  ICD-10-CM codes; :data:`EPISODE_CODES`, :data:`RECURRENT_CODES`, :data:`ANXIETY_CODES`),
  confirmed or without a verification status (one that cannot be read is refused), becomes
  ``Covariates`` (docs/model.md §2.7):

  - an active depressive episode with an onset gives the episode's duration,
    ``episode_weeks = (recordedDate - onset) / 7 d``, on ``recordedDate`` (the day the duration
    was known; without one, duration 0 at the onset). An onset given to the year or month is
    taken at the middle of the part of that year or month before ``recordedDate``. A
    recurrence, a relapse or a recurrent-depression code is refused: its onset dates the
    disorder, not the current episode (and it does not say how many episodes came before, so
    it gives no ``prior_episodes`` either);
  - an anxiety disorder gives ``anxiety_comorbid``: true while it is active (or a recurrence
    or relapse), on ``recordedDate`` (else its onset); false once it is inactive, in remission
    or resolved, on its abatement date (required). A Condition coded as both gives both.

  FHIR times: see :mod:`twin.ingest.fhir_common`.

Heart rate: the twin's channel is the *daily resting* rate (40443-4 "Heart rate --resting").
A heart rate under 8867-4 is a spot value (clinic vitals at an encounter, a monitor reading,
an exercise rate); its resource says nothing that makes it a resting rate, so it is refused
with that reason rather than fed to the resting channel.

HRV: LOINC has no code for RMSSD, the measure the twin's HRV stream uses (ln RMSSD); SDNN
(80404-7, what phones export) is refused with that reason. RMSSD reaches the twin through the
tabular formats (``code`` = ``rmssd``, in ms) or the API's ``ln_rmssd`` payload.

Sleep and steps: a ``wear-time`` component in Novamind's code system (hours, as Novamind's own
FHIR export writes it) is the payload's wear time, so a night worn too briefly to count stays
one; without it the wearable counts as worn all day.

Model-derived: a resource tagged ``model-derived`` in Novamind's code system (a twin's severity
estimate or risk assessment, :mod:`twin.fhir_out`) is refused with
:data:`MODEL_DERIVED_REASON`: the twin's output is no observation of the patient, and feeding it
back would count the model's own belief as evidence.

Everything else is refused with a reason (never dropped): other resource types and statuses,
codes the twin has no payload for, values its payloads refuse.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from twin import errors
from twin.domain import events
from twin.domain.codesystems import CODE_SYSTEM, is_model_derived
from twin.domain.loinc import LOINC, SPOT_HEART_RATE, from_loinc
from twin.ingest import medications, questionnaires
from twin.ingest.fhir_common import (
    LOINC_SYSTEM,
    SNOMED_SYSTEM,
    codes,
    effective,
    instant,
    middle,
    period,
    placed,
    shown,
    shown_loinc,
)
from twin.ingest.medications import RXNORM_INGREDIENTS
from twin.ingest.questionnaires import PHQ9_ITEM_CODES, PHQ_ITEM_ANSWERS
from twin.ingest.records import Record
from twin.ingest.subjects import patient_facts, subject_key

__all__ = [
    "AGE_CODE",
    "ANXIETY_CODES",
    "EPISODE_CODES",
    "MODEL_DERIVED_REASON",
    "PHQ9_ITEM_CODES",
    "PHQ_ITEM_ANSWERS",
    "RECURRENT_CODES",
    "RXNORM_INGREDIENTS",
    "records_from_bundle",
    "records_from_resource",
    "source_of",
]

#: LOINC "R-R interval.standard deviation (Heart rate variability)": SDNN, as wearables export.
SDNN_CODE = "80404-7"
_SDNN_REASON = (
    "HRV as SDNN (80404-7): the twin's HRV stream is ln RMSSD, which SDNN does not convert to"
)
#: Why a resource the twin derived (Novamind's FHIR out tags it) is not ingested.
MODEL_DERIVED_REASON = (
    "model-derived (a Novamind twin's estimate or risk assessment): not an observation of the "
    "patient"
)
#: Sleep and steps: the hours the wearable was worn, a component of Novamind's code.
_WEAR_CODES = frozenset({"93832-4", "41950-7", "55423-8"})
#: LOINC "Age" (in years): the twin's age covariate.
AGE_CODE = "30525-0"
_OWN_CODE = re.compile(r"[a-z0-9-]{1,40}")


def shown_code(code: str) -> str:
    """A code of Novamind's system as a refusal shows it (anything not of its form hidden)."""
    return code if _OWN_CODE.fullmatch(code) else "?"


#: ICD-10 (WHO) and ICD-10-CM code systems; codes are compared upper-case, without their dot.
ICD10_SYSTEMS = ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm")
#: A current depressive episode whose onset dates the episode: SNOMED CT concepts, and ICD-10
#: F32 (single episode: F32, F32.0-F32.3, F32.9; not F32.4/F32.5 "in remission", F32.8x or
#: ICD-10-CM's F32.A "depression, unspecified").
EPISODE_CODES = {
    SNOMED_SYSTEM: frozenset({
        "370143000",  # major depressive disorder
        "36923009",   # major depression, single episode
        "87512008",   # mild major depression
        "832007",     # moderate major depression
        "76441001",   # severe major depression without psychotic features
    }),
    "icd10": re.compile(r"^F32[01239]?$"),
}  # fmt: skip
#: Recurrent depression: its onset dates the disorder, not the current episode.
RECURRENT_CODES = {
    SNOMED_SYSTEM: frozenset({"66344007"}),  # recurrent major depression
    "icd10": re.compile(r"^F33[01239]?$"),
}
#: The anxiety disorders whose comorbidity changes the course (generalised anxiety, panic,
#: social phobia, agoraphobia, and anxiety disorder unspecified): SNOMED CT concepts and ICD-10
#: F40.0x, F40.1x, F41.0, F41.1, F41.9. Specific phobias (F40.2) and mixed anxiety and
#: depressive disorder (F41.2) are not among them.
ANXIETY_CODES = {
    SNOMED_SYSTEM: frozenset({
        "197480006",  # anxiety disorder
        "21897009",   # generalized anxiety disorder
        "371631005",  # panic disorder
        "35607004",   # panic disorder with agoraphobia
        "70691001",   # agoraphobia
        "25501002",   # social phobia
    }),
    "icd10": re.compile(r"^F40[01]\d?$|^F41[019]$"),
}  # fmt: skip
_ACTIVE = {"active", "recurrence", "relapse"}
_ENDED = {"inactive", "remission", "resolved"}
_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_DAYS_PER_WEEK = 7.0
_FINAL = {"final", "amended", "corrected"}
_SPOT_REASON = (
    f"heart rate {SPOT_HEART_RATE}: a spot value (clinic, monitor or exercise), not the daily "
    "resting rate the twin takes (40443-4)"
)
#: The LOINC codes an Observation is read by, first found first: the table's, then the ones
#: refused with their own reason.
_PANELS = {questionnaires.PHQ9_PANEL: "44261-6", questionnaires.GAD7_PANEL: "70274-6"}
_ITEMS = frozenset(PHQ9_ITEM_CODES[:8]) | frozenset(questionnaires.GAD7_ITEM_CODES)


@functools.cache
def _models() -> dict[str, Any]:
    # Imported on first use: loading the FHIR models takes a third of a second.
    from fhir.resources.R4B.condition import Condition
    from fhir.resources.R4B.medicationadministration import MedicationAdministration
    from fhir.resources.R4B.medicationdispense import MedicationDispense
    from fhir.resources.R4B.medicationrequest import MedicationRequest
    from fhir.resources.R4B.medicationstatement import MedicationStatement
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient
    from fhir.resources.R4B.procedure import Procedure
    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

    return {
        "Condition": Condition,
        "Observation": Observation,
        "MedicationStatement": MedicationStatement,
        "MedicationRequest": MedicationRequest,
        "MedicationDispense": MedicationDispense,
        "MedicationAdministration": MedicationAdministration,
        "Patient": Patient,
        "Procedure": Procedure,
        "QuestionnaireResponse": QuestionnaireResponse,
    }


#: Codes an Observation is read by: the twin's own first, then the ones refused by their rule.
_TAKEN = frozenset(LOINC) | frozenset(_PANELS)
_NAMED = _ITEMS | {SDNN_CODE, SPOT_HEART_RATE}


def _loinc_code(found: list[str]) -> str:
    """The code an Observation is read by.

    The first the twin takes, else the first a rule here names, else the first.
    """
    return next(
        (code for code in found if code in _TAKEN),
        next((code for code in found if code in _NAMED), found[0]),
    )


def _observation(obs: Any, source: str, patient: str | None) -> list[Record]:
    if obs.status not in _FINAL:
        return [Record.refused(source, f"status {shown(obs.status)}: only final results", patient)]
    found = codes(obs.code, LOINC_SYSTEM)
    if not found:
        own = codes(obs.code, CODE_SYSTEM)
        if own:
            return [Record(source, patient, effective(obs), _novamind_payload(obs, own[0]))]
        return [Record.refused(source, "code: no LOINC coding", patient)]
    code = _loinc_code(found)
    if code == AGE_CODE:
        return [Record(source, patient, effective(obs), _age(obs))]
    refusal = _observation_refusal(obs, code)
    if refusal is not None:
        return [Record.refused(source, refusal, patient)]
    code = _PANELS.get(code, code)  # a panel carrying its score is its total
    if code == PHQ9_ITEM_CODES[8]:
        answer = questionnaires.item_answer(obs)
        if answer is None:
            return [Record.refused(source, "value: a number or a LOINC answer code", patient)]
        payload = from_loinc(code, answer)
    else:
        value = questionnaires.value_of(obs)
        if value is None:
            reason = "value: a number required (valueQuantity, valueInteger or digits)"
            return [Record.refused(source, reason, patient)]
        number, unit = value
        if code in questionnaires.SCORE_CODES:
            if not questionnaires.is_score_unit(unit):
                return [Record.refused(source, f"unit: a score unit for {code}", patient)]
            unit = None  # the code's own score unit
        payload = from_loinc(code, number, unit)
        if isinstance(payload, events.Phq9) and obs.component:
            payload = events.Phq9(payload.total, questionnaires.phq9_items(obs.component))
        if code in _WEAR_CODES and obs.component:
            payload = _with_wear(payload, obs.component)
    return [Record(source, patient, effective(obs), payload)]


def _age(obs: Any) -> events.Covariates:
    """An age Observation (LOINC 30525-0, in years ``a``) as the twin's age covariate.

    Raises:
        InvalidInputError: No number in years.
    """
    found = questionnaires.value_of(obs)
    if found is None or found[1] != "a":
        raise errors.InvalidInputError("value: an age in years (a)")
    return events.Covariates(age_years=found[0])


def _novamind_payload(obs: Any, code: str) -> events.Payload:
    """The event of an Observation in Novamind's code system.

    What Novamind's FHIR export writes for events without a standard code: EMA, ln RMSSD, care
    status, prior episodes, no comorbid anxiety.

    Raises:
        InvalidInputError: A code of the system that is no such event (the twin's estimates are
            refused before, by their tag), or a value its event refuses.
    """
    if code == "ema-negative-affect":
        return events.EmaAffect(obs.valueInteger)
    if code == "prior-episodes":
        return events.Covariates(prior_episodes=obs.valueInteger)
    if code == "anxiety-comorbid":
        return events.Covariates(anxiety_comorbid=obs.valueBoolean)
    if code == "ln-rmssd":
        quantity = obs.valueQuantity
        if quantity is None or quantity.value is None or quantity.unit != "ln(ms)":
            raise errors.InvalidInputError("value: ln RMSSD as a quantity in ln(ms)")
        return events.LnRmssd(float(quantity.value))
    if code == "care-status":
        settings = [
            c.valueCodeableConcept.text
            for c in obs.component or []
            if "care-setting" in codes(c.code, CODE_SYSTEM) and c.valueCodeableConcept is not None
        ]
        return events.CareStatus(obs.valueBoolean, settings[0] if settings else None)
    raise errors.InvalidInputError(f"code {shown_code(code)}: not an event Novamind ingests")


def _procedure(procedure: Any, source: str, patient: str | None) -> list[Record]:
    """A completed therapy session in Novamind's code system (psychotherapy, CBT-I)."""
    if procedure.status != "completed":
        reason = f"status {shown(procedure.status)}: only completed procedures"
        return [Record.refused(source, reason, patient)]
    kinds = [k for k in codes(procedure.code, CODE_SYSTEM) if k in ("psychotherapy", "cbti")]
    if procedure.code is None or not kinds:
        return [Record.refused(source, "code: not a therapy session the twin takes", patient)]
    period = procedure.performedPeriod
    performed = procedure.performedDateTime or (period.start if period is not None else None)
    if performed is None:
        return [Record.refused(source, "performed: a date or dateTime required", patient)]
    when = instant(performed, field="performed")
    session = events.TherapySession("cbti" if kinds[0] == "cbti" else "psychotherapy")
    return [Record(source, patient, when, session)]


def _with_wear(payload: events.Payload, components: list[Any]) -> events.Payload:
    """Sleep or steps with the wear time of a ``wear-time`` component (hours), when one is given.

    Without one the wearable counts as worn all day, as before; with one, a night or day with
    too little wear keeps that (the twin draws no evidence from it).

    Raises:
        InvalidInputError: A wear-time component whose value is not hours.
    """
    for component in components:
        if "wear-time" not in codes(component.code, CODE_SYSTEM):
            continue
        found = questionnaires.value_of(component)
        if found is None or (found[1] or "h") != "h":
            raise errors.InvalidInputError("component wear-time: a quantity in hours (h)")
        assert isinstance(payload, events.SleepDuration | events.Steps)  # the wear codes' payloads
        return dataclasses.replace(payload, wear_hours=found[0])
    return payload


def _observation_refusal(obs: Any, code: str) -> str | None:
    """Why an Observation read by ``code`` is refused before its value is read, if it is."""
    if code == SDNN_CODE:
        return _SDNN_REASON
    if code == SPOT_HEART_RATE:
        return _SPOT_REASON
    if code in _ITEMS:
        return (
            f"item {code}: an item alone is no score (the total, its items as components, "
            "and PHQ-9 item 9 are ingested)"
        )
    if code in _PANELS and obs.hasMember:
        return f"panel {code}: its member Observations are ingested on their own"
    derived = [d.reference or "" for d in obs.derivedFrom or []]
    if any(r.startswith("QuestionnaireResponse/") or "/QuestionnaireResponse/" in r
           for r in derived):  # fmt: skip
        return (
            "derivedFrom a QuestionnaireResponse: the response is ingested (one score per "
            "administration)"
        )
    if code not in LOINC and code not in _PANELS:
        return f"code {shown_loinc(code)}: not supported"
    return None


def _response(response: Any, source: str, patient: str | None) -> list[Record]:
    """A PHQ-9 and/or GAD-7 QuestionnaireResponse, at ``authored``: a record per instrument."""
    if response.status not in ("completed", "amended"):
        reason = f"status {shown(response.status)}: only completed responses"
        return [Record.refused(source, reason, patient)]
    scores = questionnaires.scores_from_response(response)
    if response.authored is None:
        return [Record.refused(source, "authored: required", patient)]
    when = instant(response.authored, field="authored")
    # One instrument keeps the response's own key form (part ""); two are told apart.
    several = len(scores) > 1
    return [
        Record(source, patient, None, None, str(score), part if several else "")
        if isinstance(score, errors.InvalidInputError)
        else Record(source, patient, when, score, part=part if several else "")
        for part, score in scores
    ]


def _matches(concept: Any, wanted: dict[str, Any]) -> bool:
    """Whether a CodeableConcept carries one of ``wanted`` (SNOMED CT as is, ICD-10 by pattern)."""
    if concept is None:
        return False
    if any(code in wanted[SNOMED_SYSTEM] for code in codes(concept, SNOMED_SYSTEM)):
        return True
    pattern: re.Pattern[str] = wanted["icd10"]
    return any(
        pattern.match(code.replace(".", "").strip().upper())
        for system in ICD10_SYSTEMS
        for code in codes(concept, system)
    )


def _status(concept: Any, system: str, field: str) -> str | None:
    """The code of a status concept; ``None`` when absent.

    Raises:
        InvalidInputError: The status is present but carries no code of ``system`` (text only,
            or a local code system): it cannot be read, so it is not taken as absent.
    """
    if concept is None:
        return None
    found = codes(concept, system)
    if not found:
        raise errors.InvalidInputError(f"{field}: no code of {system}")
    return found[0]


def _onset(condition: Any) -> Any:
    period = condition.onsetPeriod
    return condition.onsetDateTime or (period.start if period else None)


def _abatement(condition: Any) -> Any:
    period = condition.abatementPeriod
    return condition.abatementDateTime or (
        (period.start or period.end) if period is not None else None
    )


def _episode_duration(condition: Any, clinical: str, source: str, patient: str | None) -> Record:
    """The current episode's duration on the day it was recorded (see the module docstring)."""
    if clinical != "active":
        reason = (
            f"clinicalStatus {shown(clinical)}: its onset dates the disorder, "
            "not the current episode"
            if clinical in _ACTIVE
            else f"clinicalStatus {shown(clinical)}: no current episode"
        )
        return Record.refused(source, reason, patient)
    onset = _onset(condition)
    if onset is None:
        return Record.refused(source, "onset: a date or dateTime required", patient)
    start, end = period(onset, field="onset")
    if condition.recordedDate is not None:
        when = instant(condition.recordedDate, field="recordedDate")
        if when < start:
            raise errors.InvalidInputError("onset: after recordedDate")
        # An onset known to a month or a year: the middle of that part of it before the record.
        began = middle(start, min(end, when))
    else:
        when = began = middle(start, end)
    weeks = (when - began).total_seconds() / 86_400.0 / _DAYS_PER_WEEK
    return Record(source, patient, when, events.Covariates(episode_weeks=weeks), part="episode")


def _anxiety(condition: Any, clinical: str, source: str, patient: str | None) -> Record:
    """Comorbid anxiety: true while the disorder is active, false from its abatement on."""
    when: datetime | None
    if clinical in _ACTIVE:
        if condition.recordedDate is not None:
            when = instant(condition.recordedDate, field="recordedDate")
        else:
            onset = _onset(condition)
            when = placed(onset, field="onset") if onset is not None else None
        if when is None:
            return Record.refused(source, "recordedDate or onset required", patient)
    else:
        abatement = _abatement(condition)
        if abatement is None:
            return Record.refused(source, "abatement: the date it ended required", patient)
        when = placed(abatement, field="abatement")
    return Record(
        source, patient, when, events.Covariates(anxiety_comorbid=clinical in _ACTIVE),
        part="anxiety",
    )  # fmt: skip


def _condition(condition: Any, source: str, patient: str | None) -> list[Record]:
    episode = _matches(condition.code, EPISODE_CODES)
    recurrent = _matches(condition.code, RECURRENT_CODES)
    anxiety = _matches(condition.code, ANXIETY_CODES)
    if not (episode or recurrent or anxiety):
        return [Record.refused(source, "code: not a depressive or anxiety disorder", patient)]
    try:
        verification = _status(
            condition.verificationStatus, _VERIFICATION_SYSTEM, "verificationStatus"
        )
        if verification not in (None, "confirmed"):
            seen = shown(verification)
            return [Record.refused(source, f"verificationStatus {seen}: not ingested", patient)]
        clinical = _status(condition.clinicalStatus, _CLINICAL_SYSTEM, "clinicalStatus")
        if clinical not in _ACTIVE | _ENDED:
            seen = shown(clinical)
            return [Record.refused(source, f"clinicalStatus {seen}: not ingested", patient)]
        out: list[Record] = []
        if episode:
            out.append(_episode_duration(condition, clinical, source, patient))
        elif recurrent:
            out.append(Record.refused(
                source, "recurrent depression: its onset dates the disorder, not the episode",
                patient,
            ))  # fmt: skip
        if anxiety:
            out.append(_anxiety(condition, clinical, source, patient))
        return out
    except errors.InvalidInputError as exc:
        return [Record.refused(source, str(exc), patient)]


Mapper = Callable[[Any, str, "str | None", Mapping[str, dict[str, Any]]], list[Record]]


def _without_bundle(
    mapper: Callable[[Any, str, str | None], list[Record]],
) -> Mapper:
    return lambda model, source, patient, bundled: mapper(model, source, patient)


_MAPPERS: dict[str, Mapper] = {
    "Condition": _without_bundle(_condition),
    "Observation": _without_bundle(_observation),
    "QuestionnaireResponse": _without_bundle(_response),
    "MedicationStatement": medications.statement,
    "MedicationRequest": medications.request,
    "MedicationDispense": medications.dispense,
    "MedicationAdministration": medications.administration,
    "Procedure": _without_bundle(_procedure),
}
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_\[\]]{0,63}|[0-9]{1,6}")
#: Bundle entries of these types are read where a resource refers to them, not ingested.
_REFERRED = frozenset({"Medication"})


def _location(loc: tuple[Any, ...], model: Any) -> str:
    """A validation error's element: a top-level element of the resource, else ``?``.

    Only the model's own element names are shown: a key the source invented (which may be a
    name) is not repeated, and nested paths are not walked to tell the two apart.
    """
    head = str(loc[0]) if loc else ""
    fields = {name for name, info in model.model_fields.items()} | {
        info.alias for info in model.model_fields.values() if info.alias
    }
    return head if head in fields and _FIELD.fullmatch(head) else "?"


def source_of(resource: dict[str, Any]) -> str | None:
    """A resource's own identity, ``<resourceType>/<id>``; ``None`` when it lacks either."""
    kind, rid = resource.get("resourceType"), resource.get("id")
    # FHIR's own rules for both (R4 §2.24 "id"): anything else is not an identity to report.
    if not (isinstance(kind, str) and _RESOURCE_TYPE.fullmatch(kind)):
        return None
    if not (isinstance(rid, str) and _FHIR_ID.fullmatch(rid)):
        return None
    return f"{kind}/{rid}"


def records_from_resource(
    resource: dict[str, Any],
    *,
    where: str = "",
    full_url: str | None = None,
    bundled: Mapping[str, dict[str, Any]] | None = None,
) -> list[Record]:
    """The records of one FHIR resource (JSON as a dict).

    Args:
        resource: The resource.
        where: Its position in the input (e.g. ``file.ndjson:12``), used when it has no id.
        full_url: Its Bundle entry's ``fullUrl`` (a Patient is also known by it).
        bundled: The Medication resources of its Bundle by ``fullUrl`` and
            ``Medication/<id>`` (what a ``medicationReference`` may point at).

    Returns:
        One or more records; refused ones carry the reason.
    """
    if not isinstance(resource, dict):
        return [Record.refused(where or "?", "not a JSON object")]
    kind = resource.get("resourceType")
    source = source_of(resource) or where or "?"
    patient = subject_key(resource.get("subject"))
    if is_model_derived(resource):
        return [Record.refused(source, MODEL_DERIVED_REASON, patient)]
    if not isinstance(kind, str) or (kind not in _MAPPERS and kind != "Patient"):
        seen = kind if isinstance(kind, str) and _RESOURCE_TYPE.fullmatch(kind) else "?"
        return [Record.refused(source, f"resourceType {seen}: not ingested", patient)]
    schema = _models()[kind]
    try:
        model = schema.model_validate(resource)
    except ValidationError as exc:
        fields = sorted({_location(e["loc"], schema) for e in exc.errors()})[:5]
        return [Record.refused(source, f"not valid FHIR {kind}: {', '.join(fields)}", patient)]
    except (KeyError, ValueError, TypeError, RecursionError) as exc:
        # The FHIR models raise these for what they cannot read at all (a contained resource
        # of a type R4B lacks, nesting deeper than Python's stack): one record, not the job.
        reason = f"not valid FHIR {kind}: unreadable ({type(exc).__name__})"
        return [Record.refused(source, reason, patient)]
    try:
        if kind == "Patient":
            facts = patient_facts(resource, full_url=full_url)
            return [Record(source, None, None, enrolee=facts)]
        return _MAPPERS[kind](model, source, patient, bundled or {})
    except errors.InvalidInputError as exc:  # the reason names fields and rules, never values
        return [Record.refused(source, str(exc), patient)]
    except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
        # A value no rule above foresaw (an overflow, an underflow to zero): this record is
        # refused by the error's kind; the job goes on.
        return [Record.refused(source, f"unreadable value ({type(exc).__name__})", patient)]


def _bundled(entries: list[Any]) -> dict[str, dict[str, Any]]:
    """The Bundle's referable resources by ``fullUrl`` and ``<type>/<id>``."""
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") not in _REFERRED:
            continue
        identity = source_of(resource)
        if identity is not None:
            out[identity] = resource
        if isinstance(entry.get("fullUrl"), str):
            out[entry["fullUrl"]] = resource
    return out


def records_from_bundle(bundle: dict[str, Any], *, where: str = "") -> list[Record]:
    """The records of every entry of a Bundle (any type: collection, transaction, ...)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return [Record.refused(where or "?", "not a FHIR Bundle")]
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        entries = []
    bundled = _bundled(entries)
    out: list[Record] = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            out.append(Record.refused(f"{where}#entry{index}", "entry without a resource"))
            continue
        full_url = entry.get("fullUrl")
        out.extend(
            records_from_resource(
                resource,
                where=f"{where}#entry{index}",
                full_url=full_url if isinstance(full_url, str) else None,
                bundled=bundled,
            )
        )
    return out
