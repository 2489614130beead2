"""LOINC-coded observations map onto payloads with units converted and values validated."""

import pytest

from twin import errors
from twin.domain import events as E
from twin.domain.loinc import LOINC, from_loinc


@pytest.mark.parametrize(
    ("code", "value", "unit", "payload"),
    [
        ("44261-6", 14, None, E.Phq9(14)),
        ("70274-6", 9.0, "{score}", E.Gad7(9)),
        ("40443-4", 58.5, "/min", E.RestingHeartRate(58.5)),
        ("93832-4", 450, "min", E.SleepDuration(7.5)),
        ("93832-4", 6.25, "h", E.SleepDuration(6.25)),
        ("41950-7", 8421, None, E.Steps(8421)),
        ("55423-8", 12000, "{steps}", E.Steps(12000)),
    ],
)
def test_codes_map_to_payloads(code, value, unit, payload):
    assert from_loinc(code, value, unit) == payload


@pytest.mark.parametrize(
    ("code", "value", "unit", "field"),
    [
        ("1234-5", 3, None, "loinc.code"),
        ("44261-6", 28, None, "phq9.total"),
        ("44261-6", 13.5, None, "loinc.44261-6"),
        ("8867-4", 60, "/min", "loinc.code"),
        ("93832-4", 20, "h", "sleep.hours"),
        ("41950-7", True, None, "loinc.41950-7"),
    ],
)
def test_bad_codes_units_and_values_are_refused_never_clipped(code, value, unit, field):
    with pytest.raises(errors.ObservationRangeError) as info:
        from_loinc(code, value, unit)
    assert info.value.field == field


def test_every_code_names_its_units():
    assert all(spec.units for spec in LOINC.values())
