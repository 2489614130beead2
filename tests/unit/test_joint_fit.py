"""The joint calibration of the literature targets (twin.analytics.joint) and its SMM core."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from twin.analytics import joint, smm
from twin.model.parameters import PopulationParameters


def test_the_jacobian_and_the_sandwich_recover_a_linear_model():
    A = np.array([[2.0, 0.0], [1.0, 3.0], [0.5, -1.0]])
    G = smm.jacobian(lambda points: [A @ p for p in points], np.array([0.3, -0.2]), step=0.1)
    np.testing.assert_allclose(G, A)
    s = np.array([0.1, 0.2, 0.4])
    se = smm.sandwich_standard_errors(G, 1.0 / s**2, np.diag(s**2))
    expected = np.sqrt(np.diag(np.linalg.inv(A.T @ np.diag(1.0 / s**2) @ A)))
    np.testing.assert_allclose(se, expected)
    # A parameter the moments do not move has no standard error.
    assert np.all(np.isnan(smm.sandwich_standard_errors(np.zeros((3, 2)), 1.0 / s**2, np.eye(3))))


def test_a_joint_fit_moves_a_displaced_parameter_back_toward_the_targets():
    # Start the care effect far from its calibrated value: the fit must lower J and move it back.
    start = dataclasses.replace(PopulationParameters(), pi_mean=11.0)
    before = joint.target_values(start, n=600, seed=5)
    j_before = sum(((r.value - r.published) / ((r.high - r.low) / 4)) ** 2 for r in before)
    fit = joint.fit_targets(start, names=("pi_mean",), n=600, seed=5, max_iterations=4)
    assert fit.objective < j_before
    assert fit.estimates["pi_mean"] < 9.0
    assert math.isfinite(fit.standard_errors["pi_mean"]) and fit.standard_errors["pi_mean"] > 0
    assert fit.degrees_of_freedom == len(fit.targets) - 1
    table = joint.fit_table(fit, version="test")
    assert "| pi_mean | 11 |" in table and table.count("\n| T1 |") == 1


def test_only_known_parameters_are_fitted():
    with pytest.raises(ValueError, match="not fitted jointly"):
        joint.fit_targets(PopulationParameters(), names=("kappa_s",), n=200, max_iterations=1)


def test_a_parameter_the_moments_do_not_move_loses_only_its_own_standard_error():
    G = np.array([[1.0, 0.0], [2.0, 0.0], [0.5, 0.0]])
    se = smm.sandwich_standard_errors(G, np.ones(3), np.eye(3))
    assert math.isfinite(se[0]) and math.isnan(se[1])


def test_the_monte_carlo_margin_narrows_each_band_to_at_most_half_its_width():
    runs = [np.array([0.40, 1.0, 0.0]), np.array([0.42, 1.0, 0.2]), np.array([0.44, 1.0, np.nan])]
    sd = joint.monte_carlo_sd(runs)
    np.testing.assert_allclose(sd[:2], [0.02, 0.0])
    assert sd[2] == 0.0  # a target that failed to compute in one run adds no margin
    low, high = joint.inner_band(np.array([0.3, 0.0]), np.array([0.5, 0.1]), np.array([0.04, 0.2]))
    np.testing.assert_allclose(low, [0.34, 0.025])
    np.testing.assert_allclose(high, [0.46, 0.075])
    with pytest.raises(ValueError, match="two replicate"):
        joint.monte_carlo_sd([np.array([0.4])])


def test_the_compass_search_finds_a_minimum_a_gradient_cannot_see():
    # A staircase bowl: zero gradient almost everywhere, minimum at (0.3, -0.2), one bound active.
    def staircase(points):
        return [
            float(np.sum((np.floor(np.asarray(p) * 40) / 40 - [0.3, -0.2]) ** 2)) for p in points
        ]

    start = np.array([0.0, 0.0])
    low, high = np.array([-1.0, -0.1]), np.array([1.0, 1.0])
    best = joint.compass_search(staircase, start, low, high, step=0.05, sweeps=40)
    assert abs(best[0] - 0.3) < 0.05 and best[1] == pytest.approx(-0.1)
    assert staircase([best])[0] < staircase([start])[0]
    # Nothing better nearby: the start itself comes back.
    at_minimum = np.array([0.3125, -0.1])
    assert joint.compass_search(staircase, at_minimum, low, high, sweeps=3) is at_minimum
