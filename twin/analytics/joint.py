"""The joint calibration: every published target of the literature battery at once, by SMM.

**Objective.** One documented objective over all targets of :mod:`twin.model.validation`:

    J(θ) = Σ_k z_k² + λ² Σ_k e_k²,   z_k = (m_k(θ) - c_k) / s_k,
                                       e_k = max(0, low_k - m_k(θ), m_k(θ) - high_k) / s_k,

with s_k = (high_k - low_k) / 4, where c_k is the published figure (``TargetResult.published``),
[low_k, high_k] its pass band (read as about ±2 standard errors of what the literature pins
down), and m_k(θ) the target computed on cohorts simulated with θ (``n`` patients per arm,
fixed seeds: common random numbers across θ, so J is a deterministic function of θ). The
first sum is the SMM objective of :mod:`twin.analytics.smm` with W = diag(1/s²); the second
(λ = :data:`BAND_WEIGHT`) is zero inside every band and makes leaving one dearer than missing a
centre, because a band is what the published evidence allows. The reported statistic is the
first sum at the estimate.

**Parameters.** :data:`PARAMETERS` with their search boxes, fitted on log scale (rates, sizes,
multipliers) or logit scale (shares, probabilities). The others keep their values: measured
ones (pharmacokinetics, occupancy, Process S, observation noise) and those no target informs.
The untreated recovery hazard h10 is held, as the scale the course classes multiply.

**Minimiser.** Bounded trust-region least squares on the whitened residuals (m - c)/s, with the
Jacobian by central differences (step 0.1 on the transformed scale; the columns can run in
parallel). Standard errors from the Jacobian at the optimum: Var(x̂) = (GᵀWG)⁻¹, mapped to each
parameter's own scale by the delta method.
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
    "BAND_WEIGHT",
    "PARAMETERS",
    "JointFit",
    "fit_table",
    "fit_targets",
    "target_values",
]

F64 = npt.NDArray[np.float64]
#: λ of the objective: the weight of leaving a band against missing a published centre.
BAND_WEIGHT = 4.0

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
        mapper: Runs battery evaluations (``map`` semantics over picklable jobs), e.g. on a
            process pool; serial by default.
        progress: Called after each objective evaluation with (evaluations, J).
    """
    names = tuple(names)
    unknown = [name for name in names if name not in PARAMETERS]
    if unknown:
        raise ValueError(f"not fitted jointly: {', '.join(unknown)}")
    reference = target_values(start, n=n, seed=seed)
    published = np.array([r.published for r in reference])
    low_band = np.array([r.low for r in reference])
    high_band = np.array([r.high for r in reference])
    scale = (high_band - low_band) / 4.0
    evaluations = 0

    def params_at(x: F64) -> PopulationParameters:
        values: dict[str, Any] = {
            name: _from_x(name, float(v)) for name, v in zip(names, x, strict=True)
        }
        return dataclasses.replace(start, **values)

    run = mapper or smm.serial

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
    final = target_values(params_at(x), n=n, seed=seed)
    # The moments' own Jacobian (the first K rows of the residuals', unwhitened).
    G = np.asarray(result.jac, dtype=np.float64)[: scale.size] * scale[:, None]
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
        status=str(result.message),
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
            }
            for r, zk in zip(final, z, strict=True)
        ],
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
        f"s = band width / 4, λ = {BAND_WEIGHT:g}, minimised by bounded trust-region least "
        "squares; standard errors (GᵀWG)⁻¹ from the Jacobian at the optimum (docs/model.md "
        "§9). J below is Σ z².",
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
        "| target | quantity | scale | published | band | fitted | z | in band |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in fit.targets:
        lines.append(
            f"| {t['target']} | {t['quantity']} | {t['scale']} | {t['published']:.3g} | "
            f"{t['low']:g} .. {t['high']:g} | {t['value']:.3f} | {t['z']:+.2f} | "
            f"{'yes' if t['in_band'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"
