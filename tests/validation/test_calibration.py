"""Synthetic-twin calibration: 80% forecast intervals cover 75-85% of what happens.

Patients are simulated from the prior (the twin's own model); each twin assimilates 8 weeks of
weekly PHQ-9 and then forecasts 12 weeks. Coverage uses the randomised PIT of the realised
observable PHQ-9 against the forecast draws (for an integer score, u = F(y-1) + V·(F(y) -
F(y-1)), V ~ U(0,1)): a calibrated forecast puts 80% of PITs in [0.1, 0.9].
"""

import numpy as np
import pytest

from twin.assimilation import kernel
from twin.assimilation.state import new_twin
from twin.forecast import engine
from twin.forecast.scenario import Scenario
from twin.testing.synthetic import synthetic_patient

PATIENTS, ASSIMILATE_WEEKS, HORIZON_WEEKS = 160, 8, 12


@pytest.mark.slow
def test_80_percent_intervals_cover_75_to_85_percent():
    days = 7 * (ASSIMILATE_WEEKS + HORIZON_WEEKS)
    patients = [synthetic_patient(1000 + i, days=days, phq9_every=7) for i in range(PATIENTS)]
    cutoff = 7 * ASSIMILATE_WEEKS
    states = [new_twin(f"cal-{i}", n_particles=1000) for i in range(PATIENTS)]
    kernel.apply_events(states, [[e for e in p.events if e.day < cutoff] for p in patients])
    draws = engine.simulate_scenarios(states, [[Scenario()] for _ in states], weeks=HORIZON_WEEKS)
    rng = np.random.default_rng(0)
    pits = []
    for state, patient, (d,) in zip(states, patients, draws, strict=True):
        start = state.day
        for w in range(HORIZON_WEEKS):
            y = patient.phq9[start + 7 * (w + 1)]
            sample = d.phq9[w]
            below, at = np.mean(sample < y), np.mean(sample == y)
            pits.append(below + rng.random() * at)
    coverage = float(np.mean((np.array(pits) >= 0.1) & (np.array(pits) <= 0.9)))
    print(f"coverage of 80% intervals: {coverage:.3f} over {len(pits)} forecasts")
    assert 0.75 <= coverage <= 0.85, coverage
