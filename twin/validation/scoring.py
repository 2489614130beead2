"""Proper scores for probabilistic forecasts: CRPS, central-interval coverage and the PIT.

Everything here is NumPy only, so the SDK can score forecasts without the model's dependencies.
A *forecast* is a predictive distribution for one observation, given either as an ensemble of
``m`` draws (the twin's particles pushed forward) or as a few predictive quantiles (what the
API's forecast route returns). Arrays of forecasts are stacked along axis 0: draws have shape
``(n_forecasts, m)``, quantiles ``(n_forecasts, K)``, observations ``(n_forecasts,)``. Scores
are in the unit of the observation (PHQ-9 points for PHQ-9).

- :func:`crps_ensemble`: the continuous ranked probability score of a draw forecast, exactly,
  in O(m log m) per forecast.
- :func:`crps_quantiles`: the CRPS approximated from predictive quantiles (pinball losses).
- :func:`pit`: the probability integral transform, randomised for integer scores.
- :func:`interval_coverage`, :func:`interval_coverage_quantiles`: the share of observations
  inside the central 50/80/95% intervals.
- :func:`pit_histogram`: the PIT histogram with a chi-square flatness statistic.
- :func:`score_table`: all of it on a longitudinal table, overall and per horizon window
  (weeks 1-4 and weeks 12-26 by default), as a :class:`ScoreReport`.

Inputs that contain NaN or infinity, arrays whose shapes disagree and empty arrays are refused
with :class:`twin.errors.InvalidInputError`; messages name the argument, never the values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from twin import errors

__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_WINDOWS",
    "PitHistogram",
    "ScoreReport",
    "Scores",
    "Window",
    "central_levels",
    "crps_ensemble",
    "crps_quantiles",
    "interval_coverage",
    "interval_coverage_quantiles",
    "pit",
    "pit_coverage",
    "pit_histogram",
    "score_table",
]

F64 = npt.NDArray[np.float64]
#: A seed, a generator, or ``None`` for the fixed default seed 0.
Seed = np.random.Generator | int | None

#: Central interval levels reported by default (50%, 80% and 95% intervals).
DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.95)

# Two quantile levels are "the same" within this distance (1 - 0.9 is not exactly 0.1).
_LEVEL_TOL = 1e-9


# ---------------------------------------------------------------------------------------------
# Validation


def _fail(message: str) -> errors.InvalidInputError:
    return errors.InvalidInputError(message)


def _finite(name: str, values: npt.ArrayLike, ndim: int) -> F64:
    """``values`` as a float64 array of ``ndim`` dimensions, non-empty and finite."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail(f"{name} must be numeric") from exc
    if a.ndim != ndim:
        raise _fail(f"{name} must have {ndim} dimension(s), got {a.ndim}")
    if a.size == 0:
        raise _fail(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        raise _fail(f"{name} contains NaN or infinite values")
    return a


def _forecasts(name: str, forecast: npt.ArrayLike, observed: npt.ArrayLike) -> tuple[F64, F64]:
    """Validated ``(forecast (n, m), observed (n,))``."""
    f = _finite(name, forecast, 2)
    y = _finite("observed", observed, 1)
    if f.shape[0] != y.shape[0]:
        raise _fail(
            f"{name} has {f.shape[0]} forecasts (rows) but observed has {y.shape[0]} values"
        )
    return f, y


def _quantile_levels(levels: npt.ArrayLike) -> F64:
    tau = _finite("quantile_levels", levels, 1)
    if np.any(tau <= 0.0) or np.any(tau >= 1.0):
        raise _fail("quantile_levels must lie strictly between 0 and 1")
    if np.any(np.diff(tau) <= 0.0):
        raise _fail("quantile_levels must be strictly increasing")
    return tau


def _quantile_forecasts(
    levels: npt.ArrayLike, quantiles: npt.ArrayLike, observed: npt.ArrayLike
) -> tuple[F64, F64, F64]:
    tau = _quantile_levels(levels)
    q, y = _forecasts("quantiles", quantiles, observed)
    if q.shape[1] != tau.shape[0]:
        raise _fail(f"quantiles has {q.shape[1]} columns but there are {tau.shape[0]} levels")
    if np.any(np.diff(q, axis=1) < 0.0):
        raise _fail("quantiles must be non-decreasing along each row (no crossing quantiles)")
    return tau, q, y


def _interval_levels(levels: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(level) for level in levels)
    if not out:
        raise _fail("levels is empty")
    if not all(0.0 < level < 1.0 for level in out):
        raise _fail("interval levels must lie strictly between 0 and 1")
    return out


def _generator(rng: Seed) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(0 if rng is None else rng)


# ---------------------------------------------------------------------------------------------
# CRPS


def crps_ensemble(samples: npt.ArrayLike, observed: npt.ArrayLike, *, fair: bool = False) -> F64:
    """CRPS of draw (ensemble) forecasts, exactly, in O(m log m) per forecast.

    The CRPS of a predictive distribution F at the observation y is
    ``∫ (F(x) - 1{x ≥ y})² dx``, in its energy form ``E|X - y| - ½ E|X - X'|`` with X, X'
    independent draws of F. For the empirical distribution of m draws sorted as
    ``x₍₁₎ ≤ … ≤ x₍ₘ₎`` the double sum collapses (the sorted-sample identity)::

        E|X - X'| = (2 / m²) Σᵢ (2i - m - 1) x₍ᵢ₎

    so the score costs one sort instead of m² differences. Lower is better; 0 only for a
    point forecast that is exactly right. CRPS generalises the absolute error: for a single
    draw it is ``|x - y|``.

    Args:
        samples: Draws, shape (n_forecasts, m), in the unit of the observation.
        observed: Observations, shape (n_forecasts,), same unit.
        fair: Use ``m(m - 1)`` instead of ``m²`` in the spread term: the unbiased estimate of
            the CRPS of the distribution the draws come from (needs m ≥ 2), instead of the
            CRPS of the empirical distribution of the draws. The two differ by
            ``E|X - X'| / (2m)``, negligible for hundreds of draws.

    Returns:
        CRPS per forecast, shape (n_forecasts,), in the unit of the observation.

    Raises:
        InvalidInputError: NaN or infinite values, mismatched shapes, empty input, or
            ``fair`` with a single draw.
    """
    x, y = _forecasts("samples", samples, observed)
    m = x.shape[1]
    if fair and m < 2:
        raise _fail("the fair CRPS needs at least 2 draws per forecast")
    x = np.sort(x, axis=1)
    accuracy = np.mean(np.abs(x - y[:, None]), axis=1)
    weights = 2.0 * np.arange(1, m + 1, dtype=np.float64) - m - 1.0
    pairs = m * (m - 1) if fair else m * m
    spread = 2.0 * (x @ weights) / pairs  # E|X - X'|
    return np.asarray(accuracy - 0.5 * spread, dtype=np.float64)


def _quantile_weights(tau: F64) -> F64:
    """Width of each level's cell of (0, 1), cells split halfway between adjacent levels."""
    edges = np.concatenate(([0.0], 0.5 * (tau[1:] + tau[:-1]), [1.0]))
    return np.diff(edges)


def crps_quantiles(levels: npt.ArrayLike, quantiles: npt.ArrayLike, observed: npt.ArrayLike) -> F64:
    """CRPS approximated from predictive quantiles through the quantile (pinball) score.

    The CRPS is twice the pinball loss integrated over all levels,
    ``CRPS(F, y) = 2 ∫₀¹ QS_τ(F⁻¹(τ), y) dτ`` with ``QS_τ(q, y) = (1{y < q} - τ)(q - y)``.
    With K levels the integral is replaced by the midpoint rule::

        CRPS ≈ 2 Σₖ wₖ QS_τₖ(qₖ, y)

    where ``wₖ`` is the width of the cell of (0, 1) closest to ``τₖ`` (cells split halfway
    between adjacent levels, the outer ones reaching 0 and 1). For levels evenly spread in
    (0, 1), ``τₖ = (k - ½)/K``, every ``wₖ = 1/K`` and this is ``2 · meanₖ QS_τₖ``. The
    approximation converges to the CRPS as the levels fill (0, 1) evenly (99 levels are within
    about 1% for smooth forecasts); with few or uneven levels (the API's seven levels 0.05 …
    0.95) it is coarse: the tails beyond the outermost levels are represented by those levels,
    and it is an estimate for comparing forecasts scored the same way, not an exact CRPS.

    Args:
        levels: Quantile levels τ, shape (K,), strictly increasing in (0, 1).
        quantiles: Predictive quantiles, shape (n_forecasts, K), non-decreasing along rows,
            in the unit of the observation.
        observed: Observations, shape (n_forecasts,).

    Returns:
        Approximate CRPS per forecast, shape (n_forecasts,).

    Raises:
        InvalidInputError: NaN or infinite values, mismatched shapes, empty input, levels
            outside (0, 1) or not increasing, crossing quantiles.
    """
    tau, q, y = _quantile_forecasts(levels, quantiles, observed)
    below = (y[:, None] < q).astype(np.float64)
    pinball = (below - tau[None, :]) * (q - y[:, None])
    return np.asarray(2.0 * (pinball @ _quantile_weights(tau)), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# PIT and coverage


def pit(
    samples: npt.ArrayLike,
    observed: npt.ArrayLike,
    *,
    rng: Seed = None,
    discrete: bool = True,
) -> F64:
    """Probability integral transform of each observation under its draw forecast.

    With F the empirical CDF of the draws, ``F(y) = #{xᵢ ≤ y}/m`` and ``F(y⁻) = #{xᵢ < y}/m``.
    For a continuous score the PIT is ``u = F(y)``. For an integer score (PHQ-9, GAD-7) F
    jumps at every integer and ``F(y)`` alone would pile PITs on the jumps, so the randomised
    PIT is used::

        u = F(y - 1) + V · (F(y) - F(y - 1)),   V ~ U(0, 1)

    (``F(y - 1) = F(y⁻)`` on integers). If the observations come from the forecast
    distributions, u is exactly U(0, 1), ties included; a U-shaped histogram means forecasts
    too narrow, a hump too wide, a slope bias.

    Args:
        samples: Draws, shape (n_forecasts, m).
        observed: Observations, shape (n_forecasts,).
        rng: Generator or seed for V. ``None`` means seed 0, so scoring the same data twice
            gives the same PITs; pass other seeds to see the spread the randomisation adds.
        discrete: Randomise within ties (integer scores). ``False``: ``u = F(y)``, no draws
            from ``rng``.

    Returns:
        PIT values in [0, 1], shape (n_forecasts,).

    Raises:
        InvalidInputError: NaN or infinite values, mismatched shapes or empty input.
    """
    x, y = _forecasts("samples", samples, observed)
    at_or_below = np.mean(x <= y[:, None], axis=1)
    if not discrete:
        return np.asarray(at_or_below, dtype=np.float64)
    below = np.mean(x < y[:, None], axis=1)
    v = _generator(rng).random(y.shape[0])
    return np.asarray(below + v * (at_or_below - below), dtype=np.float64)


def pit_coverage(u: npt.ArrayLike, *, levels: Sequence[float] = DEFAULT_LEVELS) -> F64:
    """Per forecast, whether the observation is inside each central interval, from its PIT.

    The central interval of level L runs from the ``(1 - L)/2`` to the ``(1 + L)/2``
    quantile, so an observation is covered when ``|u - ½| ≤ L/2``. With the randomised PIT,
    an observation that falls exactly on an interval bound of an integer score counts as
    inside only with the probability the forecast puts inside, so a calibrated forecast covers
    L of the observations instead of over-covering.

    Args:
        u: PIT values, shape (n_forecasts,), in [0, 1].
        levels: Interval levels L in (0, 1).

    Returns:
        1.0 (covered) or 0.0, shape (n_forecasts, len(levels)).

    Raises:
        InvalidInputError: PITs outside [0, 1], NaN, or empty input.
    """
    values = _pit_values(u)
    half = 0.5 * np.asarray(_interval_levels(levels), dtype=np.float64)
    return (np.abs(values[:, None] - 0.5) <= half[None, :]).astype(np.float64)


def interval_coverage(
    samples: npt.ArrayLike,
    observed: npt.ArrayLike,
    *,
    levels: Sequence[float] = DEFAULT_LEVELS,
    rng: Seed = None,
    discrete: bool = True,
) -> dict[float, float]:
    """Share of observations inside the central intervals of their draw forecasts.

    Uses the (randomised, for ``discrete``) PIT of :func:`pit` and the rule of
    :func:`pit_coverage`: covered at level L when ``|u - ½| ≤ L/2``. A calibrated forecast
    covers about L; less means intervals too narrow (overconfident).

    Args:
        samples: Draws, shape (n_forecasts, m).
        observed: Observations, shape (n_forecasts,).
        levels: Interval levels L, e.g. 0.8 for the 10%-90% interval.
        rng: Generator or seed for the randomised PIT (``None``: seed 0).
        discrete: Integer score (randomise within ties).

    Returns:
        ``{L: share covered}``, shares in [0, 1].
    """
    covered = pit_coverage(pit(samples, observed, rng=rng, discrete=discrete), levels=levels)
    return {level: float(c) for level, c in zip(levels, covered.mean(axis=0), strict=True)}


def central_levels(quantile_levels: Sequence[float]) -> tuple[float, ...]:
    """The central interval levels that a set of quantile levels defines, increasing.

    A pair τ < ½ and 1 - τ defines the central interval of level ``1 - 2τ``; for the API's
    levels (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95) these are 0.5, 0.8 and 0.9.
    """
    tau = _quantile_levels(quantile_levels)
    out = [
        round(1.0 - 2.0 * float(t), 12)
        for t in tau
        if t < 0.5 and np.any(np.abs(tau - (1.0 - t)) <= _LEVEL_TOL)
    ]
    return tuple(sorted(out))


def _level_index(tau: F64, target: float, level: float) -> int:
    hit = np.flatnonzero(np.abs(tau - target) <= _LEVEL_TOL)
    if hit.size == 0:
        raise _fail(
            f"the {level:g} central interval needs the {target:g} quantile, which is not given"
        )
    return int(hit[0])


def interval_coverage_quantiles(
    quantile_levels: npt.ArrayLike,
    quantiles: npt.ArrayLike,
    observed: npt.ArrayLike,
    *,
    levels: Sequence[float] | None = None,
) -> dict[float, float]:
    """Share of observations inside central intervals read off predictive quantiles.

    The interval of level L is ``[q_(1-L)/2, q_(1+L)/2]``, closed: an observation on a bound
    counts as covered. For an integer score with integer quantiles (the API's PHQ-9
    quantiles) this counts all the probability the forecast puts on each bound as inside, so
    a calibrated forecast shows coverage *above* L (by up to the mass at the two bounds). The
    draws-based :func:`interval_coverage` does not have this bias; prefer it when draws are at
    hand.

    Args:
        quantile_levels: Levels τ, shape (K,), strictly increasing in (0, 1).
        quantiles: Predictive quantiles, shape (n_forecasts, K).
        observed: Observations, shape (n_forecasts,).
        levels: Interval levels; each needs both its quantiles among ``quantile_levels``.
            ``None``: every level :func:`central_levels` finds.

    Returns:
        ``{L: share covered}``.

    Raises:
        InvalidInputError: Bad arrays, or a level whose bounding quantiles are not given.
    """
    tau, q, y = _quantile_forecasts(quantile_levels, quantiles, observed)
    chosen = central_levels(tau.tolist()) if levels is None else _interval_levels(levels)
    return {level: float(np.mean(_quantile_covered(tau, q, y, level))) for level in chosen}


def _quantile_covered(tau: F64, q: F64, y: F64, level: float) -> F64:
    lo = _level_index(tau, 0.5 * (1.0 - level), level)
    hi = _level_index(tau, 0.5 * (1.0 + level), level)
    return ((q[:, lo] <= y) & (y <= q[:, hi])).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# PIT histogram


def _pit_values(u: npt.ArrayLike) -> F64:
    values = _finite("pit", u, 1)
    if np.any(values < 0.0) or np.any(values > 1.0):
        raise _fail("PIT values must lie in [0, 1]")
    return values


def _chi2_sf(x: float, dof: int) -> float:
    """P(χ²_dof ≥ x): the regularised upper incomplete gamma ``Q(dof/2, x/2)``.

    Series for ``P(a, z)`` below ``z < a + 1`` and Lentz's continued fraction for ``Q(a, z)``
    above (Numerical Recipes §6.2), both to double precision.
    """
    if x <= 0.0:
        return 1.0
    a, z = 0.5 * dof, 0.5 * x
    log_prefactor = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1.0:
        term = total = 1.0 / a
        n = a
        for _ in range(10_000):
            n += 1.0
            term *= z / n
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefactor))
    tiny = 1e-300
    b = z + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(1.0, math.exp(log_prefactor) * h)


@dataclass(frozen=True, slots=True)
class PitHistogram:
    """A PIT histogram on equal bins of [0, 1] and how far it is from flat.

    Attributes:
        edges: Bin edges, shape (bins + 1,), from 0 to 1.
        counts: PITs per bin, shape (bins,) (the last bin includes 1).
        frequencies: ``counts / n``, shape (bins,); flat is ``1/bins`` each.
        chi2: Pearson's statistic against the uniform, ``Σ (countₖ - n/bins)² / (n/bins)``.
        dof: Its degrees of freedom, ``bins - 1``.
        p_value: ``P(χ²_dof ≥ chi2)``. Valid for independent PITs; PITs of one patient at
            several horizons are positively correlated, which makes this p-value too small,
            so read it as a descriptive flatness measure, not a test at a nominal size.
        max_deviation: ``maxₖ |frequencyₖ - 1/bins|``, in probability units.
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    frequencies: tuple[float, ...]
    chi2: float
    dof: int
    p_value: float
    max_deviation: float


def pit_histogram(u: npt.ArrayLike, bins: int = 10) -> PitHistogram:
    """Histogram of PIT values with a chi-square statistic of flatness.

    Args:
        u: PIT values, shape (n,), in [0, 1] (from :func:`pit`).
        bins: Number of equal-width bins (≥ 2).

    Returns:
        The :class:`PitHistogram`.

    Raises:
        InvalidInputError: Values outside [0, 1], NaN, empty input, or fewer than 2 bins.
    """
    values = _pit_values(u)
    if bins < 2:
        raise _fail("a PIT histogram needs at least 2 bins")
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    n = values.shape[0]
    expected = n / bins
    chi2 = float(np.sum((counts - expected) ** 2) / expected)
    frequencies = counts / n
    return PitHistogram(
        edges=tuple(float(e) for e in edges),
        counts=tuple(int(c) for c in counts),
        frequencies=tuple(float(f) for f in frequencies),
        chi2=chi2,
        dof=bins - 1,
        p_value=_chi2_sf(chi2, bins - 1),
        max_deviation=float(np.max(np.abs(frequencies - 1.0 / bins))),
    )


# ---------------------------------------------------------------------------------------------
# Tables


@dataclass(frozen=True, slots=True)
class Window:
    """A range of forecast horizons, whole weeks ``first_week`` to ``last_week`` inclusive.

    Week k is the horizon interval ``(k - 1, k]`` weeks after the forecast starts, so the
    window holds horizons h with ``first_week - 1 < h ≤ last_week`` (day 3 is in week 1).

    Attributes:
        first_week: First week, ≥ 1.
        last_week: Last week, ≥ ``first_week``.
    """

    first_week: int
    last_week: int

    def __post_init__(self) -> None:
        if not 1 <= self.first_week <= self.last_week:
            raise _fail("a window needs 1 <= first_week <= last_week")

    @property
    def label(self) -> str:
        """``"weeks 1-4"``, or ``"week 3"`` for a single week."""
        if self.first_week == self.last_week:
            return f"week {self.first_week}"
        return f"weeks {self.first_week}-{self.last_week}"

    def contains(self, horizon_weeks: F64) -> npt.NDArray[np.bool_]:
        """Whether each horizon (weeks, shape (n,)) falls in the window."""
        return (horizon_weeks > self.first_week - 1) & (horizon_weeks <= self.last_week)


#: Weeks 1-4 (the near term) and weeks 12-26 (the end of an acute course and beyond).
DEFAULT_WINDOWS: tuple[Window, ...] = (Window(1, 4), Window(12, 26))


@dataclass(frozen=True, slots=True)
class Scores:
    """The scores of one set of forecasts (all rows, or one horizon window).

    Standard errors treat patients as clusters: a patient's forecasts at several horizons are
    correlated, so the SE is ``√(G/(G-1) · Σ_g (Σ_{i∈g} (xᵢ - x̄))²) / n`` over the G patients
    (NaN with fewer than 2 patients). A window without rows has ``n == 0`` and NaN scores.

    Attributes:
        label: ``"all"`` or the window's label.
        window: The window, ``None`` for all rows.
        n: Forecast-observation pairs.
        n_patients: Distinct patients among them.
        mean_crps: Mean CRPS, in the unit of the observation (lower is better).
        crps_se: Its patient-clustered standard error.
        coverage: ``{L: share of observations inside the central L interval}``.
        coverage_se: ``{L: its patient-clustered standard error}``.
        pit: The PIT histogram; ``None`` when scored from quantiles or without rows.
    """

    label: str
    window: Window | None
    n: int
    n_patients: int
    mean_crps: float
    crps_se: float
    coverage: Mapping[float, float]
    coverage_se: Mapping[float, float]
    pit: PitHistogram | None

    def row(self) -> dict[str, float | int | str]:
        """The scores as one flat record (``coverage_80``, ``coverage_80_se``, ``pit_chi2``…)."""
        out: dict[str, float | int | str] = {
            "scope": self.label,
            "first_week": self.window.first_week if self.window else math.nan,
            "last_week": self.window.last_week if self.window else math.nan,
            "n": self.n,
            "n_patients": self.n_patients,
            "mean_crps": self.mean_crps,
            "crps_se": self.crps_se,
        }
        for level, value in self.coverage.items():
            name = f"coverage_{round(100.0 * level, 6):g}"
            out[name] = value
            out[f"{name}_se"] = self.coverage_se[level]
        if self.pit is not None:
            out["pit_chi2"] = self.pit.chi2
            out["pit_p_value"] = self.pit.p_value
            out["pit_max_deviation"] = self.pit.max_deviation
        return out


@dataclass(frozen=True, slots=True)
class ScoreReport:
    """Scores of a forecast table, overall and per horizon window.

    Attributes:
        source: ``"draws"`` (exact CRPS, randomised-PIT coverage, PIT histogram) or
            ``"quantiles"`` (quantile-approximated CRPS, closed-interval coverage, no PIT).
        levels: The central interval levels reported.
        overall: Scores of every row, including rows outside every window.
        windows: Scores per window, in the order the windows were given.
    """

    source: Literal["draws", "quantiles"]
    levels: tuple[float, ...]
    overall: Scores
    windows: tuple[Scores, ...]

    def window(self, label: str) -> Scores:
        """The scores of the window labelled ``label`` (e.g. ``"weeks 12-26"``).

        Raises:
            KeyError: No window has that label.
        """
        for scores in self.windows:
            if scores.label == label:
                return scores
        raise KeyError(label)

    def rows(self) -> list[dict[str, float | int | str]]:
        """One flat record per scope (all rows first, then each window), for a table."""
        return [self.overall.row(), *(w.row() for w in self.windows)]


def _clustered(values: F64, groups: npt.NDArray[np.intp], n_groups: int) -> tuple[float, float]:
    """Mean of ``values`` (shape (n,)) and its SE with ``groups`` (codes) as clusters."""
    mean = float(np.mean(values))
    present = np.unique(groups)
    if present.size < 2:
        return mean, math.nan
    sums = np.bincount(groups, weights=values - mean, minlength=n_groups)
    g = present.size
    return mean, math.sqrt(g / (g - 1) * float(np.sum(sums**2))) / values.shape[0]


@dataclass(frozen=True, slots=True)
class _Scored:
    """Per-row results of a whole table, before they are split by window."""

    crps: F64  # (n,)
    covered: F64  # (n, len(levels)), 1.0 or 0.0
    u: F64 | None  # (n,) PITs, None from quantiles
    groups: npt.NDArray[np.intp]  # (n,) patient codes 0..n_groups - 1
    n_groups: int
    levels: tuple[float, ...]
    bins: int

    def scores(self, label: str, window: Window | None, rows: npt.NDArray[np.bool_]) -> Scores:
        """The :class:`Scores` of the rows selected by the mask ``rows`` (shape (n,))."""
        n = int(np.count_nonzero(rows))
        if n == 0:
            nan = dict.fromkeys(self.levels, math.nan)
            return Scores(label, window, 0, 0, math.nan, math.nan, nan, dict(nan), None)
        g = self.groups[rows]
        mean_crps, crps_se = _clustered(self.crps[rows], g, self.n_groups)
        coverage: dict[float, float] = {}
        coverage_se: dict[float, float] = {}
        for j, level in enumerate(self.levels):
            coverage[level], coverage_se[level] = _clustered(
                self.covered[rows, j], g, self.n_groups
            )
        return Scores(
            label=label,
            window=window,
            n=n,
            n_patients=int(np.unique(g).size),
            mean_crps=mean_crps,
            crps_se=crps_se,
            coverage=coverage,
            coverage_se=coverage_se,
            pit=None if self.u is None else pit_histogram(self.u[rows], self.bins),
        )


def score_table(
    patient: npt.ArrayLike,
    time: npt.ArrayLike,
    observed: npt.ArrayLike,
    samples: npt.ArrayLike | None = None,
    *,
    quantiles: npt.ArrayLike | None = None,
    quantile_levels: npt.ArrayLike | None = None,
    horizon: npt.ArrayLike | None = None,
    windows: Sequence[Window] = DEFAULT_WINDOWS,
    levels: Sequence[float] | None = None,
    rng: Seed = None,
    discrete: bool = True,
    bins: int = 10,
) -> ScoreReport:
    """Score a longitudinal table of forecasts against what was observed.

    Row i is one forecast of one observation: patient ``patient[i]`` observed ``observed[i]``
    at ``time[i]``, and the forecast for it is either ``samples[i]`` (draws) or
    ``quantiles[i]`` at ``quantile_levels``. Rows are scored overall and per horizon window;
    a row whose horizon falls in no window counts only in the overall scores, a row in
    overlapping windows counts in each.

    From draws: exact CRPS (:func:`crps_ensemble`), coverage from the randomised PIT
    (:func:`pit_coverage`) and the PIT histogram. From quantiles: the pinball-approximated
    CRPS (:func:`crps_quantiles`), closed-interval coverage
    (:func:`interval_coverage_quantiles`, biased upwards for integer scores) and no PIT.

    Args:
        patient: Patient of each row, shape (n,), any hashable ids of one type.
        time: Time of each observation, shape (n,). Without ``horizon`` it *is* the horizon,
            in weeks since the forecast started (week k = ``(k - 1, k]``).
        observed: Observed values, shape (n,) (PHQ-9 totals for PHQ-9).
        samples: Forecast draws, shape (n, m).
        quantiles: Instead of ``samples``: predictive quantiles, shape (n, K).
        quantile_levels: The quantiles' levels, shape (K,), with ``quantiles``.
        horizon: Weeks from the start of each row's forecast to its observation, shape (n,),
            > 0; ``None``: ``time``.
        windows: Horizon windows to break the scores down by (default weeks 1-4 and 12-26).
        levels: Central interval levels; ``None``: 0.5, 0.8, 0.95 for draws, every level the
            quantile levels define for quantiles (:func:`central_levels`).
        rng: Generator or seed for the randomised PIT (``None``: seed 0).
        discrete: Integer score: randomise the PIT within ties (draws only).
        bins: PIT histogram bins.

    Returns:
        The :class:`ScoreReport`.

    Raises:
        InvalidInputError: Not exactly one of ``samples`` / ``quantiles``, NaN or infinite
            values, lengths that disagree, empty input, horizons ≤ 0, or interval levels the
            quantiles cannot give.
    """
    if (samples is None) == (quantiles is None):
        raise _fail("give either samples or quantiles (with quantile_levels), not both")
    y = _finite("observed", observed, 1)
    n = y.shape[0]
    t = _finite("time", time, 1)
    h = t if horizon is None else _finite("horizon", horizon, 1)
    ids = np.asarray(patient)
    for name, arr in (("patient", ids), ("time", t), ("horizon", h)):
        if arr.ndim != 1 or arr.shape[0] != n:
            raise _fail(f"{name} must have shape ({n},) like observed")
    if np.any(h <= 0.0):
        raise _fail("horizons must be > 0 weeks")
    try:
        _, groups = np.unique(ids, return_inverse=True)
    except TypeError as exc:  # e.g. ids of mixed types, which cannot be sorted
        raise _fail("patient ids must all be of one comparable type") from exc
    groups = groups.reshape(-1).astype(np.intp)
    n_groups = int(groups.max()) + 1
    if bins < 2:
        raise _fail("a PIT histogram needs at least 2 bins")
    if samples is not None:
        x, _ = _forecasts("samples", samples, y)
        chosen = _interval_levels(DEFAULT_LEVELS if levels is None else levels)
        u = pit(x, y, rng=rng, discrete=discrete)
        scored = _Scored(
            crps=crps_ensemble(x, y),
            covered=pit_coverage(u, levels=chosen),
            u=u,
            groups=groups,
            n_groups=n_groups,
            levels=chosen,
            bins=bins,
        )
    else:
        if quantiles is None or quantile_levels is None:
            raise _fail("quantiles need quantile_levels")
        tau, q, _ = _quantile_forecasts(quantile_levels, quantiles, y)
        chosen = central_levels(tau.tolist()) if levels is None else _interval_levels(levels)
        if not chosen:
            raise _fail("the quantile levels define no central interval")
        covered = [_quantile_covered(tau, q, y, level) for level in chosen]
        scored = _Scored(
            crps=crps_quantiles(tau, q, y),
            covered=np.stack(covered, axis=1),
            u=None,
            groups=groups,
            n_groups=n_groups,
            levels=chosen,
            bins=bins,
        )
    return ScoreReport(
        source="draws" if samples is not None else "quantiles",
        levels=chosen,
        overall=scored.scores("all", None, np.ones(n, np.bool_)),
        windows=tuple(scored.scores(w.label, w, w.contains(h)) for w in windows),
    )
