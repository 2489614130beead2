import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin.model import likelihood as lk

CUTS27 = lk.score_cuts(27)


@given(st.floats(-40.0, 70.0), st.floats(0.3, 6.0))
def test_ordinal_mass_sums_to_one_over_the_valid_range(mean, sd):
    probs = np.exp([lk.ordinal_log_prob(k, np.array([mean]), sd, CUTS27)[0] for k in range(28)])
    assert probs.sum() == pytest.approx(1.0, abs=1e-9)
    assert (probs >= 0).all()


def test_vectorised_categories_match_scalar_calls():
    mean = np.linspace(-5, 32, 12, dtype=np.float32).reshape(3, 4)
    y = np.array([[0], [13], [27]])
    got = lk.ordinal_log_prob(y, mean, 2.2, CUTS27)
    for row in range(3):
        want = lk.ordinal_log_prob(int(y[row, 0]), mean[row].astype(np.float64), 2.2, CUTS27)
        np.testing.assert_allclose(got[row], want, rtol=2e-5, atol=1e-5)


def test_far_tails_stay_finite_and_ordered():
    far = lk.ordinal_log_prob(27, np.array([0.0, -50.0, -200.0]), 2.2, CUTS27)
    assert np.isfinite(far).all()
    assert far[0] > far[1] > far[2]


@given(st.floats(-10.0, 40.0))
def test_samples_never_leave_the_range(mean):
    rng = np.random.default_rng(0)
    y = lk.sample_ordinal(np.full(500, mean), 2.2, CUTS27, rng.standard_normal(500))
    assert y.min() >= 0
    assert y.max() <= 27


def test_sampler_and_likelihood_describe_the_same_distribution():
    rng = np.random.default_rng(1)
    mean = 11.3
    y = lk.sample_ordinal(np.full(200_000, mean), 2.2, CUTS27, rng.standard_normal(200_000))
    freq = np.bincount(y, minlength=28) / y.size
    probs = np.exp([lk.ordinal_log_prob(k, np.array([mean]), 2.2, CUTS27)[0] for k in range(28)])
    assert np.abs(freq - probs).max() < 0.005


@pytest.mark.parametrize("top", [21, 27])
def test_sample_score_equals_the_ordinal_search_on_unit_cuts(top):
    rng = np.random.default_rng(11)
    mean = rng.uniform(-3.0, top + 3.0, 20_000).astype(np.float32)
    mean[:50] = np.arange(50) % (top + 1) + 0.5  # latent exactly on a cut-point (with no noise)
    normal = rng.standard_normal(20_000)
    normal[:50] = 0.0
    expected = lk.sample_ordinal(mean, 2.2, lk.score_cuts(top), normal)
    np.testing.assert_array_equal(lk.sample_score(mean, 2.2, top, normal), expected)
    assert expected.min() == 0 and expected.max() == top
