"""Intervention sub-models of ``docs/model.md`` §4 as pure, vectorised functions.

Each function accepts scalars or NumPy arrays of any (broadcastable) shape and returns the same
shape. Units: exposure ``C`` in minimum-therapeutic-dose equivalents at steady state (D_min
units); time in days unless the name says hours.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special

from twin.model.parameters import PopulationParameters

__all__ = [
    "drive",
    "howard_fraction",
    "occupancy",
    "persistence_stop_day",
    "pk_step",
    "process_s_day",
    "steady_state_fraction",
]

#: A scalar or an array of any shape; results have the broadcast shape of the inputs.
ArrayT = float | npt.NDArray[np.floating[Any]]


def pk_step(c: ArrayT, dose_rel: ArrayT, k_e: ArrayT) -> ArrayT:
    """One day of the one-compartment model with daily dosing.

    Implements C_{d+1} = C_d·e^{-k_e} + (dose_d·taken_d / D_min)·(1 - e^{-k_e}).

    Args:
        c: Exposure C_d, D_min units.
        dose_rel: Dose taken on day d divided by D_min (0 when not taken).
        k_e: Elimination rate constant, 1/day.

    Returns:
        Exposure C_{d+1}, D_min units.
    """
    decay = np.exp(-k_e)
    out: ArrayT = c * decay + dose_rel * (1.0 - decay)
    return out


def steady_state_fraction(half_lives: float) -> float:
    """Fraction of steady state reached after ``half_lives`` half-lives: 1 - 2^{-k}."""
    return 1.0 - math.pow(2.0, -half_lives)


def occupancy(c: ArrayT, p: PopulationParameters) -> ArrayT:
    """Hyperbolic SERT occupancy O = O_max·C / (C + ED50_rel) (Meyer et al. 2004).

    Args:
        c: Exposure, D_min units (>= 0).
        p: Population parameters (``o_max``, ``ed50_rel``).

    Returns:
        Occupancy as a fraction in [0, O_max).
    """
    out: ArrayT = p.o_max * c / (c + p.ed50_rel)
    return out


def drive(c: ArrayT, p: PopulationParameters) -> ArrayT:
    """Normalised drug drive u = min(O(C) / O(1), u_cap): 1 at the minimum therapeutic dose."""
    out: ArrayT = np.minimum(occupancy(c, p) / occupancy(1.0, p), p.u_cap)
    return out


def howard_fraction(n_eff: ArrayT, p: PopulationParameters) -> ArrayT:
    """Howard dose-effect curve Φ(ln(n/n50)/s) of effective psychotherapy sessions.

    Howard et al. 1986: ~50% improved by 8 sessions and ~75% by 26, so s = ln(26/8)/z_0.75.

    Args:
        n_eff: Effective number of sessions (>= 0); 0 gives 0.
        p: Population parameters (``howard_n50``, ``howard_s``).

    Returns:
        Fraction of the maximal psychotherapy effect, in [0, 1).
    """
    if np.ndim(n_eff) == 0:  # one twin's tracker, every day of a forecast: scipy's ufunc
        # overhead would dominate; Φ(z) = erfc(-z/√2)/2 is the same function in the math module.
        n0 = float(n_eff)
        if n0 <= 0.0:
            return 0.0
        return 0.5 * math.erfc(-math.log(n0 / p.howard_n50) / (p.howard_s * math.sqrt(2.0)))
    n = np.asarray(n_eff, dtype=np.float64)
    with np.errstate(divide="ignore"):
        z = np.log(n / p.howard_n50) / p.howard_s
    result: ArrayT = special.ndtr(z)
    return result


def process_s_day(h_wake: float, *, sleep_h: float, p: PopulationParameters) -> tuple[float, float]:
    """One 24-hour cycle of Borbély's homeostatic Process S.

    Awake for ``24 - sleep_h`` hours: H ← 1 - (1 - H)·e^{-t/τ_rise}; asleep for ``sleep_h``
    hours: H ← H·e^{-t/τ_fall} (Daan, Beersma & Borbély 1984; τ_rise 18.2 h, τ_fall 4.2 h).

    Args:
        h_wake: H at the previous wake time (dimensionless, 0..1).
        sleep_h: Hours asleep this night (0..24).
        p: Population parameters (time constants).

    Returns:
        ``(h_bed, h_wake_next)``: H at bedtime and at the next wake time.
    """
    h_bed = 1.0 - (1.0 - h_wake) * math.exp(-(24.0 - sleep_h) / p.tau_rise_h)
    return h_bed, h_bed * math.exp(-sleep_h / p.tau_fall_h)


def persistence_stop_day(u: npt.ArrayLike, p: PopulationParameters) -> npt.NDArray[np.float64]:
    """Day a patient stops a drug under usual-care persistence, by inverting the survival.

    Piecewise-constant hazard (Olfson et al. 2006: 42 % stopped by 30 days, 72 % by 90): λ1 for
    30 days, then λ2; S(t) = e^{-λ1 t} (t <= 30), else e^{-30 λ1 - λ2 (t - 30)}; t = S^{-1}(u).

    Args:
        u: Uniform draws in [0, 1), any shape.
        p: Population parameters (``stop_hazard_first30``, ``stop_hazard_after30``).

    Returns:
        The stop day (days from the start of the drug), float64, the shape of ``u``.
    """
    h = -np.log(np.maximum(np.asarray(u, dtype=np.float64), 1e-300))
    first = h / p.stop_hazard_first30
    later = 30.0 + (h - 30.0 * p.stop_hazard_first30) / p.stop_hazard_after30
    out: npt.NDArray[np.float64] = np.where(first <= 30.0, first, later)
    return out
