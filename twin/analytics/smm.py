"""The simulated-method-of-moments core shared by the population calibrations.

An SMM estimate minimises Σ_k w_k (m̂_k - m_k(θ))² over θ (here: log θ, or logit θ for shares),
where m_k(θ) are moments of cohorts simulated with θ under fixed seeds (common random numbers
across θ). Its sampling variance comes from the Jacobian G = ∂m/∂θ at the estimate (McFadden
1989; Gouriéroux & Monfort 1996):

    Var(θ̂) = (GᵀWG)⁻¹ GᵀWΩWG (GᵀWG)⁻¹,

with W the diagonal weights and Ω the covariance of the target moments m̂ (with W = Ω⁻¹ this
is (GᵀWG)⁻¹). :func:`twin.analytics.calibration.fit` fits observed courses with it;
:mod:`twin.analytics.joint` fits the published targets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["Mapper", "jacobian", "sandwich_standard_errors", "serial"]

F64 = npt.NDArray[np.float64]
A = TypeVar("A")
R = TypeVar("R")
#: Runs one function over several inputs (``map`` semantics): a process pool or Ray tasks may
#: run the simulations of a fit apart.
Mapper = Callable[[Callable[[A], R], Sequence[A]], list[R]]


def serial(fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
    """The default :data:`Mapper`: one input after another, in this process."""
    return [fn(item) for item in items]


def jacobian(evaluate: Callable[[Sequence[F64]], list[F64]], x: F64, *, step: float = 0.05) -> F64:
    """Central-difference Jacobian ∂m/∂x, shape (moments, parameters).

    Args:
        evaluate: The simulated moments at each of several points (deterministic: fixed
            seeds); a caller may evaluate the points in parallel.
        x: The point, in the transformed parameters (log or logit).
        step: The difference step in x.
    """
    points = [x + np.where(np.arange(x.size) == i, sign * step, 0.0) for i in range(x.size)
              for sign in (1.0, -1.0)]  # fmt: skip
    values = evaluate(points)
    columns = [(values[2 * i] - values[2 * i + 1]) / (2.0 * step) for i in range(x.size)]
    return np.stack(columns, axis=1)


def sandwich_standard_errors(G: F64, weight: F64, omega: F64) -> F64:
    """Standard errors of θ̂ (in the transformed parameters) from the sandwich formula.

    Args:
        G: Jacobian of the moments, (K, P).
        weight: Diagonal of W, (K,).
        omega: Covariance of the target moments, (K, K).

    Returns:
        (P,) standard errors; NaN for a parameter the moments do not move (a zero column of
        G), and for all of them if the others are not identified (GᵀWG singular).
    """
    se: F64 = np.full(G.shape[1], np.nan)
    moved = np.any(G != 0.0, axis=0)
    Gm = G[:, moved]
    WG = weight[:, None] * Gm
    try:
        bread = np.linalg.inv(Gm.T @ WG)
    except np.linalg.LinAlgError:
        return se
    cov = bread @ (WG.T @ omega @ WG) @ bread
    se[moved] = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return se
