import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin import errors
from twin.domain import codec
from twin.domain import events as E

PAYLOADS = [
    E.Phq9(14, (2, 2, 2, 2, 2, 1, 1, 1, 1)),
    E.Phq9(0),
    E.Phq9Item9(2),
    E.Gad7(21),
    E.EmaAffect(4),
    E.SleepDuration(6.5, 8.0),
    E.Steps(12000, 15.0),
    E.RestingHeartRate(61.0),
    E.LnRmssd(3.4),
    E.Prescription("sertraline", 50.0),
    E.DoseTaken("sertraline", False),
    E.TherapySession("cbti"),
    E.CareStatus(True),
    E.CareStatus(True, "usual"),
    E.Covariates(episode_weeks=30.5, prior_episodes=2, anxiety_comorbid=True, age_years=67.0),
    E.Covariates(prior_episodes=0),
]


def test_every_payload_type_is_covered():
    assert {type(p) for p in PAYLOADS} == set(codec.PAYLOAD_TYPES.values())


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_round_trip_through_json(payload):
    assert codec.decode(json.loads(json.dumps(codec.encode(payload)))) == payload


@given(st.integers(-100, 100))
def test_decoding_validates_like_the_constructor(total):
    data = {"type": "gad7", "total": total}
    if 0 <= total <= 21:
        assert codec.decode(data) == E.Gad7(total)
    else:
        with pytest.raises(errors.ObservationRangeError, match=r"gad7\.total"):
            codec.decode(data)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "mood_ring", "value": 3}, "type"),
        ({"total": 3}, "type"),
        ({"type": "gad7", "total": 3, "note": "x"}, "gad7.note"),
        ({"type": "gad7"}, "gad7"),
    ],
)
def test_unknown_types_and_fields_are_refused(data, field):
    with pytest.raises(errors.ObservationRangeError) as info:
        codec.decode(data)
    assert info.value.field == field
