"""De-identification: identifier canaries of 1,000 synthetic patients never reach a researcher."""

import datetime as dt
import json
import random

import pytest

from twin import errors
from twin.domain.deidentify import Deidentifier
from twin.domain.patients import Identifiers

KEY = b"k" * 32


def _patients(n: int):
    rng = random.Random(11)
    for i in range(n):
        born = dt.date(1925, 1, 1) + dt.timedelta(days=rng.randrange(0, 80 * 365))
        yield (
            f"pt_{i:06d}",
            Identifiers(
                f"CANARY{i}-Given Family",
                born.isoformat(),
                f"MRN-CANARY-{i:06d}",
                f"canary{i}@example.org",
            ),
        )


def test_identifier_canaries_never_reach_the_research_rows():
    d = Deidentifier(KEY)
    rows, canaries = [], []
    for pid, ident in _patients(1000):
        born = dt.date.fromisoformat(ident.birth_date)
        enrolled = dt.date(2026, 3, 1)
        measures = {"severity_mean": 12.5, "p_episode": 0.7}
        rows.append(
            d.research_record(pid, birth_date=born, enrolled_on=enrolled, measures=measures)
        )
        canaries += [pid, ident.name, ident.mrn, ident.contact, ident.birth_date]
    blob = json.dumps(rows)
    assert not [c for c in canaries if c in blob]
    assert len({r["pseudonym"] for r in rows}) == 1000
    assert all(r["age"] == "90+" or r["age"] <= 89 for r in rows)
    assert any(r["age"] == "90+" for r in rows)


def test_pseudonyms_are_stable_per_key_and_dates_keep_intervals():
    d, other = Deidentifier(KEY), Deidentifier(b"z" * 32)
    assert d.pseudonym("pt_1") == d.pseudonym("pt_1") != other.pseudonym("pt_1")
    a, b = dt.date(2026, 1, 1), dt.date(2026, 2, 15)
    assert (d.shift("pt_1", b) - d.shift("pt_1", a)).days == 45
    shifts = {d.date_shift_days(f"pt_{i}") for i in range(500)}
    assert 0 not in shifts and min(shifts) >= -365 and max(shifts) <= 365
    assert min(shifts) < 0 < max(shifts)


def test_identifier_measures_and_short_keys_are_refused():
    with pytest.raises(errors.InvalidInputError, match="identifier"):
        Deidentifier(KEY).research_record(
            "pt_1", birth_date=dt.date(1980, 1, 1), enrolled_on=dt.date(2026, 1, 1),
            measures={"mrn": "x"},
        )  # fmt: skip
    with pytest.raises(errors.ConfigurationError):
        Deidentifier(b"short")
