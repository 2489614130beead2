"""Free text and single lines refuse what is not text, and accept every script."""

import pytest
from pydantic import ValidationError

from twin.schemas import BreakGlassIn, IngestJobIn, PatientCreate

PATIENT = {"birth_date": "1980-01-02", "mrn": "M-1", "care_team": "t1"}


@pytest.mark.parametrize(
    "name", ["José Müller", "李小龙", "محمد", "Zoë O'Brien-Smith", "ना\u200dम", "👩\u200d⚕️ Ada"]
)
def test_names_in_any_script_are_accepted(name):
    assert PatientCreate(name=name, **PATIENT).name == name


@pytest.mark.parametrize(
    "name",
    [
        "a\x00b",
        "a\x1bb",
        "a\x85b",  # C1 next line
        "Ann\u202eeB",  # right-to-left override: reads backwards
        "a\u2066b",  # isolate
        "a\u200bb",  # zero-width space: two names that look the same
        "\ufeffAda",  # byte order mark
        "a\u2028b",  # line separator
        "a\nb",
        "   ",
        "a\ue000b",  # private use
        "a\U000e0041b",  # tag character
    ],
)
def test_what_is_not_one_line_of_text_is_refused(name):
    with pytest.raises(ValidationError):
        PatientCreate(name=name, **PATIENT)


def test_a_reason_may_span_lines_but_not_hold_controls():
    assert BreakGlassIn(reason="unconscious\nno history on file").reason
    with pytest.raises(ValidationError):
        BreakGlassIn(reason="unconscious \u202e no history")


@pytest.mark.parametrize("born", ["1980-W01-1", "19800102xx", "1980/01/02"])
def test_birth_dates_are_calendar_dates(born):
    with pytest.raises(ValidationError):
        PatientCreate(name="Ada", **{**PATIENT, "birth_date": born})


@pytest.mark.parametrize("path", ["/in/a\x85b.ndjson", "/in/a\u2028b", "/in/\x00"])
def test_ingest_paths_are_one_line(path):
    with pytest.raises(ValidationError):
        IngestJobIn(paths=[path], format="csv", origin="2024-01-01T00:00:00Z")
