"""From event logs to courses, arms and moments (the data side of the calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from twin import errors
from twin.analytics import calibration as C
from twin.domain import events as E


def log(*items: tuple[float, object]) -> list[E.Event]:
    return [E.Event(seq, day, payload) for seq, (day, payload) in enumerate(items, 1)]  # type: ignore[arg-type]


def test_a_course_takes_the_treatment_at_baseline_and_scores_near_each_week():
    course = C.course_of(
        log(
            (0.01, E.Prescription("sertraline", 50.0)),
            (0.3, E.Phq9(18)),
            (7.5, E.Phq9(15)),
            (13.0, E.Phq9(14)),  # week 2 (day 14 +/- 2)
            (17.5, E.Phq9(12)),  # between weeks: ignored
            (28.2, E.Phq9(9)),
        )
    )
    assert isinstance(course, C.Course)
    # No care status in the log: weekly assessments show a trial-like setting.
    assert course.arm == ("episode", "trial", "sertraline", 50.0)
    assert course.phq9 == {0: 18, 1: 15, 2: 14, 4: 9}
    assert C.Course.from_dict(course.to_dict()) == course
    # Documents written when care was a switch still read (true: the trial-calibrated setting).
    assert C.Course.from_dict({**course.to_dict(), "care": True}).care == "trial"


def test_a_course_takes_its_stated_setting_or_the_one_its_assessment_schedule_shows():
    stated = log((0.0, E.CareStatus(True, "usual")), (0.3, E.Phq9(18)), (7.3, E.Phq9(15)))
    assert C.course_of(stated).care == "usual"  # type: ignore[union-attr]
    ended = log((0.0, E.CareStatus(False)), (0.3, E.Phq9(18)), (7.3, E.Phq9(15)))
    assert C.course_of(ended).care == "none"  # type: ignore[union-attr]
    fortnightly = log(*((14.0 * k + 0.3, E.Phq9(18 - k)) for k in range(5)))
    assert C.course_of(fortnightly).care == "collaborative"  # type: ignore[union-attr]
    monthly = log(*((28.0 * k + 0.3, E.Phq9(18 - k)) for k in range(5)))
    assert C.course_of(monthly).care == "usual"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        (((0.3, E.Phq9(7)), (7.3, E.Phq9(6))), "baseline PHQ-9 5-9"),
        (((0.3, E.Phq9(17)),), "fewer than two PHQ-9"),
        (((0.3, E.Phq9(17)), (3.0, E.Prescription("sertraline", 50.0)), (7.3, E.Phq9(15))),
         "treatment changed during follow-up"),
        (((0.3, E.Phq9(17)), (5.0, E.CareStatus(False)), (7.3, E.Phq9(15))),
         "treatment changed during follow-up"),
        (((0.3, E.Phq9(17)), (2.0, E.TherapySession()), (7.3, E.Phq9(15))), "psychotherapy"),
        (((0.0, E.Prescription("sertraline", 50.0)), (0.0, E.Prescription("fluoxetine", 20.0)),
          (0.3, E.Phq9(17)), (7.3, E.Phq9(15))), "more than one drug"),
    ],
)  # fmt: skip
def test_courses_a_fixed_design_cannot_reproduce_are_left_out_with_a_reason(items, reason):
    assert C.course_of(log(*items)) == reason


def _courses(n: int, start: str, care: str, drug: str | None) -> list[C.Course]:
    rng = np.random.default_rng(0)
    base = 16 if start == "episode" else 2
    return [
        C.Course(start, care, drug, 50.0 if drug else 0.0,
                 {w: int(max(0, base - (w if start == "episode" else 0) + rng.integers(-2, 3)))
                  for w in (0, 1, 2, 4, 8)})
        for _ in range(n)
    ]  # fmt: skip


def test_arms_need_enough_patients_and_identify_what_their_designs_allow():
    care = _courses(40, "episode", "trial", None)
    drug = _courses(40, "episode", "trial", "sertraline")
    found = C.arms_of(care + drug + _courses(10, "remitted", "none", None))
    by_label = {a.label: a for a in found}
    assert set(by_label) == {
        "episode, trial care, no drug",
        "episode, trial care, sertraline 50 mg",
    }
    arms = [
        by_label["episode, trial care, no drug"],
        by_label["episode, trial care, sertraline 50 mg"],
    ]
    assert arms[0].weeks == (1, 2, 4, 8) and arms[0].names[:2] == ("mean@1", "below5@1")
    assert arms[0].covariance.shape == (8, 8)
    # The covariance's diagonal is the sampling variance of each moment.
    y = np.array([c.phq9[4] for c in care], float)
    assert arms[0].covariance[4, 4] == pytest.approx(y.var() / y.size)
    assert C.identified(arms) == ("pi_mean", "e_max")
    assert C.identified(arms[:1]) == ("pi_mean",)
    with pytest.raises(errors.InvalidInputError, match="identifies"):
        C.fit(_courses(10, "episode", "trial", None))
