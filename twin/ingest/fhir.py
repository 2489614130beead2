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

- ``Observation`` (status final/amended/corrected) with a LOINC code of
  :mod:`twin.domain.loinc` and a ``valueQuantity`` (units checked). A PHQ-9 total (44261-6)
  carrying the nine item answers as components (LOINC 44250-9 ... 44260-8, item 9 = 44260-8,
  the suicidality item the alerts watch) keeps them: ``Phq9(total, items)``. Item 9 on its own
  (44260-8, as a quantity, an integer or a LOINC answer code LA6568-5 ... LA6571-9) becomes
  ``Phq9Item9`` (it fires the safety alert; it is no severity evidence).
- ``MedicationStatement`` (active, completed, stopped) of a drug in the model's table, with a
  dose in mg and a daily timing: a ``Prescription`` at the start, and a stop (0 mg/day) at the
  end of a completed or stopped period.
- ``MedicationAdministration`` (completed, not-done): ``DoseTaken`` (taken or missed).
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

  FHIR times: an instant is itself; a full date is that day's midnight UTC; a year or a year
  and month places a record at its middle, and is refused where a record needs a day
  (``recordedDate``).

HRV: LOINC has no code for RMSSD, the measure the twin's HRV stream uses (ln RMSSD); SDNN
(80404-7, what phones export) is refused with that reason. RMSSD reaches the twin through the
tabular formats (``code`` = ``rmssd``, in ms) or the API's ``ln_rmssd`` payload.

Everything else is refused with a reason (never dropped): other resource types and statuses,
codes the twin has no payload for, values its payloads refuse.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from twin import errors
from twin.domain import events
from twin.domain.loinc import from_loinc
from twin.ingest.records import Record

__all__ = [
    "ANXIETY_CODES",
    "EPISODE_CODES",
    "PHQ9_ITEM_CODES",
    "PHQ_ITEM_ANSWERS",
    "RECURRENT_CODES",
    "RXNORM_INGREDIENTS",
    "records_from_bundle",
    "records_from_resource",
    "source_of",
]

LOINC_SYSTEM = "http://loinc.org"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
#: PHQ-9 item answers in order (LOINC panel 44249-1); item 9 is 44260-8.
PHQ9_ITEM_CODES = (
    "44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3",
    "44260-8",
)  # fmt: skip
#: RxNorm ingredient concepts (RXCUI) of the drugs in the model's table.
RXNORM_INGREDIENTS = {
    "36437": "sertraline",
    "321988": "escitalopram",
    "2556": "citalopram",
    "32937": "paroxetine",
    "4493": "fluoxetine",
    "39786": "venlafaxine",
    "72625": "duloxetine",
}
#: LOINC "R-R interval.standard deviation (Heart rate variability)": SDNN, as wearables export.
SDNN_CODE = "80404-7"
_SDNN_REASON = (
    "HRV as SDNN (80404-7): the twin's HRV stream is ln RMSSD, which SDNN does not convert to"
)
#: LOINC answer list LL358-3 (PHQ-9 item frequencies) -> item score.
PHQ_ITEM_ANSWERS = {"LA6568-5": 0, "LA6569-3": 1, "LA6570-1": 2, "LA6571-9": 3}
_GTS_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
SNOMED_SYSTEM = "http://snomed.info/sct"
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
_PERIOD_DAYS = {"h": 1 / 24, "d": 1.0, "wk": 7.0}


@functools.cache
def _models() -> dict[str, Any]:
    # Imported on first use: loading the FHIR models takes a third of a second.
    from fhir.resources.R4B.condition import Condition
    from fhir.resources.R4B.medicationadministration import MedicationAdministration
    from fhir.resources.R4B.medicationstatement import MedicationStatement
    from fhir.resources.R4B.observation import Observation

    return {
        "Condition": Condition,
        "Observation": Observation,
        "MedicationStatement": MedicationStatement,
        "MedicationAdministration": MedicationAdministration,
    }


def _number(value: Decimal | float | int | None) -> float | None:
    return None if value is None else float(value)


def _codes(concept: Any, system: str) -> list[str]:
    return [c.code for c in (concept.coding or []) if c.system == system and c.code]


def _drug(concept: Any) -> str | None:
    """A table drug from RxNorm ingredient codes, or the first word of the text or display."""
    if concept is None:
        return None
    for code in _codes(concept, RXNORM_SYSTEM):
        if code in RXNORM_INGREDIENTS:
            return RXNORM_INGREDIENTS[code]
    names = [concept.text, *(c.display for c in (concept.coding or []))]
    for name in names:
        first = (name or "").strip().split(" ")[0].lower()
        if first in RXNORM_INGREDIENTS.values():
            return first
    return None


def _effective(resource: Any) -> datetime | None:
    """``effectiveDateTime``, else the start of ``effectivePeriod``, as an aware instant.

    A full date (``1999-07-02``, as US Core's own examples give) is that day's UTC midnight.

    Raises:
        InvalidInputError: A year or year-month only: too coarse to place a record on a day.
    """
    period = resource.effectivePeriod
    when = resource.effectiveDateTime or (period.start if period else None)
    return None if when is None else _instant(when, field="effective time")


def _drug_or_refusal(
    resource: Any, source: str, patient: str | None, statuses: tuple[str, ...]
) -> str | Record:
    """The table drug of a medication resource in one of ``statuses``, or why it is refused."""
    if resource.status not in statuses:
        return Record.refused(source, f"status {_code(resource.status)}: not ingested", patient)
    drug = _drug(resource.medicationCodeableConcept)
    if drug is None:
        return Record.refused(source, "medication: not a drug of the model's table", patient)
    return drug


def _observation(obs: Any, source: str, patient: str | None) -> list[Record]:
    if obs.status not in _FINAL:
        return [Record.refused(source, f"status {_code(obs.status)}: only final results", patient)]
    codes = _codes(obs.code, LOINC_SYSTEM)
    if not codes:
        return [Record.refused(source, "code: no LOINC coding", patient)]
    if codes[0] == SDNN_CODE:
        return [Record.refused(source, _SDNN_REASON, patient)]
    quantity = obs.valueQuantity
    answer = _answer(obs) if codes[0] == PHQ9_ITEM_CODES[8] else None
    if answer is None and (quantity is None or quantity.value is None):
        return [Record.refused(source, "value: valueQuantity required", patient)]
    try:
        if answer is not None:  # item 9 alone, as a coded answer or an integer
            payload = from_loinc(codes[0], answer)
        else:
            payload = from_loinc(codes[0], float(quantity.value), quantity.code or quantity.unit)
        if isinstance(payload, events.Phq9) and obs.component:
            payload = events.Phq9(payload.total, _phq9_items(obs.component))
    except errors.InvalidInputError as exc:
        return [Record.refused(source, str(exc), patient)]
    return [Record(source, patient, _effective(obs), payload)]


def _answer(element: Any) -> float | None:
    """A PHQ item answer: ``valueQuantity``, ``valueInteger`` or a LOINC answer code (LL358-3)."""
    quantity = element.valueQuantity
    if quantity is not None:
        return _number(quantity.value)
    if element.valueInteger is not None:
        return _number(element.valueInteger)
    concept = element.valueCodeableConcept
    if concept is not None:
        for code in _codes(concept, LOINC_SYSTEM):
            if code in PHQ_ITEM_ANSWERS:
                return float(PHQ_ITEM_ANSWERS[code])
    return None


def _phq9_items(components: list[Any]) -> tuple[int, ...] | None:
    answers: dict[str, float | None] = {}
    for component in components:
        for code in _codes(component.code, LOINC_SYSTEM):
            if code in PHQ9_ITEM_CODES:
                answers[code] = _answer(component)
    if not answers:
        return None
    if set(answers) != set(PHQ9_ITEM_CODES) or any(v is None for v in answers.values()):
        raise errors.InvalidInputError("component: the PHQ-9 items come as all nine or none")
    values = [answers[code] for code in PHQ9_ITEM_CODES]
    if any(v is None or not float(v).is_integer() for v in values):
        raise errors.InvalidInputError("component: PHQ-9 item answers are whole numbers 0..3")
    return tuple(int(v) for v in values if v is not None)


def _daily_mg(dosage: Any) -> float:
    """mg/day of a Dosage: ``doseQuantity`` (mg) x ``frequency`` / ``period``."""
    dose = None
    for rate in dosage.doseAndRate or []:
        if rate.doseQuantity is not None:
            dose = rate.doseQuantity
    if dose is None or dose.value is None or (dose.code or dose.unit) != "mg":
        raise errors.InvalidInputError("dosage: doseQuantity in mg required")
    timing = dosage.timing
    repeat = timing.repeat if timing else None
    timing_codes = _codes(timing.code, _GTS_SYSTEM) if timing and timing.code else []
    if repeat is not None and repeat.frequency and repeat.period:
        days = _PERIOD_DAYS.get(repeat.periodUnit or "")
        if days is None:
            raise errors.InvalidInputError("dosage: timing period unit must be h, d or wk")
        return float(dose.value) * float(repeat.frequency) / (float(repeat.period) * days)
    if "QD" in timing_codes:
        return float(dose.value)
    raise errors.InvalidInputError(
        "dosage: a daily timing (repeat frequency/period or QD) required"
    )


def _statement(statement: Any, source: str, patient: str | None) -> list[Record]:
    drug = _drug_or_refusal(statement, source, patient, ("active", "completed", "stopped"))
    if isinstance(drug, Record):
        return [drug]
    try:
        if not statement.dosage:
            raise errors.InvalidInputError("dosage: required")
        start_dose = events.Prescription(drug, _daily_mg(statement.dosage[0]))
    except errors.InvalidInputError as exc:
        return [Record.refused(source, str(exc), patient)]
    records = [Record(source, patient, _effective(statement), start_dose, part="start")]
    period = statement.effectivePeriod
    if statement.status in ("completed", "stopped") and period and period.end:
        records.append(
            Record(source, patient, period.end, events.Prescription(drug, 0.0), part="stop")
        )
    return records


def _administration(administration: Any, source: str, patient: str | None) -> list[Record]:
    drug = _drug_or_refusal(administration, source, patient, ("completed", "not-done"))
    if isinstance(drug, Record):
        return [drug]
    taken = administration.status == "completed"
    return [Record(source, patient, _effective(administration), events.DoseTaken(drug, taken))]


def _matches(concept: Any, codes: dict[str, Any]) -> bool:
    """Whether a CodeableConcept carries one of ``codes`` (SNOMED CT exactly, ICD-10 by pattern)."""
    if concept is None:
        return False
    if any(code in codes[SNOMED_SYSTEM] for code in _codes(concept, SNOMED_SYSTEM)):
        return True
    pattern: re.Pattern[str] = codes["icd10"]
    return any(
        pattern.match(code.replace(".", "").strip().upper())
        for system in ICD10_SYSTEMS
        for code in _codes(concept, system)
    )


def _status(concept: Any, system: str, field: str) -> str | None:
    """The code of a status concept; ``None`` when absent.

    Raises:
        InvalidInputError: The status is present but carries no code of ``system`` (text only,
            or a local code system): it cannot be read, so it is not taken as absent.
    """
    if concept is None:
        return None
    codes = _codes(concept, system)
    if not codes:
        raise errors.InvalidInputError(f"{field}: no code of {system}")
    return codes[0]


def _period(value: Any, *, field: str) -> tuple[datetime, datetime]:
    """The interval a FHIR date or dateTime denotes, as aware instants [start, end).

    An instant is the point itself; a full date is that day in UTC; a year (``2023``) or a year
    and month (``2023-06``) is that year or month in UTC.

    Raises:
        InvalidInputError: A value that is none of these (or beyond year 9999).
    """
    try:
        if isinstance(value, datetime):
            return value, value
        if isinstance(value, date):
            day = datetime(value.year, value.month, value.day, tzinfo=UTC)
            return day, day + timedelta(days=1)
        parts = str(value).split("-")
        if 1 <= len(parts) <= 2 and all(p.isdigit() for p in parts):
            year = int(parts[0])
            if len(parts) == 1:
                return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
            month = int(parts[1])
            start = datetime(year, month, 1, tzinfo=UTC)
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            return start, end
    except (ValueError, OverflowError):
        pass  # month 13, year 0 or 10000: refused below
    raise errors.InvalidInputError(f"{field}: not a FHIR date or dateTime")


def _instant(value: Any, *, field: str) -> datetime:
    """Where a record with this FHIR time is placed: an instant, or a full date's UTC midnight.

    Raises:
        InvalidInputError: A year or year-month (too coarse to place a record on a day).
    """
    start, end = _period(value, field=field)
    if end - start > timedelta(days=1):
        raise errors.InvalidInputError(f"{field}: a day or an instant required")
    return start


def _middle(start: datetime, end: datetime) -> datetime:
    return start + (end - start) / 2


def _placed(value: Any, *, field: str) -> datetime:
    """Where a FHIR time places a record.

    An instant or a day as :func:`_instant`; a year or month at its middle (the unbiased point
    for a time known to that precision).
    """
    start, end = _period(value, field=field)
    return start if end - start <= timedelta(days=1) else _middle(start, end)


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
            f"clinicalStatus {_code(clinical)}: its onset dates the disorder, "
            "not the current episode"
            if clinical in _ACTIVE
            else f"clinicalStatus {_code(clinical)}: no current episode"
        )
        return Record.refused(source, reason, patient)
    onset = _onset(condition)
    if onset is None:
        return Record.refused(source, "onset: a date or dateTime required", patient)
    start, end = _period(onset, field="onset")
    if condition.recordedDate is not None:
        when = _instant(condition.recordedDate, field="recordedDate")
        if when < start:
            raise errors.InvalidInputError("onset: after recordedDate")
        # An onset known to a month or a year: the middle of that part of it before the record.
        began = _middle(start, min(end, when))
    else:
        when = began = _middle(start, end)
    weeks = (when - began).total_seconds() / 86_400.0 / _DAYS_PER_WEEK
    return Record(source, patient, when, events.Covariates(episode_weeks=weeks), part="episode")


def _anxiety(condition: Any, clinical: str, source: str, patient: str | None) -> Record:
    """Comorbid anxiety: true while the disorder is active, false from its abatement on."""
    when: datetime | None
    if clinical in _ACTIVE:
        if condition.recordedDate is not None:
            when = _instant(condition.recordedDate, field="recordedDate")
        else:
            onset = _onset(condition)
            when = _placed(onset, field="onset") if onset is not None else None
        if when is None:
            return Record.refused(source, "recordedDate or onset required", patient)
    else:
        abatement = _abatement(condition)
        if abatement is None:
            return Record.refused(source, "abatement: the date it ended required", patient)
        when = _placed(abatement, field="abatement")
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
            shown = _code(verification)
            return [Record.refused(source, f"verificationStatus {shown}: not ingested", patient)]
        clinical = _status(condition.clinicalStatus, _CLINICAL_SYSTEM, "clinicalStatus")
        if clinical not in _ACTIVE | _ENDED:
            shown = _code(clinical)
            return [Record.refused(source, f"clinicalStatus {shown}: not ingested", patient)]
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


_MAPPERS = {
    "Condition": _condition,
    "Observation": _observation,
    "MedicationStatement": _statement,
    "MedicationAdministration": _administration,
}


_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_\[\]]{0,63}|[0-9]{1,6}")


_CODE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,31}")


def _code(value: object) -> str:
    """A status code as a refusal reason shows it (an unexpected text is not repeated)."""
    if value is None:
        return "None"  # absent
    return value if isinstance(value, str) and _CODE.fullmatch(value) else "?"


def _location(loc: tuple[Any, ...]) -> str:
    """A validation error's location, with anything that is not a field name hidden."""
    return ".".join(str(p) if _FIELD.fullmatch(str(p)) else "?" for p in loc)


def source_of(resource: dict[str, Any]) -> str | None:
    """A resource's own identity, ``<resourceType>/<id>``; ``None`` when it lacks either."""
    kind, rid = resource.get("resourceType"), resource.get("id")
    # FHIR's own rules for both (R4 §2.24 "id"): anything else is not an identity to report.
    if not (isinstance(kind, str) and _RESOURCE_TYPE.fullmatch(kind)):
        return None
    if not (isinstance(rid, str) and _FHIR_ID.fullmatch(rid)):
        return None
    return f"{kind}/{rid}"


def records_from_resource(resource: dict[str, Any], *, where: str = "") -> list[Record]:
    """The records of one FHIR resource (JSON as a dict).

    Args:
        resource: The resource.
        where: Its position in the input (e.g. ``file.ndjson:12``), used when it has no id.

    Returns:
        One or more records; refused ones carry the reason.
    """
    if not isinstance(resource, dict):
        return [Record.refused(where or "?", "not a JSON object")]
    kind = resource.get("resourceType")
    source = source_of(resource) or where or "?"
    subject = resource.get("subject")
    patient = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(kind, str) or kind not in _MAPPERS:
        shown = kind if isinstance(kind, str) and _RESOURCE_TYPE.fullmatch(kind) else "?"
        return [Record.refused(source, f"resourceType {shown}: not ingested", patient)]
    try:
        model = _models()[kind].model_validate(resource)
    except ValidationError as exc:
        # Locations name fields; a key the source invented is shown by its position only.
        fields = sorted({_location(e["loc"]) for e in exc.errors()})[:5]
        return [Record.refused(source, f"not valid FHIR {kind}: {', '.join(fields)}", patient)]
    try:
        return _MAPPERS[kind](model, source, patient)
    except errors.InvalidInputError as exc:  # the reason names fields and rules, never values
        return [Record.refused(source, str(exc), patient)]


def records_from_bundle(bundle: dict[str, Any], *, where: str = "") -> list[Record]:
    """The records of every entry of a Bundle (any type: collection, transaction, ...)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return [Record.refused(where or "?", "not a FHIR Bundle")]
    out: list[Record] = []
    for index, entry in enumerate(bundle.get("entry") or []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            out.append(Record.refused(f"{where}#entry{index}", "entry without a resource"))
            continue
        out.extend(records_from_resource(resource, where=f"{where}#entry{index}"))
    return out
