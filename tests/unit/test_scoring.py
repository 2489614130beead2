import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scoringrules as sr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import twin.validation
from twin import errors, schemas
from twin.validation import scoring
from twin.validation.scoring import (
    DEFAULT_WINDOWS,
    Window,
    central_levels,
    crps_ensemble,
    crps_quantiles,
    interval_coverage,
    interval_coverage_quantiles,
    pit,
    pit_histogram,
    score_table,
)

API_LEVELS = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)


def gaussian_crps(mu: float, sigma: float, y: float) -> float:
    """Closed form: σ[z(2Φ(z) - 1) + 2φ(z) - 1/√π], z = (y - μ)/σ."""
    z = (y - mu) / sigma
    cdf = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return sigma * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / math.sqrt(math.pi))


def brute_force_crps(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    accuracy = np.mean(np.abs(x - y[:, None]), axis=1)
    spread = np.mean(np.abs(x[:, :, None] - x[:, None, :]), axis=(1, 2))
    return accuracy - 0.5 * spread


def integer_forecasts(rng, n, m, *, spread=1.0, shift=0.0, truth_sd=4.0):
    """PHQ-9-like integer forecasts (rounded, clipped normals) and observations.

    Observations come from the true distribution N(μ, truth_sd²); the forecast draws from
    N(μ + shift, (spread·truth_sd)²), both rounded and clipped to 0..27.
    """
    mu = rng.uniform(3.0, 22.0, n)
    truth = np.clip(np.rint(mu + truth_sd * rng.standard_normal(n)), 0, 27)
    draws = mu[:, None] + shift + spread * truth_sd * rng.standard_normal((n, m))
    return np.clip(np.rint(draws), 0, 27), truth


# ---------------------------------------------------------------------------------------------
# The package


def test_the_package_exports_the_scoring_module_and_needs_numpy_only():
    assert twin.validation.__all__ == scoring.__all__
    for name in scoring.__all__:
        assert getattr(twin.validation, name) is getattr(scoring, name)
    code = (
        "import sys, twin.validation;"
        "heavy = ('scipy', 'pandas', 'pydantic', 'numba', 'ray', 'twin.model', 'twin.forecast');"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# CRPS


@pytest.mark.parametrize(
    ("mu", "sigma", "y"),
    [(0.0, 1.0, 0.0), (0.0, 1.0, 1.5), (10.0, 3.0, 4.0), (-2.0, 0.5, -2.2), (5.0, 2.0, 12.0)],
)
def test_ensemble_crps_matches_the_gaussian_closed_form(mu, sigma, y):
    rng = np.random.default_rng(7)
    draws = mu + sigma * rng.standard_normal((1, 200_000))
    got = crps_ensemble(draws, [y])[0]
    assert got == pytest.approx(gaussian_crps(mu, sigma, y), rel=0.01, abs=0.002 * sigma)


def test_ensemble_crps_is_vectorised_over_forecasts():
    rng = np.random.default_rng(8)
    mu, sigma, y = np.array([0.0, 3.0, -1.0]), np.array([1.0, 2.0, 0.3]), np.array([0.5, 0.0, 4])
    draws = mu[:, None] + sigma[:, None] * rng.standard_normal((3, 100_000))
    want = [gaussian_crps(*args) for args in zip(mu, sigma, y, strict=True)]
    np.testing.assert_allclose(crps_ensemble(draws, y), want, rtol=0.01)


@settings(deadline=None, max_examples=200)
@given(
    st.integers(1, 5).flatmap(
        lambda n: st.tuples(
            st.integers(1, 12).flatmap(
                lambda m: st.lists(
                    st.lists(st.floats(-1e3, 1e3), min_size=m, max_size=m),
                    min_size=n,
                    max_size=n,
                )
            ),
            st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n),
        )
    )
)
def test_sorted_sample_identity_equals_the_brute_force_double_sum(case):
    x, y = np.array(case[0]), np.array(case[1])
    np.testing.assert_allclose(crps_ensemble(x, y), brute_force_crps(x, y), rtol=1e-9, atol=1e-9)


@settings(deadline=None, max_examples=100)
@given(
    st.lists(st.integers(0, 27), min_size=2, max_size=30),
    st.integers(0, 27),
)
def test_identity_holds_with_integer_ties_and_the_fair_form_differs_by_spread_over_2m(xs, y):
    x, obs = np.array([xs], dtype=float), np.array([y], dtype=float)
    plain = crps_ensemble(x, obs)
    np.testing.assert_allclose(plain, brute_force_crps(x, obs), atol=1e-9)
    m = x.shape[1]
    spread = np.mean(np.abs(x[0][:, None] - x[0][None, :]))
    fair = crps_ensemble(x, obs, fair=True)
    np.testing.assert_allclose(plain - fair, spread / (2 * (m - 1)), atol=1e-9)


def test_crps_of_a_point_forecast_is_the_absolute_error():
    np.testing.assert_allclose(crps_ensemble([[3.0], [7.0]], [5.0, 7.0]), [2.0, 0.0])
    np.testing.assert_allclose(crps_ensemble(np.full((2, 5), 4.0), [1.0, 4.0]), [3.0, 0.0])


def test_a_sharper_calibrated_forecast_scores_better():
    rng = np.random.default_rng(9)
    y = rng.standard_normal(4000)
    informed = 0.6 * y[:, None] + 0.8 * rng.standard_normal((4000, 500))  # knows part of y
    climatology = rng.standard_normal((4000, 500))
    assert crps_ensemble(informed, y).mean() < 0.9 * crps_ensemble(climatology, y).mean()


def test_quantile_crps_is_twice_the_mean_pinball_loss_for_evenly_spread_levels():
    rng = np.random.default_rng(10)
    tau = (np.arange(1, 20) - 0.5) / 19
    q = np.sort(rng.normal(size=(50, 19)), axis=1)
    y = rng.normal(size=50)
    pinball = (np.where(y[:, None] < q, 1.0, 0.0) - tau) * (q - y[:, None])
    np.testing.assert_allclose(crps_quantiles(tau, q, y), 2 * pinball.mean(axis=1), atol=1e-12)


def test_quantile_crps_is_close_to_the_ensemble_crps():
    rng = np.random.default_rng(11)
    n = 2000
    mu, sd = 3 * rng.standard_normal(n), 2 * np.exp(0.3 * rng.standard_normal(n))
    draws = mu[:, None] + sd[:, None] * rng.standard_normal((n, 1000))
    y = mu + sd * rng.standard_normal(n)
    exact = crps_ensemble(draws, y).mean()
    dense = (np.arange(1, 100) - 0.5) / 99
    q = np.quantile(draws, dense, axis=1).T
    assert crps_quantiles(dense, q, y).mean() == pytest.approx(exact, rel=0.01)
    # The API's seven uneven levels: a coarser estimate, weighted by each level's cell.
    q7 = np.quantile(draws, API_LEVELS, axis=1).T
    assert crps_quantiles(API_LEVELS, q7, y).mean() == pytest.approx(exact, rel=0.05)


# ---------------------------------------------------------------------------------------------
# PIT, coverage, histogram


def test_randomised_pit_is_uniform_when_observations_come_from_the_forecast():
    rng = np.random.default_rng(12)
    draws, y = integer_forecasts(rng, 6000, 1000)
    u = pit(draws, y, rng=1)
    hist = pit_histogram(u)
    assert hist.p_value > 0.01
    assert hist.max_deviation < 0.015
    assert sum(hist.counts) == 6000
    cov = interval_coverage(draws, y, rng=1)
    for level, share in cov.items():
        assert share == pytest.approx(level, abs=0.02)


def test_coverage_stays_nominal_for_a_score_on_few_integers():
    # Remitted patients: PHQ-9 around 0-3, large probability on each integer. The randomised
    # PIT keeps coverage nominal; the PIT's midpoint or closed quantile intervals over-cover.
    rng = np.random.default_rng(22)
    lam = rng.uniform(0.5, 3.0, 6000)
    y = rng.poisson(lam).astype(float)
    draws = rng.poisson(lam[:, None], (6000, 1000)).astype(float)
    u = pit(draws, y)
    assert pit_histogram(u).p_value > 0.01
    for level, share in interval_coverage(draws, y).items():
        assert share == pytest.approx(level, abs=0.02)
    below, at = np.mean(draws < y[:, None], axis=1), np.mean(draws <= y[:, None], axis=1)
    midpoint = below + 0.5 * (at - below)
    assert pit_histogram(midpoint).p_value < 1e-6
    assert np.mean(np.abs(midpoint - 0.5) <= 0.4) > 0.83
    q = np.quantile(draws, API_LEVELS, axis=1, method="inverted_cdf").T
    assert interval_coverage_quantiles(API_LEVELS, q, y)[0.8] > 0.88


def test_the_plain_pit_of_an_integer_score_is_not_uniform():
    # Without randomisation the PIT sits on the CDF's jumps: the reason for randomising.
    rng = np.random.default_rng(13)
    draws, y = integer_forecasts(rng, 6000, 1000)
    assert pit_histogram(pit(draws, y, discrete=False)).p_value < 1e-6


def test_pit_is_reproducible_with_a_seed_and_fixed_by_default():
    rng = np.random.default_rng(14)
    draws, y = integer_forecasts(rng, 100, 50)
    np.testing.assert_array_equal(pit(draws, y), pit(draws, y))
    np.testing.assert_array_equal(pit(draws, y, rng=5), pit(draws, y, rng=np.random.default_rng(5)))
    assert not np.array_equal(pit(draws, y, rng=5), pit(draws, y, rng=6))


def test_pit_of_an_integer_observation_lies_within_its_cdf_jump():
    draws = np.array([[1, 2, 2, 2, 3, 5, 5, 7, 8, 9]], dtype=float)
    u = pit(np.repeat(draws, 500, axis=0), np.full(500, 2.0), rng=3)
    assert np.all((u >= 0.1) & (u <= 0.4))
    assert u.mean() == pytest.approx(0.25, abs=0.02)


def test_too_narrow_forecasts_give_a_u_shaped_pit_and_undercover():
    rng = np.random.default_rng(15)
    draws, y = integer_forecasts(rng, 6000, 1000, spread=0.5)
    hist = pit_histogram(pit(draws, y))
    assert hist.p_value < 1e-6
    assert hist.frequencies[0] > 0.15 and hist.frequencies[-1] > 0.15
    assert max(hist.frequencies[3:7]) < 0.08
    cov = interval_coverage(draws, y)
    assert cov[0.8] < 0.65 and cov[0.95] < 0.85


def test_biased_forecasts_give_a_sloped_pit():
    rng = np.random.default_rng(16)
    draws, y = integer_forecasts(rng, 6000, 1000, shift=3.0)  # forecasts too high
    u = pit(draws, y)
    hist = pit_histogram(u)
    assert hist.p_value < 1e-6
    assert u.mean() < 0.4
    assert hist.frequencies[0] > 2 * hist.frequencies[-1]


@pytest.mark.parametrize(("x", "dof"), [(0.5, 1), (3.0, 2), (9.0, 9), (16.9, 9), (40.0, 9)])
def test_the_chi_square_p_value_matches_scipy(x, dof):
    assert scoring._chi2_sf(x, dof) == pytest.approx(stats.chi2.sf(x, dof), rel=1e-10)


def test_histogram_of_a_perfectly_flat_pit():
    hist = pit_histogram((np.arange(1000) + 0.5) / 1000, bins=10)
    assert hist.counts == (100,) * 10
    assert hist.chi2 == 0.0 and hist.p_value == 1.0 and hist.max_deviation == 0.0
    assert hist.edges[0] == 0.0 and hist.edges[-1] == 1.0


def test_central_levels_of_the_api_quantiles():
    assert central_levels(API_LEVELS) == (0.5, 0.8, 0.9)


def test_coverage_from_quantiles_counts_the_bounds_as_inside():
    q = np.array([[2, 3, 4, 5, 6, 7, 8]] * 3, dtype=float)
    cov = interval_coverage_quantiles(API_LEVELS, q, [3.0, 7.0, 8.0])
    assert cov == {0.5: pytest.approx(0.0), 0.8: pytest.approx(2 / 3), 0.9: 1.0}
    assert interval_coverage_quantiles(API_LEVELS, q, [3.0, 7.0, 8.0], levels=[0.8]) == {
        0.8: pytest.approx(2 / 3)
    }


# ---------------------------------------------------------------------------------------------
# Tables


def calibrated_table(rng, patients, weeks, *, spread_after=None):
    """A table of integer forecasts at horizons 1..weeks (spread 0.5 after week spread_after)."""
    pid = np.repeat(np.arange(patients), weeks)
    week = np.tile(np.arange(1, weeks + 1), patients)
    draws, y = integer_forecasts(rng, patients * weeks, 500)
    if spread_after is not None:
        late = week > spread_after
        narrow, y_late = integer_forecasts(rng, int(late.sum()), 500, spread=0.5)
        draws[late], y[late] = narrow, y_late
    return pid, week, y, draws


def test_score_table_covers_the_nominal_share_on_a_calibrated_table():
    pid, week, y, draws = calibrated_table(np.random.default_rng(17), 300, 26)
    report = score_table(pid, week, y, draws)
    assert report.source == "draws" and report.levels == (0.5, 0.8, 0.95)
    overall = report.overall
    assert overall.n == 300 * 26 and overall.n_patients == 300
    for level in report.levels:
        assert overall.coverage[level] == pytest.approx(level, abs=0.02)
        assert 0 < overall.coverage_se[level] < 0.02
    assert overall.mean_crps == pytest.approx(crps_ensemble(draws, y).mean())
    assert overall.pit is not None and overall.pit.p_value > 0.001


def test_score_table_shows_an_overconfident_table_below_nominal():
    rng = np.random.default_rng(18)
    draws, y = integer_forecasts(rng, 3000, 500, spread=0.6)
    report = score_table(np.arange(3000) % 100, np.ones(3000), y, draws)
    assert report.overall.coverage[0.8] < 0.7
    assert report.overall.coverage[0.5] < 0.4


def test_windows_break_scores_down_by_horizon():
    # Calibrated in weeks 1-11, too narrow from week 12 on.
    pid, week, y, draws = calibrated_table(np.random.default_rng(19), 200, 26, spread_after=11)
    report = score_table(pid, week, y, draws)
    early, late = report.windows
    assert (early.label, late.label) == ("weeks 1-4", "weeks 12-26")
    assert early.window == Window(1, 4) and report.window("weeks 12-26") is late
    assert (early.n, late.n, report.overall.n) == (200 * 4, 200 * 15, 200 * 26)
    assert early.coverage[0.8] == pytest.approx(0.8, abs=0.04)
    assert late.coverage[0.8] < 0.7
    assert report.overall.coverage[0.8] > late.coverage[0.8]
    rows = report.rows()
    assert [r["scope"] for r in rows] == ["all", "weeks 1-4", "weeks 12-26"]
    assert rows[2]["coverage_80"] == late.coverage[0.8]
    assert {"n", "mean_crps", "crps_se", "coverage_95_se", "pit_p_value"} <= set(rows[0])


def test_week_k_is_the_horizon_interval_k_minus_1_to_k():
    horizons = np.array([0.5, 1.0, 4.0, 4.2, 11.0, 11.5, 12.0, 26.0, 26.5])
    n = horizons.size
    draws, y = np.tile(np.arange(10.0), (n, 1)), np.full(n, 4.0)
    report = score_table(np.zeros(n), np.zeros(n), y, draws, horizon=horizons)
    early, late = report.windows
    assert (early.n, late.n, report.overall.n) == (3, 3, 9)  # 0.5, 1, 4 | 11.5, 12, 26
    assert early.n_patients == 1 and math.isnan(early.crps_se)  # one patient: no clustered SE


def test_an_empty_window_has_no_rows_and_nan_scores():
    draws, y = np.tile(np.arange(10.0), (4, 1)), np.full(4, 4.0)
    report = score_table(["a", "a", "b", "b"], [1, 2, 3, 4], y, draws)
    late = report.window("weeks 12-26")
    assert late.n == 0 and late.pit is None
    assert math.isnan(late.mean_crps) and math.isnan(late.coverage[0.8])
    with pytest.raises(KeyError):
        report.window("weeks 5-8")


def test_score_table_from_quantiles():
    rng = np.random.default_rng(20)
    draws, y = integer_forecasts(rng, 2000, 1000)
    q = np.quantile(draws, API_LEVELS, axis=1, method="inverted_cdf").T
    week = np.tile(np.arange(1, 21), 100)
    report = score_table(
        np.repeat(np.arange(100), 20), week, y, quantiles=q, quantile_levels=API_LEVELS
    )
    assert report.source == "quantiles" and report.levels == (0.5, 0.8, 0.9)
    assert report.overall.pit is None
    assert report.overall.mean_crps == pytest.approx(crps_ensemble(draws, y).mean(), rel=0.05)
    # Closed intervals on integer quantiles over-cover (the documented bias).
    assert report.overall.coverage[0.5] > 0.55
    with pytest.raises(
        errors.InvalidInputError, match=r"0\.95 central interval needs the 0\.025 quantile"
    ):
        score_table(np.zeros(2000), week, y, quantiles=q, quantile_levels=API_LEVELS, levels=[0.95])


def test_default_windows_are_weeks_1_4_and_12_26():
    assert (Window(1, 4), Window(12, 26)) == DEFAULT_WINDOWS


# ---------------------------------------------------------------------------------------------
# Refusals


GOOD = np.tile(np.arange(5.0), (3, 1))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: crps_ensemble([[1.0, np.nan]], [1.0]), "NaN"),
        (lambda: crps_ensemble(GOOD, [1.0, np.inf, 2.0]), "NaN or infinite"),
        (lambda: crps_ensemble(GOOD, [1.0, 2.0]), "3 forecasts"),
        (lambda: crps_ensemble(np.zeros((0, 5)), np.zeros(0)), "empty"),
        (lambda: crps_ensemble(np.zeros((3, 0)), np.zeros(3)), "empty"),
        (lambda: crps_ensemble([1.0, 2.0], [1.0, 2.0]), "2 dimension"),
        (lambda: crps_ensemble([["a", "b"]], [1.0]), "numeric"),
        (lambda: crps_ensemble([[1.0]], [1.0], fair=True), "at least 2 draws"),
        (lambda: pit(GOOD, [1.0, 2.0, np.nan]), "NaN"),
        (lambda: interval_coverage(GOOD, [1.0, 2.0, 3.0], levels=[1.0]), "between 0 and 1"),
        (lambda: crps_quantiles([0.9, 0.1], [[1.0, 2.0]], [1.0]), "increasing"),
        (lambda: crps_quantiles([0.0, 0.5], [[1.0, 2.0]], [1.0]), "between 0 and 1"),
        (lambda: crps_quantiles([0.1, 0.9], [[2.0, 1.0]], [1.0]), "crossing"),
        (lambda: crps_quantiles([0.1, 0.5, 0.9], [[1.0, 2.0]], [1.0]), "3 levels"),
        (
            lambda: interval_coverage_quantiles(API_LEVELS, [range(7)], [1.0], levels=[0.95]),
            r"needs the 0\.025 quantile",
        ),
        (lambda: pit_histogram([0.2, 1.5]), r"\[0, 1\]"),
        (lambda: pit_histogram([0.2, 0.5], bins=1), "2 bins"),
        (lambda: score_table([1, 2, 3], [1, 2, 3], [1.0, 2.0, 3.0]), "either samples"),
        (lambda: score_table([1, 2], [1, 2, 3], [1.0, 2.0, 3.0], GOOD), "patient must"),
        (lambda: score_table([1, 2, 3], [1, 0, 3], [1.0, 2.0, 3.0], GOOD), "> 0 weeks"),
        (lambda: score_table([1, 2, 3], [1, 2, np.nan], [1.0, 2.0, 3.0], GOOD), "time"),
        (lambda: score_table([], [], [], np.zeros((0, 3))), "empty"),
        (lambda: score_table([1, "a", None], [1, 2, 3], [1.0, 2.0, 3.0], GOOD), "one comparable"),
        (lambda: score_table([1, 2, 3], [1, 2, 3], [1.0, 2, 3], quantiles=GOOD), "quantile_levels"),
        (lambda: Window(0, 4), "first_week"),
        (lambda: Window(5, 4), "first_week"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(call, match):
    with pytest.raises(errors.InvalidInputError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError)
    clone = pickle.loads(pickle.dumps(info.value))
    assert type(clone) is type(info.value) and str(clone) == str(info.value)


def test_errors_do_not_echo_values():
    with pytest.raises(errors.InvalidInputError) as info:
        crps_ensemble([[1.0, 2.0]], [123456.0, 654321.0])
    assert "123456" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# The SDK's DataFrame helper


def api_forecast(as_of_day: int, weeks: int, offset: int) -> schemas.ForecastOut:
    q = [[max(0, v + offset) for v in (5, 6, 8, 10, 12, 14, 15)] for _ in range(weeks)]
    return schemas.ForecastOut(
        scenario="as now", weeks=list(range(1, weeks + 1)), quantile_levels=list(API_LEVELS),
        phq9_quantiles=q, gad7_quantiles=[[3] * 7] * weeks, severity_quantiles=[[9.5] * 7] * weeks,
        response={}, remission={}, deterioration={}, median_weeks_to_remission=None,
        model_version="m", as_of_day=as_of_day, last_seq=3, days_since={}, particles=100,
    )  # fmt: skip


def test_score_forecasts_on_draws_equals_score_table():
    pd = pytest.importorskip("pandas")
    from twin.client.frames import score_forecasts, scores_frame

    rng = np.random.default_rng(21)
    pid, week, y, draws = calibrated_table(rng, 6, 14)
    m = draws.shape[1]
    forecasts = pd.DataFrame(
        {
            "patient": np.repeat([f"p{p}" for p in pid], m),
            "week": np.repeat(week, m),
            "draw": np.tile(np.arange(m), pid.size),
            "phq9": draws.ravel().astype(int),
        }
    )
    observed = pd.DataFrame({"patient": [f"p{p}" for p in pid], "week": week, "phq9": y})
    observed = pd.concat(  # a missing value and a time with no forecast are not scored
        [observed, pd.DataFrame({"patient": ["p0", "p1"], "week": [3, 40], "phq9": [None, 9]})]
    )
    report = score_forecasts(forecasts.sample(frac=1.0, random_state=1), observed)
    direct = score_table(pid, week, y, draws)
    assert scores_frame(report).equals(scores_frame(direct))
    shuffled = score_forecasts(forecasts, observed.sample(frac=1.0, random_state=2))
    assert shuffled.rows() == report.rows()
    frame = scores_frame(report)
    assert list(frame["scope"]) == ["all", "weeks 1-4", "weeks 12-26"]
    assert frame.loc[0, "n"] == 6 * 14 and frame.loc[2, "n"] == 6 * 3


def test_score_forecasts_on_the_sdk_forecasts_joined_by_day():
    pd = pytest.importorskip("pandas")
    from twin.client.frames import forecasts_frame, score_forecasts, scores_frame

    fc = forecasts_frame({"a": api_forecast(49, 26, 0), "b": api_forecast(14, 26, 4)})
    assert list(fc.columns) == [
        "patient", "as_of_day", "as_of", "week", "day", "time", "quantile", "phq9", "gad7",
        "severity",
    ]  # fmt: skip
    assert fc.query("patient == 'b' and week == 2")["day"].iloc[0] == 28
    # Observations as the change feed gives them: day on the twin's clock, within the day.
    weeks = range(1, 27)
    observed = pd.DataFrame(
        {
            "patient": ["a"] * 26 + ["b"] * 26,
            "day": [49 + 7 * w + 0.3 for w in weeks] + [14 + 7 * w + 0.3 for w in weeks],
            "total": [10] * 26 + [30 - w for w in range(1, 27)],
        }
    )  # fmt: skip
    report = score_forecasts(fc, observed, time="day", tolerance=0.5, observed_score="total")
    assert report.source == "quantiles" and report.levels == (0.5, 0.8, 0.9)
    assert report.overall.n == 52 and report.window("weeks 1-4").n == 8
    a = np.full(26, 10.0)
    b = np.array([30.0 - w for w in range(1, 27)])
    q_a = np.tile([5, 6, 8, 10, 12, 14, 15], (26, 1))
    assert report.overall.mean_crps == pytest.approx(
        np.mean(np.r_[crps_quantiles(API_LEVELS, q_a, a), crps_quantiles(API_LEVELS, q_a + 4, b)])
    )
    late = report.window("weeks 12-26")  # b's observations 18..4 against [10, 18]
    b_late = b[11:]
    assert late.coverage[0.8] == pytest.approx((15 + np.sum((b_late >= 10) & (b_late <= 18))) / 30)
    assert scores_frame(report).shape[0] == 3
    with pytest.raises(errors.InvalidInputError, match="no observation matches"):
        score_forecasts(fc, observed, time="day", observed_score="total")  # exact join: none


def test_score_forecasts_refuses_unusable_tables():
    pd = pytest.importorskip("pandas")
    from twin.client.frames import score_forecasts

    draws = pd.DataFrame(
        {"patient": ["a"] * 3, "week": [1, 1, 2], "draw": [0, 1, 0], "phq9": [3, 4, 5]}
    )
    observed = pd.DataFrame({"patient": ["a", "a"], "week": [1, 2], "phq9": [3, 4]})
    with pytest.raises(errors.InvalidInputError, match="same draw values"):
        score_forecasts(draws, observed)
    with pytest.raises(errors.InvalidInputError, match="'quantile' column"):
        score_forecasts(draws.drop(columns="draw"), observed)
    with pytest.raises(errors.InvalidInputError, match="observed has no column"):
        score_forecasts(draws, observed.rename(columns={"phq9": "total"}))
    with pytest.raises(errors.InvalidInputError, match="repeats a draw"):
        score_forecasts(pd.concat([draws, draws]), observed)


def test_score_forecasts_keeps_several_forecasts_of_one_patient_apart():
    pd = pytest.importorskip("pandas")
    from twin.client.frames import forecasts_frame, score_forecasts

    fc = forecasts_frame([("a", api_forecast(0, 8, 0)), ("a", api_forecast(28, 8, 2))])
    observed = pd.DataFrame({"patient": "a", "day": 7.0 * np.arange(1, 13), "phq9": 10})
    report = score_forecasts(fc, observed, time="day")
    # Days 7..56 from the first forecast, days 35..84 from the second (35..56 scored twice).
    assert report.overall.n == 16 and report.window("weeks 1-4").n == 8
    first = crps_quantiles(API_LEVELS, np.tile([5, 6, 8, 10, 12, 14, 15], (8, 1)), np.full(8, 10))
    second = crps_quantiles(API_LEVELS, np.tile([7, 8, 10, 12, 14, 16, 17], (8, 1)), np.full(8, 10))
    assert report.overall.mean_crps == pytest.approx(np.r_[first, second].mean())


@pytest.mark.parametrize("fair", [False, True])
def test_ensemble_crps_agrees_with_the_scoringrules_library(fair):
    # scoringrules (a maintained library, here only for testing: it needs scipy, which the
    # SDK's scoring must not) is the independent reference for the sorted-sample identity.
    rng = np.random.default_rng(11)
    samples, observed = rng.gamma(2.0, 3.0, (200, 41)), rng.gamma(2.0, 3.0, 200)
    expected = sr.crps_ensemble(observed, samples, estimator="fair" if fair else "nrg")
    np.testing.assert_allclose(
        scoring.crps_ensemble(samples, observed, fair=fair), expected, rtol=1e-12
    )
