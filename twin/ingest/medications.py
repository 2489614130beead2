"""Antidepressants as EHRs export them: statements, prescriptions, dispensings, administrations.

The drug is one of the model's table (:data:`twin.domain.drugs.DRUG_NAMES`), read from an RxNorm
ingredient code or from the name of the medication (the ``text`` or a coding's ``display``,
e.g. RxNorm's clinical drug "Fluoxetine 25 MG Oral Capsule"). A name naming two drugs (a
combination product) is refused. The medication is the resource's ``medicationCodeableConcept``
or the ``Medication`` its ``medicationReference`` points at: a ``#contained`` one or one in the
same Bundle.

Dose, mg/day = dose x strength x doses per day, where

- dose is ``dosage[0].doseAndRate[].doseQuantity``: in mg (strength 1), in tablets or capsules
  (no unit, ``1``, ``TAB``, ``{tbl}``, ``tablet(s)``, ``CAP``, ...; Synthea writes
  ``{value: 1}``) or in mL;
- strength is mg per tablet or per mL: the single ingredient's ``strength`` (a ratio in mg per
  tablet or mL) of a referenced Medication, else the one strength in the drug's name
  ("25MG", "10 MG Oral Tablet", "20 MG/5 ML");
- doses per day come from ``timing.repeat`` (``frequency`` per ``period`` of h, d or wk) or a
  timing code (QD 1, BID 2, TID 3, QID 4, QOD 1/2).

Mapped:

- ``MedicationStatement`` (active, completed, stopped): a ``Prescription`` at the start of
  ``effective[x]``;
- ``MedicationRequest`` (active, completed, stopped; intent order or a kind of order, not
  ``doNotPerform``): a ``Prescription`` at the start of ``boundsPeriod``, else ``authoredOn``
  (the dispense request's validity is how long it may be filled, not when it is taken);
- for both, a completed or stopped one also gives a stop (0 mg/day) at its end (the statement's
  period end; the request's ``boundsPeriod`` end; a date ends with its day). One without an end,
  or ending before it starts, is refused: a stop whose date is unknown would leave the twin
  taking the drug for ever;
- one dosage instruction: several (morning and evening doses, a taper) are refused rather than
  read as the first; so are timings that are no fixed number of doses a day (ranges, weekdays)
  and a daily dose of 0 mg (a start that would read as a stop);
- ``MedicationDispense`` (completed): ``DoseTaken`` (taken) when handed over, the evidence of
  taking an export carries;
- ``MedicationAdministration`` (completed, not-done): ``DoseTaken`` taken or missed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from twin import errors
from twin.domain import events
from twin.ingest.fhir_common import RXNORM_SYSTEM, codes, effective, end_of, instant, shown
from twin.ingest.records import Record

__all__ = [
    "RXNORM_INGREDIENTS",
    "Drug",
    "administration",
    "daily_mg",
    "dispense",
    "drug_of",
    "request",
    "statement",
]

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
_GTS_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
_PER_DAY = {"QD": 1.0, "BID": 2.0, "TID": 3.0, "QID": 4.0, "QOD": 0.5}
_PERIOD_DAYS = {"h": 1 / 24, "d": 1.0, "wk": 7.0}
_UNIT_DOSES = frozenset({
    "", "1", "tab", "tabs", "tablet", "tablets", "{tab}", "{tbl}", "{tablet}", "{tablets}",
    "cap", "caps", "capsule", "capsules", "{capsule}", "{capsules}", "pill", "pills", "{pill}",
})  # fmt: skip
_NAME = re.compile(r"\b(" + "|".join(sorted(RXNORM_INGREDIENTS.values())) + r")\b", re.I)
#: "25 MG", "1,000 MG" (a thousands separator), "20 MG/5 ML"; never part of a longer number
#: ("37,5 mg", a decimal comma, gives no strength rather than 5 mg).
_NUMBER = r"(?<![\d.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\d,])"
_STRENGTH = re.compile(_NUMBER + r"\s*MG\b(?:\s*/\s*(\d+(?:\.\d+)?)?\s*(ML)\b)?", re.IGNORECASE)
_COMBINATION = re.compile(r"\s/\s")
_ORDERS = frozenset({"order", "original-order", "reflex-order", "filler-order", "instance-order"})


@dataclass(frozen=True, slots=True)
class Drug:
    """A table drug and its strength.

    Attributes:
        name: The drug (:data:`twin.domain.drugs.DRUG_NAMES`).
        mg_per_unit: mg per tablet or capsule (or per mL when ``per_ml``); ``None`` unknown.
        per_ml: Whether the strength is per mL (a solution).
    """

    name: str
    mg_per_unit: float | None = None
    per_ml: bool = False


def _strength_in(text: str) -> tuple[float, bool] | None:
    """The one strength a drug's name gives (mg per unit, per mL?), else ``None``."""
    found: set[tuple[float, bool]] = set()
    for match in _STRENGTH.finditer(text):
        mg = float(match.group(1).replace(",", ""))
        per = float(match.group(2)) if match.group(2) else 1.0
        if not (mg > 0 and per > 0):
            return None  # "0 MG", "20 MG/0 ML": no strength
        found.add((mg / per, match.group(3) is not None))
    return found.pop() if len(found) == 1 else None


def _from_concept(concept: Any) -> Drug:
    """The table drug a CodeableConcept names, with the strength its name gives.

    Raises:
        InvalidInputError: Not a table drug, or a combination of drugs.
    """
    names = [n for n in (concept.text, *(c.display for c in concept.coding or [])) if n]
    for code in codes(concept, RXNORM_SYSTEM):
        if code in RXNORM_INGREDIENTS:
            # An ingredient code names the drug; a name beside it may still give the strength.
            strengths = {s for s in map(_strength_in, names) if s is not None}
            if len(strengths) == 1:
                return Drug(RXNORM_INGREDIENTS[code], *strengths.pop())
            return Drug(RXNORM_INGREDIENTS[code])
    for name in names:
        drugs = {m.lower() for m in _NAME.findall(name)}
        # RxNorm writes a combination's ingredients with " / " between them.
        if len(drugs) > 1 or (drugs and _COMBINATION.search(name)):
            raise errors.InvalidInputError("medication: a combination of drugs is not ingested")
        if drugs:
            strength = _strength_in(name)
            if strength is None:
                return Drug(drugs.pop())
            return Drug(drugs.pop(), strength[0], strength[1])
    raise errors.InvalidInputError("medication: not a drug of the model's table")


def _ingredient_strength(medication: Any) -> tuple[float, bool] | None:
    """The mg per tablet (or per mL) of a Medication with one ingredient whose strength says so."""
    ingredients = medication.ingredient or []
    if len(ingredients) != 1 or ingredients[0].strength is None:
        return None
    ratio = ingredients[0].strength
    top, bottom = ratio.numerator, ratio.denominator
    if top is None or top.value is None or (top.code or top.unit or "").lower() != "mg":
        return None
    per = (bottom.code or bottom.unit or "").strip().lower() if bottom else ""
    amount = float(bottom.value) if bottom is not None and bottom.value is not None else 1.0
    if not (float(top.value) > 0 and amount > 0):
        return None  # a zero strength or a zero denominator: no strength
    if per == "ml":
        return float(top.value) / amount, True
    return (float(top.value) / amount, False) if per in _UNIT_DOSES else None


def _ingredients(medication: Any) -> Any:
    """A Medication without a code, as one concept of its ingredients' codings."""
    from fhir.resources.R4B.codeableconcept import CodeableConcept

    codings = [
        coding
        for ingredient in medication.ingredient or []
        if ingredient.itemCodeableConcept is not None
        for coding in ingredient.itemCodeableConcept.coding or []
    ]
    return CodeableConcept(coding=codings or None)


def _medication_model() -> Any:
    from fhir.resources.R4B.medication import Medication  # loaded on first use, as every model

    return Medication


def drug_of(resource: Any, bundled: Mapping[str, dict[str, Any]]) -> Drug:
    """The table drug of a medication resource (see the module docstring).

    Args:
        resource: The validated resource (statement, request, dispense or administration).
        bundled: Medication resources of the same Bundle by ``fullUrl`` and ``Medication/<id>``.

    Raises:
        InvalidInputError: Why no table drug can be read.
    """
    concept = resource.medicationCodeableConcept
    if concept is not None:
        return _from_concept(concept)
    reference = resource.medicationReference.reference if resource.medicationReference else None
    if not reference:
        raise errors.InvalidInputError("medication: a code or a reference required")
    medication: Any = None
    if reference.startswith("#"):
        for contained in resource.contained or []:
            if contained.get_resource_type() == "Medication" and contained.id == reference[1:]:
                medication = contained
    elif reference in bundled:
        try:
            medication = _medication_model().model_validate(bundled[reference])
        except ValidationError:
            raise errors.InvalidInputError("medicationReference: not a valid Medication") from None
    if medication is None:
        raise errors.InvalidInputError(
            "medicationReference: the Medication is neither contained nor in the same Bundle"
        )
    drug = _from_concept(medication.code or _ingredients(medication))
    strength = _ingredient_strength(medication)
    return Drug(drug.name, *strength) if strength is not None else drug


def _per_day(dosage: Any) -> float:
    timing = dosage.timing
    repeat = timing.repeat if timing else None
    if repeat is not None and (repeat.frequencyMax or repeat.periodMax or repeat.dayOfWeek):
        raise errors.InvalidInputError(
            "dosage: a timing that is not a fixed number of doses a day (a range, or weekdays)"
        )
    if repeat is not None and repeat.frequency and repeat.period:
        days = _PERIOD_DAYS.get(repeat.periodUnit or "")
        if days is None:
            raise errors.InvalidInputError("dosage: timing period unit must be h, d or wk")
        span = float(repeat.period) * days
        per_day = float(repeat.frequency) / span if span > 0 else math.inf
        if not (0 < per_day < math.inf):
            raise errors.InvalidInputError("dosage: timing is not a number of doses a day")
        return per_day
    for code in codes(timing.code, _GTS_SYSTEM) if timing and timing.code else []:
        if code in _PER_DAY:
            return _PER_DAY[code]
    raise errors.InvalidInputError(
        "dosage: a daily timing (repeat frequency/period, or QD, BID, TID, QID, QOD) required"
    )


def daily_mg(dosage: Any, drug: Drug) -> float:
    """mg/day of a Dosage (see the module docstring).

    Raises:
        InvalidInputError: No dose, a range, a unit other than mg, tablets or mL, a tablet or mL
            dose without a strength, or no daily timing.
    """
    dose = None
    for rate in dosage.doseAndRate or []:
        if rate.doseRange is not None and rate.doseQuantity is None:
            raise errors.InvalidInputError("dosage: a dose range is not a dose")
        if rate.doseQuantity is not None:
            dose = rate.doseQuantity
    if dose is None or dose.value is None:
        raise errors.InvalidInputError("dosage: doseAndRate.doseQuantity required")
    unit = (dose.code or dose.unit or "").strip().lower()
    if unit == "mg":
        per_dose = float(dose.value)
    elif unit in _UNIT_DOSES or unit == "ml":
        if drug.mg_per_unit is None or drug.per_ml != (unit == "ml"):
            raise errors.InvalidInputError(
                "dosage: a dose in tablets or mL needs the drug's strength (mg per tablet or "
                "per mL, in its name or ingredient)"
            )
        per_dose = float(dose.value) * drug.mg_per_unit
    else:
        raise errors.InvalidInputError("dosage: dose unit must be mg, tablets or mL")
    mg = per_dose * _per_day(dosage)
    # A start of 0 mg/day would be read as a stop: a prescription takes some of the drug.
    if not (0 < mg < math.inf):
        raise errors.InvalidInputError("dosage: the daily dose must be more than 0 mg")
    return mg


def _prescribed(
    source: str,
    patient: str | None,
    drug: Drug,
    dosages: list[Any],
    start: datetime | None,
    end: Any,
    status: str,
) -> list[Record]:
    """A start dose, and a stop at ``end`` for a completed or stopped one (refused without).

    Raises:
        InvalidInputError: No dosage or more than one (a split or tapering regimen is not read
            as one dose), an ended one without its end, or an end not after the start.
    """
    if not dosages:
        raise errors.InvalidInputError("dosage: required")
    if len(dosages) > 1:
        raise errors.InvalidInputError(
            "dosage: more than one instruction (a split or tapering regimen) is not read"
        )
    mg = daily_mg(dosages[0], drug)
    if status not in ("completed", "stopped"):
        return [Record(source, patient, start, events.Prescription(drug.name, mg), part="start")]
    if end is None:
        raise errors.InvalidInputError(
            f"status {status}: the date it ended is required to stop the dose"
        )
    stop = end_of(end, field="end")
    if start is not None and stop <= start:
        raise errors.InvalidInputError("end: not after the start")
    return [
        Record(source, patient, start, events.Prescription(drug.name, mg), part="start"),
        Record(source, patient, stop, events.Prescription(drug.name, 0.0), part="stop"),
    ]


def _status(resource: Any, statuses: tuple[str, ...]) -> None:
    if resource.status not in statuses:
        raise errors.InvalidInputError(f"status {shown(resource.status)}: not ingested")


def statement(
    resource: Any, source: str, patient: str | None, bundled: Mapping[str, dict[str, Any]]
) -> list[Record]:
    """The doses of a MedicationStatement."""
    _status(resource, ("active", "completed", "stopped"))
    drug = drug_of(resource, bundled)
    period = resource.effectivePeriod
    end = period.end if period is not None else None
    return _prescribed(
        source, patient, drug, resource.dosage or [], effective(resource), end, resource.status
    )


def request(
    resource: Any, source: str, patient: str | None, bundled: Mapping[str, dict[str, Any]]
) -> list[Record]:
    """The doses of a MedicationRequest (a prescription)."""
    _status(resource, ("active", "completed", "stopped"))
    if resource.intent not in _ORDERS:
        raise errors.InvalidInputError(f"intent {shown(resource.intent)}: not a prescription")
    if resource.doNotPerform:
        raise errors.InvalidInputError("doNotPerform: a prescription not to take the drug")
    drug = drug_of(resource, bundled)
    dosages = resource.dosageInstruction or []
    repeat = dosages[0].timing.repeat if dosages and dosages[0].timing else None
    bounds = repeat.boundsPeriod if repeat is not None else None
    # When to take it: the dosage's bounds, else from when it was written. The dispense
    # request's validity says how long it may be filled, not how long the drug is taken.
    begun = (bounds.start if bounds else None) or resource.authoredOn
    start = instant(begun, field="authoredOn") if begun is not None else None
    end = bounds.end if bounds else None
    return _prescribed(source, patient, drug, dosages, start, end, resource.status)


def dispense(
    resource: Any, source: str, patient: str | None, bundled: Mapping[str, dict[str, Any]]
) -> list[Record]:
    """A completed MedicationDispense: the drug taken, when it was handed over."""
    _status(resource, ("completed",))
    drug = drug_of(resource, bundled)
    if resource.whenHandedOver is None:
        raise errors.InvalidInputError("whenHandedOver: required")
    when = instant(resource.whenHandedOver, field="whenHandedOver")
    return [Record(source, patient, when, events.DoseTaken(drug.name, True))]


def administration(
    resource: Any, source: str, patient: str | None, bundled: Mapping[str, dict[str, Any]]
) -> list[Record]:
    """A MedicationAdministration: the drug taken (completed) or missed (not-done)."""
    _status(resource, ("completed", "not-done"))
    drug = drug_of(resource, bundled)
    taken = resource.status == "completed"
    return [Record(source, patient, effective(resource), events.DoseTaken(drug.name, taken))]
