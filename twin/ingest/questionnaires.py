"""PHQ-9 and GAD-7 as real systems send them: totals, panels, items and questionnaire responses.

Shapes read (all seen in published FHIR R4 exports):

- a total (PHQ-9 44261-6, GAD-7 70274-6) or the panel code itself (PHQ-9 44249-1, GAD-7
  69737-5) carrying the score, as ``valueQuantity`` in any score unit (``{score}``, ``score``,
  ``{points}``, ``pts``, ``1`` or none), ``valueInteger``, or a ``valueString`` of digits;
- the items as ``component`` s of the total or the panel (all nine or none for the PHQ-9; the
  total must equal their sum);
- a panel with ``hasMember`` and no score of its own: its member Observations are separate
  resources and are ingested on their own (the total, and item 9 as the safety screen), so the
  panel itself is refused with that reason, never counted twice;
- a ``QuestionnaireResponse`` whose items are LOINC-coded (a LOINC code as the ``linkId``,
  with or without a leading ``/``, as US Core and LOINC's own forms do): all items of the
  instrument answered, with the LOINC answer codes LA6568-5 ... LA6571-9 (0-3) or a number;
  a total item, when present, must equal the sum. Items known only by the questionnaire's
  own ``linkId`` s are refused: the Questionnaire that would define them is not part of the
  record.

Item answers are whole numbers 0-3; anything else refuses the record (never rounded).
"""

from __future__ import annotations

import re
from typing import Any

from twin import errors
from twin.domain import events
from twin.ingest.fhir_common import LOINC_SYSTEM, codes, number

__all__ = [
    "GAD7_ITEM_CODES",
    "GAD7_PANEL",
    "GAD7_TOTAL",
    "PHQ9_ITEM_CODES",
    "PHQ9_PANEL",
    "PHQ9_TOTAL",
    "PHQ_ITEM_ANSWERS",
    "SCORE_CODES",
    "is_score_unit",
    "item_answer",
    "phq9_items",
    "scores_from_response",
    "value_of",
]

PHQ9_PANEL = "44249-1"
PHQ9_TOTAL = "44261-6"
#: PHQ-9 item answers in order (LOINC panel 44249-1); item 9 is 44260-8.
PHQ9_ITEM_CODES = (
    "44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3",
    "44260-8",
)  # fmt: skip
GAD7_PANEL = "69737-5"
GAD7_TOTAL = "70274-6"
#: GAD-7 item answers in order (LOINC panel 69737-5).
GAD7_ITEM_CODES = ("69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7")
#: Codes whose value is a score (read in any score unit).
SCORE_CODES = frozenset({PHQ9_TOTAL, "44260-8", GAD7_TOTAL})
#: LOINC answer list LL358-3 (PHQ and GAD item frequencies) -> item score.
PHQ_ITEM_ANSWERS = {"LA6568-5": 0, "LA6569-3": 1, "LA6570-1": 2, "LA6571-9": 3}
_SCORE_UNITS = frozenset({"", "1", "score", "scores", "points", "point", "pts", "pts.", "pt"})
_ANNOTATION = re.compile(r"\{[A-Za-z .-]{1,32}\}")
_DIGITS = re.compile(r"[0-9]{1,3}")
_LINK_LOINC = re.compile(r"/?([0-9]{1,8}-[0-9])")


def is_score_unit(unit: str | None) -> bool:
    """Whether a quantity's unit says "a score": none, ``1``, a UCUM annotation or a score word."""
    if unit is None:
        return True
    text = unit.strip()
    return text.lower() in _SCORE_UNITS or _ANNOTATION.fullmatch(text) is not None


def value_of(element: Any) -> tuple[float, str | None] | None:
    """A numeric value and its unit: ``valueQuantity``, ``valueInteger`` or digits as text.

    Returns:
        ``(value, unit)`` (``unit`` is the quantity's UCUM code, else its text, else ``None``),
        or ``None`` when the element carries no number.
    """
    quantity = getattr(element, "valueQuantity", None)
    if quantity is not None and quantity.value is not None:
        return float(quantity.value), quantity.code or quantity.unit
    integer = getattr(element, "valueInteger", None)
    if integer is not None and not isinstance(integer, bool):  # JSON true is no score
        return float(integer), None
    text = getattr(element, "valueString", None)
    if isinstance(text, str) and _DIGITS.fullmatch(text.strip()):
        return float(text.strip()), None
    return None


def item_answer(element: Any) -> float | None:
    """An item answer: a number (:func:`value_of`, ``valueDecimal``) or a LOINC answer code."""
    found = value_of(element)
    if found is not None:
        return found[0]
    decimal = getattr(element, "valueDecimal", None)
    if decimal is not None:
        return number(decimal)
    concept = getattr(element, "valueCodeableConcept", None)
    coding = getattr(element, "valueCoding", None)
    candidates = [*(concept.coding or [] if concept is not None else []), coding]
    for code in candidates:
        # A LOINC answer code needs no system to be read: the LA codes are LOINC's own.
        known = code is not None and code.system in (None, LOINC_SYSTEM)
        if known and code.code in PHQ_ITEM_ANSWERS:
            return float(PHQ_ITEM_ANSWERS[code.code])
    return None


def _ordered(
    answers: dict[str, float | None], item_codes: tuple[str, ...], name: str
) -> tuple[int, ...]:
    """The answers of ``item_codes`` in order, each a whole number 0-3.

    Raises:
        InvalidInputError: An item is missing, unanswered or not a whole number 0-3.
    """
    if set(item_codes) - set(answers) or any(answers[c] is None for c in item_codes):
        raise errors.InvalidInputError(f"items: the {name} items come as all of them or none")
    values = [answers[code] for code in item_codes]
    if any(v is None or not float(v).is_integer() or not 0 <= v <= 3 for v in values):
        raise errors.InvalidInputError(f"items: {name} item answers are whole numbers 0..3")
    return tuple(int(v) for v in values if v is not None)


def phq9_items(components: list[Any]) -> tuple[int, ...] | None:
    """The nine PHQ-9 item answers of an Observation's components, or ``None`` when it has none.

    Raises:
        InvalidInputError: Some but not all items, or an answer that is not 0-3.
    """
    answers: dict[str, float | None] = {}
    for component in components:
        for code in codes(component.code, LOINC_SYSTEM):
            if code in PHQ9_ITEM_CODES:
                answers[code] = item_answer(component)
    if not answers:
        return None
    return _ordered(answers, PHQ9_ITEM_CODES, "PHQ-9")


def _item_code(item: Any) -> str | None:
    """The LOINC code a QuestionnaireResponse item's ``linkId`` is (``44250-9``, ``/44250-9``)."""
    match = _LINK_LOINC.fullmatch(item.linkId or "")
    return match.group(1) if match else None


def _answers(items: list[Any] | None, out: dict[str, float | None]) -> None:
    for item in items or []:
        code = _item_code(item)
        answers = item.answer or []
        if code is not None and answers:
            out[code] = item_answer(answers[0]) if len(answers) == 1 else None
        _answers(item.item, out)
        for answer in answers:
            _answers(answer.item, out)


def scores_from_response(
    response: Any,
) -> list[tuple[str, events.Phq9 | events.Gad7 | errors.InvalidInputError]]:
    """The PHQ-9 and GAD-7 a QuestionnaireResponse holds (see the module docstring).

    A response may hold both instruments (a combined intake form): each present instrument
    gives its score, or the reason it cannot be scored; one's refusal does not refuse the other.

    Returns:
        ``(part, payload or error)`` per instrument present (part ``phq9``, ``gad7``).

    Raises:
        InvalidInputError: No LOINC-coded items of either instrument.
    """
    answers: dict[str, float | None] = {}
    _answers(response.item, answers)
    out: list[tuple[str, events.Phq9 | events.Gad7 | errors.InvalidInputError]] = []
    # The items decide which instrument a response is (its questionnaire URL is local).
    for total_code, item_codes, name in (
        (PHQ9_TOTAL, PHQ9_ITEM_CODES, "PHQ-9"),
        (GAD7_TOTAL, GAD7_ITEM_CODES, "GAD-7"),
    ):
        if not set(item_codes) & set(answers):
            continue
        part = name.replace("-", "").lower()
        try:
            items = _ordered(answers, item_codes, name)
            total = answers.get(total_code)
            if total_code in answers and total != sum(items):
                raise errors.InvalidInputError(
                    f"items: the {name} total is not the sum of its items"
                )
            out.append(
                (
                    part,
                    events.Phq9(sum(items), items) if name == "PHQ-9" else events.Gad7(sum(items)),
                )
            )
        except errors.InvalidInputError as exc:
            out.append((part, exc))
    if not out:
        raise errors.InvalidInputError(
            "items: no LOINC-coded PHQ-9 or GAD-7 items (a LOINC code as the linkId)"
        )
    return out
