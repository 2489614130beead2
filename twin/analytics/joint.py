"""The joint calibration: every published target of the literature battery at once, by SMM.

**Objective.** One documented objective over all targets of :mod:`twin.model.validation`:

    J(θ) = Σ_k z_k² + λ² Σ_k e_k²,   z_k = (m_k(θ) - c_k) / s_k,
                                       e_k = max(0, low'_k - m_k(θ), m_k(θ) - high'_k) / s_k,
    low'_k = low_k + m_k,  high'_k = high_k - m_k,  m_k = min(μ σ_k, (high_k - low_k) / 4)

with s_k = (high_k - low_k) / 4, where c_k is the published figure (``TargetResult.published``),
[low_k, high_k] its pass band (read as about ±2 standard errors of what the literature pins
down), and m_k(θ) the target computed on cohorts simulated with θ (``n`` patients per arm,
fixed seeds: common random numbers across θ, so J is a deterministic function of θ). The
first sum is the SMM objective of :mod:`twin.analytics.smm` with W = diag(1/s²); the second
(λ = :data:`BAND_WEIGHT`) is zero inside every band and makes leaving one dearer than missing a
centre, because a band is what the published evidence allows. The band is narrowed by
μ = :data:`BAND_MARGIN` Monte-Carlo standard deviations σ_k of the target at ``n`` patients
(estimated at the start from :data:`REPLICATES` extra seeds): a fit that stops on a band's edge
with one seed's patients would leave it with another's, as the battery's larger cohorts do.
The reported statistic is the first sum at the estimate.

**Parameters.** :data:`PARAMETERS` with their search boxes, fitted on log scale (rates, sizes,
multipliers) or logit scale (shares, probabilities). The others keep their values: measured
ones (pharmacokinetics, occupancy, Process S, observation noise) and those no target informs.
The untreated recovery hazard h10 is held, as the scale the course classes multiply.

**Minimiser.** Bounded trust-region least squares on the whitened residuals (m - c)/s, with the
Jacobian by central differences (step 0.1 on the transformed scale; the columns can run in
parallel), then a compass search on J (:func:`compass_search`): simulated moments count
discrete outcomes, so J is rough at small scales and the trust region can stop where a step
along one coordinate still lowers it. Standard errors from the Jacobian at the optimum:
Var(x̂) = (GᵀWG)⁻¹, mapped to each parameter's own scale by the delta method.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize

from twin.analytics import smm
from twin.model import validation
from twin.model.parameters import PopulationParameters

__all__ = [
    "BAND_MARGIN",
    "BAND_WEIGHT",
    "PARAMETERS",
    "REPLICATES",
    "JointFit",
    "compass_search",
    "fit_table",
    "fit_targets",
    "inner_band",
    "monte_carlo_sd",
    "target_values",
]

F64 = npt.NDArray[np.float64]
#: λ of the objective: the weight of leaving a band against missing a published centre.
BAND_WEIGHT = 10.0
#: μ of the objective: how many Monte-Carlo standard deviations a target is held inside its band.
BAND_MARGIN = 2.0
#: Extra seeds whose battery runs at the start estimate each target's Monte-Carlo deviation.
REPLICATES = 4
#: Distance between replicate seeds (beyond the offsets a battery gives its own arms).
REPLICATE_SEED_STEP = 1000

#: Fitted parameters: (scale, lower, upper). Shares and probabilities on logit scale.
PARAMETERS: dict[str, tuple[str, float, float]] = {
    "pi_mean": ("log", 0.3, 12.0),
    "m_care": ("log", 1.0, 8.0),
    "tau_p": ("log", 2.0, 40.0),
    "hamd_care_share": ("log", 0.02, 5.0),
    "hamd_drug_share": ("log", 0.02, 5.0),
    "hamd_sd": ("log", 1.0, 6.0),
    "e_max": ("log", 0.3, 8.0),
    "m_drug": ("log", 1.0, 5.0),
    "eta_cv": ("log", 0.3, 4.0),
    "chronic_share": ("logit", 0.02, 0.8),
    "rec_acute": ("log", 1.0, 30.0),
    "rec_chronic": ("log", 0.005, 1.0),
    "p_anx_chronic": ("logit", 0.05, 0.95),
    "p_anx_acute": ("logit", 0.02, 0.9),
    "h01": ("log", 2e-4, 1e-2),
    "hr_drug": ("log", 0.1, 0.95),
    "m_stop": ("log", 1.0, 10.0),
    "psi_max": ("log", 0.5, 15.0),
    "gamma_g": ("log", 0.2, 3.0),
}


def _to_x(name: str, value: float) -> float:
    scale, low, high = PARAMETERS[name]
    value = min(max(value, low), high)
    return math.log(value) if scale == "log" else math.log(value / (1.0 - value))


def _from_x(name: str, x: float) -> float:
    scale = PARAMETERS[name][0]
    return math.exp(x) if scale == "log" else 1.0 / (1.0 + math.exp(-x))


def _bounds(names: Sequence[str]) -> tuple[F64, F64]:
    low = np.array([_to_x(n, PARAMETERS[n][1]) for n in names])
    high = np.array([_to_x(n, PARAMETERS[n][2]) for n in names])
    return low, high


def compass_search(
    objective: Callable[[Sequence[F64]], list[float]],
    x: F64,
    low: F64,
    high: F64,
    *,
    step: float = 0.05,
    min_step: float = 0.0125,
    sweeps: int = 12,
    at_x: float | None = None,
) -> F64:
    """Polish a minimum of a rough objective by compass (coordinate pattern) search.

    Simulated moments count discrete outcomes (a patient responds or not), so J is piecewise
    constant at small scales and a gradient from finite differences can point nowhere: the
    trust-region search then stops where a step along one coordinate still lowers J. Each sweep
    evaluates x ± step along every coordinate (within the box) in one batch, moves to the best
    improving point, or to the sum of every improving move when that is better still, and halves
    the step after a sweep that finds nothing, until the step is below ``min_step``.

    Args:
        objective: J at each of a batch of points (on the fitting scale).
        x: Start, shape (P,).
        low: Lower ends of the box, shape (P,).
        high: Upper ends of the box, shape (P,).
        step: First step on the fitting (log or logit) scale.
        min_step: The smallest step tried.
        sweeps: Budget of sweeps.
        at_x: J at ``x`` when already known (saves one evaluation).

    A non-finite J counts as +inf: a point where a target cannot be computed is never chosen.

    Returns:
        The best point found: ``x`` itself (the same object) when no sweep improved on it.
    """
    if sweeps <= 0:
        return x

    def finite(values: list[float]) -> list[float]:
        return [v if math.isfinite(v) else math.inf for v in values]

    best, best_j = x, finite([objective([x])[0] if at_x is None else at_x])[0]
    for _ in range(sweeps):
        if step < min_step:
            break
        moves: list[F64] = []
        for i in range(x.size):
            for sign in (1.0, -1.0):
                y = best.copy()
                y[i] = min(max(y[i] + sign * step, low[i]), high[i])
                if y[i] != best[i]:
                    moves.append(y)
        if not moves:
            break
        values = finite(objective(moves))
        better = [(j, y) for j, y in zip(values, moves, strict=True) if j < best_j]
        if not better:
            step /= 2.0
            continue
        # One move per coordinate (the better sign), then try them all at once.
        per_coordinate: dict[int, tuple[float, F64]] = {}
        for j, y in better:
            i = int(np.flatnonzero(y != best)[0])
            if i not in per_coordinate or j < per_coordinate[i][0]:
                per_coordinate[i] = (j, y)
        candidate_j, candidate = min(per_coordinate.values(), key=lambda item: item[0])
        if len(per_coordinate) > 1:
            combined = np.clip(best + sum(y - best for _, y in per_coordinate.values()), low, high)
            combined_j = finite(objective([combined]))[0]
            if combined_j < candidate_j:
                candidate_j, candidate = combined_j, combined
        best, best_j = candidate, candidate_j
    return best


def monte_carlo_sd(replicates: Sequence[F64]) -> F64:
    """Each target's Monte-Carlo standard deviation across battery runs on different seeds.

    Args:
        replicates: Target values of R >= 2 runs that differ only in their seed, shape (R, K).

    Returns:
        The sample standard deviation (ddof 1) per target, shape (K,); non-finite values count
        as no spread.
    """
    values = np.asarray(replicates, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 2:
        raise ValueError("need at least two replicate battery runs")
    sd: F64 = np.nan_to_num(np.std(values, axis=0, ddof=1), nan=0.0, posinf=0.0)
    return sd


def inner_band(low: F64, high: F64, margin: F64) -> tuple[F64, F64]:
    """The band [low + m, high - m], m = min(margin, (high - low) / 4).

    The cap keeps the inner band at least half as wide as the band: a target whose Monte-Carlo
    spread rivals its band (a ratio of rare events) is noisy, and narrowing its band to a point
    would make the objective chase that noise.
    """
    m = np.minimum(margin, (high - low) / 4.0)
    return low + m, high - m


def target_values(
    params: PopulationParameters, *, n: int, seed: int
) -> list[validation.TargetResult]:
    """Every target of the battery under ``params`` (``n`` patients per arm, fixed seed)."""
    return validation.run_battery(n=n, seed=seed, params=params)


def _values(job: tuple[PopulationParameters, int, int]) -> F64:
    """The targets' simulated values of one battery run (a picklable unit of work)."""
    params, n, seed = job
    return np.array([r.value for r in target_values(params, n=n, seed=seed)])


@dataclass(frozen=True, slots=True)
class JointFit:
    """The joint calibration's result.

    Attributes:
        estimates: Fitted values by parameter (each on its own scale and units).
        standard_errors: Their standard errors (delta method from the fitting scale).
        start: The values the search started from.
        objective: J at the estimate (Σ z²).
        monte_carlo_sd: Per target (in battery order), its Monte-Carlo standard deviation at
            ``n`` patients, by which the objective holds it inside its band.
        degrees_of_freedom: Targets minus fitted parameters.
        evaluations: Battery runs (objective and Jacobian).
        converged: Whether the minimiser met its tolerances.
        status: The minimiser's message.
        targets: Per target: id, quantity, scale, published, band, fitted value, z, in band.
        n: Simulated patients per arm.
        seed: Seed of the simulated cohorts.
    """

    estimates: dict[str, float]
    standard_errors: dict[str, float]
    start: dict[str, float]
    objective: float
    degrees_of_freedom: int
    evaluations: int
    converged: bool
    status: str
    targets: list[dict[str, Any]] = field(default_factory=list)
    monte_carlo_sd: list[float] = field(default_factory=list)
    n: int = 0
    seed: int = 0

    def parameters(self, base: PopulationParameters) -> PopulationParameters:
        """``base`` with the fitted values."""
        overrides: dict[str, Any] = dict(self.estimates)  # every fitted field is a float
        return dataclasses.replace(base, **overrides)


def fit_targets(
    start: PopulationParameters,
    *,
    names: Sequence[str] = tuple(PARAMETERS),
    n: int = 4000,
    seed: int = 2026,
    max_iterations: int = 30,
    polish_sweeps: int = 12,
    mapper: smm.Mapper[Any, F64] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> JointFit:
    """Fit ``names`` to every published target at once (see the module docstring).

    Args:
        start: Where the search starts, and the values of everything not fitted.
        names: The parameters fitted (keys of :data:`PARAMETERS`).
        n: Simulated patients per arm of each battery run.
        seed: Seed of the simulated cohorts (fixed across θ).
        max_iterations: Budget of objective evaluations of the minimiser (each with a Jacobian).
        polish_sweeps: Budget of sweeps of the compass search that follows it
            (:func:`compass_search`; 0 for none).
        mapper: Runs battery evaluations (``map`` semantics over picklable jobs), e.g. on a
            process pool; serial by default.
        progress: Called after each objective evaluation with (evaluations, J).
    """
    names = tuple(names)
    unknown = [name for name in names if name not in PARAMETERS]
    if unknown:
        raise ValueError(f"not fitted jointly: {', '.join(unknown)}")
    run = mapper or smm.serial
    # Replicate seeds far apart: a battery's arms use seed + 1, seed + 2, ... themselves.
    replicates = run(
        _values, [(start, n, seed + REPLICATE_SEED_STEP * k) for k in range(REPLICATES + 1)]
    )
    reference = target_values(start, n=n, seed=seed)
    published = np.array([r.published for r in reference])
    band_low = np.array([r.low for r in reference])
    band_high = np.array([r.high for r in reference])
    scale = (band_high - band_low) / 4.0
    noise = monte_carlo_sd(replicates)
    low_band, high_band = inner_band(band_low, band_high, BAND_MARGIN * noise)
    evaluations = REPLICATES + 1

    def params_at(x: F64) -> PopulationParameters:
        values: dict[str, Any] = {
            name: _from_x(name, float(v)) for name, v in zip(names, x, strict=True)
        }
        return dataclasses.replace(start, **values)

    def moments(x: F64) -> F64:
        return _values((params_at(x), n, seed))

    def evaluate(points: Sequence[F64]) -> list[F64]:
        return run(_values, [(params_at(x), n, seed) for x in points])

    def whitened(m: F64) -> F64:
        """The residuals whose squares sum to J: every z_k, then every λ·e_k."""
        excess = np.maximum(0.0, np.maximum(low_band - m, m - high_band))
        out: F64 = np.concatenate([(m - published) / scale, BAND_WEIGHT * excess / scale])
        return out

    def residuals(x: F64) -> F64:
        nonlocal evaluations
        evaluations += 1
        r = whitened(moments(x))
        if progress is not None:
            progress(evaluations, float(np.sum(r**2)))
        return r

    def jacobian(x: F64) -> F64:
        nonlocal evaluations
        evaluations += 2 * x.size
        G: F64 = smm.jacobian(lambda points: [whitened(v) for v in evaluate(points)], x, step=0.1)
        return G

    x0 = np.array([_to_x(name, float(getattr(start, name))) for name in names])
    low, high = _bounds(names)
    result = optimize.least_squares(
        residuals, x0, jac=jacobian, bounds=(low, high), method="trf", x_scale=1.0,
        max_nfev=max_iterations, xtol=1e-3, ftol=1e-3,
    )  # fmt: skip
    x = np.asarray(result.x, dtype=np.float64)

    def objectives(points: Sequence[F64]) -> list[float]:
        nonlocal evaluations
        evaluations += len(points)
        return [float(np.sum(whitened(v) ** 2)) for v in evaluate(points)]

    status = str(result.message)
    polished = compass_search(
        objectives, x, low, high, sweeps=polish_sweeps, at_x=float(np.sum(result.fun**2))
    )
    if polished is not x:
        x = polished
        jac = jacobian(x)
        status += "; moved by the compass search"
    else:
        jac = np.asarray(result.jac, dtype=np.float64)
    final = target_values(params_at(x), n=n, seed=seed)
    # The moments' own Jacobian (the first K rows of the residuals', unwhitened).
    G = jac[: scale.size] * scale[:, None]
    weight = 1.0 / scale**2
    se_x = smm.sandwich_standard_errors(G, weight, np.diag(scale**2))
    estimates = {name: _from_x(name, float(v)) for name, v in zip(names, x, strict=True)}
    ses = {}
    for name, s in zip(names, se_x, strict=True):
        value = estimates[name]
        # Delta method: d value / d x is value (log) or value (1 - value) (logit).
        slope = value if PARAMETERS[name][0] == "log" else value * (1.0 - value)
        ses[name] = float(slope * s) if math.isfinite(float(s)) else math.nan
    z = [(r.value - c) / s for r, c, s in zip(final, published, scale, strict=True)]
    return JointFit(
        estimates=estimates,
        standard_errors=ses,
        start={name: float(getattr(start, name)) for name in names},
        objective=float(np.sum(np.square(z))),
        degrees_of_freedom=len(final) - len(names),
        evaluations=evaluations,
        converged=bool(result.success),
        status=status,
        targets=[
            {
                "target": r.target,
                "quantity": r.quantity,
                "scale": r.scale,
                "source": r.source,
                "published": r.published,
                "low": r.low,
                "high": r.high,
                "value": r.value,
                "z": float(zk),
                "in_band": r.passed,
                "monte_carlo_sd": float(sk),
            }
            for r, zk, sk in zip(final, z, noise, strict=True)
        ],
        monte_carlo_sd=[float(v) for v in noise],
        n=n,
        seed=seed,
    )


def fit_table(fit: JointFit, *, version: str) -> str:
    """The joint fit as Markdown: parameters with standard errors, every target, diagnostics.

    Args:
        fit: The result of :func:`fit_targets`.
        version: The prior-set version the estimates ship as.
    """
    in_band = sum(t["in_band"] for t in fit.targets)
    lines = [
        "# The joint fit of the literature targets",
        "",
        f"Generated by `novamind model fit` (twin.analytics.joint): prior set `{version}`, "
        f"{fit.n:,} simulated patients per arm, seed {fit.seed}. Objective: "
        "Σ z² + λ² Σ e², z = (simulated - published) / s, e = distance outside the band / s, "
        f"s = band width / 4, λ = {BAND_WEIGHT:g}, the band narrowed by {BAND_MARGIN:g} "
        f"Monte-Carlo SDs of the target ({REPLICATES + 1} seeds at the start; column MC SD), "
        "minimised by bounded trust-region least squares and polished by compass search; "
        "standard errors (GᵀWG)⁻¹ from the Jacobian at the optimum (docs/model.md §9). "
        "J below is Σ z².",
        "",
        f"- J = {fit.objective:.1f} over {len(fit.targets)} targets and "
        f"{len(fit.estimates)} parameters ({fit.degrees_of_freedom} degrees of freedom)",
        f"- targets inside their bands: {in_band} of {len(fit.targets)}",
        f"- evaluations: {fit.evaluations}; minimiser: {fit.status} "
        f"({'converged' if fit.converged else 'stopped at its budget'})",
        "",
        "## Parameters",
        "",
        "| parameter | start | estimate | standard error | search box |",
        "|---|---|---|---|---|",
    ]
    for name, value in fit.estimates.items():
        _, low, high = PARAMETERS[name]
        lines.append(
            f"| {name} | {fit.start[name]:.4g} | {value:.4g} | "
            f"{fit.standard_errors[name]:.2g} | {low:g} .. {high:g} |"
        )
    lines += [
        "",
        "## Targets",
        "",
        "| target | quantity | scale | published | band | fitted | MC SD | z | in band |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in fit.targets:
        lines.append(
            f"| {t['target']} | {t['quantity']} | {t['scale']} | {t['published']:.3g} | "
            f"{t['low']:g} .. {t['high']:g} | {t['value']:.3f} | {t['monte_carlo_sd']:.3f} | "
            f"{t['z']:+.2f} | "
            f"{'yes' if t['in_band'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"
