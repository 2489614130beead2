"""Synthetic-twin calibration: forecast intervals cover what they claim, near and far ahead.

Patients are simulated from the prior (the twin's own model); each twin assimilates 8 weeks of
weekly PHQ-9 and then forecasts 26 weeks, the longest horizon. Every forecast week is scored
against the patient's true observable PHQ-9 that week with
:func:`twin.validation.scoring.score_table`: coverage from the randomised PIT of the integer
score (u = F(y-1) + V·(F(y) - F(y-1)), V ~ U(0,1); covered at level L when |u - ½| ≤ L/2),
CRPS exact from the draws. A calibrated forecast covers about L of the observations at every
horizon, so the 80% intervals must cover 75-85% overall and separately in weeks 1-4 and in
weeks 12-26. The 50%/95% coverage, the mean CRPS and the PIT flatness are printed and recorded
(``record_property``) alongside.
"""

import numpy as np
import pytest

from twin.assimilation import kernel
from twin.assimilation.state import new_twin
from twin.domain.specs import Scenario
from twin.forecast import engine
from twin.model.virtual_patient import synthetic_patient
from twin.validation.scoring import ScoreReport, score_table

pytestmark = pytest.mark.slow

PATIENTS, PARTICLES, ASSIMILATE_WEEKS, HORIZON_WEEKS = 600, 1000, 8, 26
SCOPES = ("all", "weeks 1-4", "weeks 12-26")


@pytest.fixture(scope="module")
def report() -> ScoreReport:
    days = 7 * (ASSIMILATE_WEEKS + HORIZON_WEEKS)
    patients = [synthetic_patient(1000 + i, days=days, phq9_every=7) for i in range(PATIENTS)]
    cutoff = 7 * ASSIMILATE_WEEKS
    states = [new_twin(f"cal-{i}", n_particles=PARTICLES) for i in range(PATIENTS)]
    kernel.apply_events(states, [[e for e in p.events if e.day < cutoff] for p in patients])
    draws = engine.simulate_scenarios(states, [[Scenario()] for _ in states], weeks=HORIZON_WEEKS)
    weeks = np.arange(1, HORIZON_WEEKS + 1)
    patient = np.repeat(np.arange(PATIENTS), HORIZON_WEEKS)
    week = np.tile(weeks, PATIENTS)
    # Week w of a forecast is the twin's day + 7w; the truth is the PHQ-9 drawn that day.
    observed = np.concatenate(
        [p.phq9[s.day + 7 * weeks] for p, s in zip(patients, states, strict=True)]
    )
    samples = np.concatenate([d.phq9 for (d,) in draws])  # (PATIENTS·HORIZON_WEEKS, PARTICLES)
    del draws, states  # the twins' particles and other draws: memory the scoring can use
    result = score_table(patient, week, observed, samples, rng=0)
    for scores in (result.overall, *result.windows):
        cov = ", ".join(f"{level:.0%} {scores.coverage[level]:.3f}" for level in result.levels)
        pit = scores.pit
        assert pit is not None
        print(
            f"{scores.label}: {scores.n} forecasts of {scores.n_patients} patients; coverage "
            f"{cov} (80% SE {scores.coverage_se[0.8]:.3f}); mean CRPS {scores.mean_crps:.3f} "
            f"(SE {scores.crps_se:.3f}) PHQ-9 points; PIT chi2 {pit.chi2:.1f} on {pit.dof} df, "
            f"max bin deviation {pit.max_deviation:.3f}"
        )
    return result


@pytest.mark.parametrize("scope", SCOPES)
def test_80_percent_intervals_cover_75_to_85_percent(report, scope, record_property):
    scores = report.overall if scope == "all" else report.window(scope)
    for key, value in scores.row().items():
        record_property(f"{scope}: {key}", value)
    assert scores.n == PATIENTS * {"all": HORIZON_WEEKS, "weeks 1-4": 4, "weeks 12-26": 15}[scope]
    assert 0.75 <= scores.coverage[0.8] <= 0.85, scores.coverage
