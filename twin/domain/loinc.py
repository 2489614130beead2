"""FHIR-style observations by LOINC code, mapped onto the twin's payloads.

The codes (LOINC 2.7x, loinc.org) and the UCUM units accepted for each:

=========  ========================================  ==================  =====================
code       LOINC long name (short)                   units               payload
=========  ========================================  ==================  =====================
44261-6    PHQ-9 total score [Reported]              ``{score}``         :class:`Phq9`
44260-8    PHQ-9 item 9 (thoughts of self-harm)      ``{score}``         :class:`Phq9Item9`
70274-6    GAD-7 total score [Reported.PHQ]          ``{score}``         :class:`Gad7`
40443-4    Heart rate --resting                      ``/min``            :class:`RestingHeartRate`
93832-4    Sleep duration                            ``h``, ``min``      :class:`SleepDuration`
41950-7    Number of steps in 24 hour Measured       ``/(24.h)``         :class:`Steps`
55423-8    Number of steps in unspecified time       ``{steps}``         :class:`Steps`
=========  ========================================  ==================  =====================

8867-4 (Heart rate) is refused: it is a spot value (clinic vitals, a monitor, exercise), and the
twin's channel is the daily resting rate, 40443-4. Values are validated by the
payload constructors (out-of-range values raise, never clip); a fractional count or score is
refused rather than rounded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from twin import errors
from twin.domain import events

__all__ = ["LOINC", "SPOT_HEART_RATE", "from_loinc"]

#: LOINC "Heart rate": a spot value, never taken for the daily resting rate.
SPOT_HEART_RATE = "8867-4"


def _whole(code: str, value: float) -> int:
    if isinstance(value, bool) or not float(value).is_integer():
        raise errors.ObservationRangeError(f"loinc.{code}", value, "a whole number")
    return int(value)


@dataclass(frozen=True, slots=True)
class _Code:
    name: str
    units: dict[str, float]  # unit -> factor to the payload's unit
    build: Callable[[str, float], events.Payload]


LOINC: dict[str, _Code] = {
    "44261-6": _Code("PHQ-9 total score", {"{score}": 1.0}, lambda c, v: events.Phq9(_whole(c, v))),
    "44260-8": _Code("PHQ-9 item 9", {"{score}": 1.0}, lambda c, v: events.Phq9Item9(_whole(c, v))),
    "70274-6": _Code("GAD-7 total score", {"{score}": 1.0}, lambda c, v: events.Gad7(_whole(c, v))),
    "40443-4": _Code(
        "Heart rate --resting", {"/min": 1.0}, lambda c, v: events.RestingHeartRate(v)
    ),
    "93832-4": _Code(
        "Sleep duration", {"h": 1.0, "min": 1 / 60}, lambda c, v: events.SleepDuration(v)
    ),
    "41950-7": _Code(
        "Steps in 24 hours", {"/(24.h)": 1.0}, lambda c, v: events.Steps(_whole(c, v))
    ),
    "55423-8": _Code(
        "Steps (pedometer)", {"{steps}": 1.0}, lambda c, v: events.Steps(_whole(c, v))
    ),
}


def from_loinc(code: str, value: float, unit: str | None = None) -> events.Payload:
    """The payload of a LOINC-coded observation.

    Args:
        code: A LOINC code from :data:`LOINC`.
        value: ``valueQuantity.value``.
        unit: ``valueQuantity.code`` (UCUM); ``None`` means the code's first (canonical) unit.

    Raises:
        ObservationRangeError: Unknown code, unit not accepted for the code, or a value the
            payload refuses.
    """
    spec = LOINC.get(code)
    if code == SPOT_HEART_RATE:
        raise errors.ObservationRangeError(
            "loinc.code", code, "40443-4 for the daily resting heart rate (8867-4 is a spot value)"
        )
    if spec is None:
        raise errors.ObservationRangeError("loinc.code", code, f"one of {', '.join(LOINC)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.ObservationRangeError(f"loinc.{code}", value, "a number")
    factor = spec.units.get(unit if unit is not None else next(iter(spec.units)))
    if factor is None:
        raise errors.ObservationRangeError(f"loinc.{code}.unit", unit, f"one of {list(spec.units)}")
    return spec.build(code, value * factor)
