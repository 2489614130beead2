"""Observation models of ``docs/model.md`` §5: log-likelihoods and generative samplers.

Questionnaires use an interval-censored Gaussian (an ordered probit with unit-spaced cut-points):
P(y = k) = Φ((k + ½ - m)/s) - Φ((k - ½ - m)/s), open at 0 and at the top score, so the mass over
0..top sums to one and nothing falls outside the valid range. EMA uses the same form with
person cut-points. Wearables are Gaussian around person baselines with small loadings on the
standardised severity z_S = (S - μ_well)/5.

Log-likelihoods return float64 arrays of the particles' batch shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = [
    "gaussian_log_prob",
    "ordinal_log_prob",
    "sample_gaussian",
    "sample_ordinal",
    "sample_score",
    "severity_z",
]

F64 = npt.NDArray[np.float64]
ArrayLike = npt.NDArray[np.floating] | float


def _log_interval(lo: npt.NDArray[np.floating], hi: npt.NDArray[np.floating]) -> F64:
    """log(Φ(hi) - Φ(lo)) for lo < hi, accurate in both tails.

    When the interval lies right of zero, Φ(hi) - Φ(lo) = Φ(-lo) - Φ(-hi) avoids subtracting
    two numbers close to one; left of zero, Φ is accurate to ~1e-308 (it is evaluated through
    erfc), so the difference keeps its relative precision. Only intervals beyond ~37 SD
    underflow, and those fall back to the log-space form.
    """
    flip = lo > 0.0
    a = np.where(flip, -hi, lo)
    b = np.where(flip, -lo, hi)
    mass = special.ndtr(b) - special.ndtr(a)
    with np.errstate(divide="ignore"):
        out = np.log(mass)
    deep = mass <= 0.0
    if np.any(deep):
        a64, b64 = a[deep].astype(np.float64), b[deep].astype(np.float64)
        log_b = special.log_ndtr(b64)
        with np.errstate(divide="ignore"):
            out[deep] = log_b + np.log1p(-np.exp(special.log_ndtr(a64) - log_b))
    return out.astype(np.float64, copy=False)  # type: ignore[no-any-return]


def ordinal_log_prob(
    y: int | npt.NDArray[np.integer], mean: ArrayLike, sd: float, cuts: Sequence[float]
) -> F64:
    """Log-probability of category ``y`` under an ordered probit.

    P(y = k) = Φ((c_k - m)/s) - Φ((c_{k-1} - m)/s) with c_0 = -∞ and c_K = +∞.

    Args:
        y: Category index 0..len(cuts); a scalar or an integer array broadcastable to ``mean``
            (one observation per twin in a batch).
        mean: Latent mean m per particle.
        sd: Latent noise s (> 0).
        cuts: Increasing cut-points c_1..c_{K-1}.

    Returns:
        Log-probability per particle (float64).
    """
    m = np.asarray(mean)
    # float32 particles are evaluated in float32 (twice the throughput); the result is float64.
    dtype = np.float32 if m.dtype == np.float32 else np.float64
    edges = np.concatenate(([-np.inf], np.asarray(cuts, dtype=dtype), [np.inf])).astype(dtype)
    k = np.asarray(y)
    inv = dtype(1.0 / sd)
    return _log_interval((edges[k] - m) * inv, (edges[k + 1] - m) * inv)


def score_cuts(top: int) -> tuple[float, ...]:
    """Cut-points k + ½ for an integer score 0..top (interval censoring at unit width)."""
    return tuple(k + 0.5 for k in range(top))


def sample_score(
    mean: npt.NDArray[np.floating], sd: float, top: int, normal: npt.NDArray[np.floating]
) -> npt.NDArray[np.int64]:
    """:func:`sample_ordinal` for an integer score 0..top (cut-points k + ½), without a search.

    #{k + ½ < x} = clip(⌈x - ½⌉, 0, top), one pass instead of a binary search per draw.

    Args:
        mean: Latent mean per draw.
        sd: Latent noise.
        top: Largest score.
        normal: Standard normal draws, same shape as ``mean``.

    Returns:
        Scores 0..top.
    """
    latent = mean.astype(np.float64) + sd * normal.astype(np.float64)
    return np.clip(np.ceil(latent - 0.5), 0, top).astype(np.int64)


def sample_ordinal(
    mean: ArrayLike, sd: float, cuts: Sequence[float], normal: npt.NDArray[np.floating]
) -> npt.NDArray[np.int64]:
    """Draw categories from the ordered probit: y = #{c_k < m + s·ξ}.

    Args:
        mean: Latent mean per draw.
        sd: Latent noise.
        cuts: Increasing cut-points.
        normal: Standard normal draws, same shape as ``mean``.

    Returns:
        Category indices 0..len(cuts).
    """
    latent = np.asarray(mean, dtype=np.float64) + sd * np.asarray(normal, dtype=np.float64)
    return np.searchsorted(np.asarray(cuts), latent, side="left").astype(np.int64)


def gaussian_log_prob(y: float, mean: ArrayLike, sd: float) -> F64:
    """Gaussian log-density log N(y; mean, sd²) per particle."""
    z = (y - np.asarray(mean, dtype=np.float64)) / sd
    return -0.5 * z * z - np.log(sd) - 0.5 * np.log(2.0 * np.pi)  # type: ignore[no-any-return]


def sample_gaussian(mean: ArrayLike, sd: float, normal: npt.NDArray[np.floating]) -> F64:
    """Draw y = mean + sd·ξ."""
    return np.asarray(mean, dtype=np.float64) + sd * np.asarray(normal, dtype=np.float64)


def severity_z(s: ArrayLike, mu_well: ArrayLike) -> F64:
    """Standardised severity z_S = (S - μ_well)/5 that drives the wearable streams."""
    return (np.asarray(s, dtype=np.float64) - np.asarray(mu_well, dtype=np.float64)) / 5.0
