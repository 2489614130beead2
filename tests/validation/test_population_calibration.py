"""Population calibration recovers known priors from a synthetic cohort.

Four arms are simulated from priors unlike the defaults (care effect, drug effect scale,
untreated recovery and off-drug relapse hazards), written out as event logs, reduced to courses
exactly as ingested data are, and fitted from the defaults by simulated moments. Tolerance: each
estimate within 3 of its (sandwich) standard errors of the truth, and each standard error under
15% of the value (30% for the drug effect scale, whose per-patient sensitivity is heavy-tailed,
CV 2.2): the design identifies every parameter. Fixed seeds: the test is deterministic.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.builders import calibration_design
from twin.analytics import calibration as C
from twin.analytics.synthetic import history_events
from twin.model.cohort import simulate_cohort
from twin.model.parameters import PopulationParameters

pytestmark = pytest.mark.slow

TRUTH = {"pi_mean": 3.5, "e_max": 3.0, "h10": 0.004, "h01": 0.0025}
RELATIVE_SE = {"pi_mean": 0.15, "e_max": 0.30, "h10": 0.15, "h01": 0.15}
DESIGN = calibration_design(3000, 84, 1000, 182)


def test_smm_recovers_known_priors_from_event_logs():
    truth = dataclasses.replace(PopulationParameters(), **TRUTH)
    results: list[C.Course | str] = []
    for spec in DESIGN:
        cohort = simulate_cohort(spec, params=truth)
        days = [int(d) for d in cohort.obs_days]
        for scores in cohort.phq9:
            results.append(C.course_of(history_events(spec, [int(v) for v in scores], days)))
    # Remitted patients whose observed baseline is 5-9 are left out (and so are their twins
    # in the simulation: the same selection applies to both).
    assert set(C.exclusions(results)) == {"baseline PHQ-9 5-9"}
    courses = [r for r in results if isinstance(r, C.Course)]
    # The arms of one evaluation are simulated in two threads (NumPy releases the GIL), as the
    # Ray job spreads them over tasks.
    with ThreadPoolExecutor(2) as pool:
        fit = C.fit(
            courses, n_sim=4000, max_evaluations=200,
            mapper=lambda fn, arms: list(pool.map(fn, arms)),
        )  # fmt: skip
    assert fit.converged and set(fit.estimates) == set(TRUTH)
    for name, true in TRUTH.items():
        estimate, se = fit.estimates[name], fit.standard_errors[name]
        assert se < RELATIVE_SE[name] * estimate, (name, estimate, se)
        assert abs(estimate - true) <= 3 * se, (name, estimate, se, true)
        # The fit moved from the defaults towards the truth.
        assert abs(estimate - true) < abs(fit.start[name] - true), name
    diagnostics = fit.diagnostics()
    assert diagnostics["degrees_of_freedom"] == len(fit.moments) - 4
    assert diagnostics["max_abs_z"] < 4.0
