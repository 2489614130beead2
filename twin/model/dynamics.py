"""Latent dynamics of the twin (``docs/model.md`` §1-4), vectorised over particles.

A population of latent states (particles of one twin, particles of many twins, or the patients
of a simulated cohort) is one float32 matrix ``X`` of shape ``(N_ROWS, *batch)``; row ``k`` holds
the quantity named in :data:`ROWS`. The day step is written once (:func:`advance_days`, compiled
in :mod:`twin.model.day_kernel`) and serves the particle filter, forecasts, scenarios and cohort
simulation alike, so there is one model, not several copies.

Quantities that are known inputs for a twin (doses scheduled, sessions attended, sleep debt from
the sleep schedule, care) live outside ``X`` in :class:`DayInputs`, broadcast against the batch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from twin import errors
from twin.domain.specs import MAX_DRUGS_AT_ONCE
from twin.model import covariates, day_kernel, pharmacology
from twin.model.parameters import PopulationParameters

__all__ = [
    "DYNAMIC_ROWS",
    "N_NORMALS",
    "N_ROWS",
    "N_UNIFORMS",
    "ROWS",
    "SLOTS",
    "STATIC_ROWS",
    "DayInputs",
    "Row",
    "advance_days",
    "day_step",
    "ema_advance",
    "sample_prior",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
#: A known input: a scalar, or an array (float32 or float64) broadcastable to the batch.
Numeric = float | npt.NDArray[np.floating[Any]]

#: Number of drug slots a twin tracks at once (current and previous drug, for cross-tapers).
SLOTS = MAX_DRUGS_AT_ONCE

#: Dynamic rows: regime R (1 = episode), severity S (PHQ-9 points), anxiety G (GAD-7 points),
#: EMA negative affect A (z), insomnia Q (z), drug effect E, care effect P, discontinuation load W
#: (points), previous-day drive U_PREV, recall means M_S and M_G of S and G, exposures C0, C1,
#: Z_REF, the particle's standardised severity when the wearable run-in ended (wearables then
#: inform changes from that level, not the level itself, which the baseline absorbed), and
#: U_PEAK, the recent peak of the capped drug drive, decaying with τ_stop: how far today's drive
#: lies below it is the fall that raises the relapse hazard after stopping a drug.
DYNAMIC_ROWS = (
    "R", "S", "G", "A", "Q", "E", "P", "W", "U_PREV", "M_S", "M_G", "C0", "C1", "Z_REF", "U_PEAK",
)  # fmt: skip
#: Static per-patient parameters θ_i (Liu-West shrinkage acts on them): mu_ep, mu_well, care
#: effect pi, log drug sensitivity ln eta, anxiety baseline g0, EMA home base alpha, insomnia
#: baseline q0, discontinuation susceptibility omega (0/1), course class CHRONIC (0/1) and the
#: relapse offset LOG_RELAPSE from prior episodes (:mod:`twin.model.covariates`).
STATIC_ROWS = (
    "MU_EP", "MU_WELL", "PI", "LOG_ETA", "G0", "ALPHA", "Q0", "OMEGA", "CHRONIC", "LOG_RELAPSE",
)  # fmt: skip
ROWS = DYNAMIC_ROWS + STATIC_ROWS
N_ROWS = len(ROWS)
#: Standard normals per particle per day: ξ_S, ξ_G (independent part), ξ_Q.
N_NORMALS = 3
#: Uniforms per particle per day: regime switch, adherence of slot 0, adherence of slot 1.
N_UNIFORMS = 1 + SLOTS


class Row:
    """Row indices into the particle matrix, named as in ``docs/model.md`` §1.2."""

    R, S, G, A, Q, E, P, W, U_PREV, M_S, M_G, C0, C1, Z_REF, U_PEAK = range(15)
    MU_EP, MU_WELL, PI, LOG_ETA, G0, ALPHA, Q0, OMEGA, CHRONIC, LOG_RELAPSE = range(15, 25)


@dataclass(slots=True)
class DayInputs:
    """Known inputs for one day, broadcastable against the batch shape.

    Attributes:
        care: Care intensity c_d in [0, 1]: the setting's contact rate relative to a trial's
            weekly assessments (:mod:`twin.model.care`); 0 without clinical contact.
        dose_rel: Shape ``(SLOTS, ...)``: scheduled dose of each slot's drug / D_min.
        taken: Shape ``(SLOTS, ...)``: 1.0 taken, 0.0 missed, NaN unknown (then drawn
            as Bernoulli(``p_adh``)).
        p_adh: Probability a dose is taken when not logged.
        k_e: Shape ``(SLOTS, ...)``: elimination constants of the slots' drugs, 1/day.
        psi: Psychotherapy effect Ψ_d, points.
        cbti: CBT-I effect I_d on insomnia, z.
        sleep_debt: Sleep-debt accumulator L_d (dimensionless).
    """

    care: Numeric
    dose_rel: npt.NDArray[np.floating[Any]]
    taken: npt.NDArray[np.floating[Any]]
    p_adh: Numeric
    k_e: npt.NDArray[np.floating[Any]]
    psi: Numeric
    cbti: Numeric
    sleep_debt: Numeric


@functools.lru_cache(maxsize=64)
def day_coefficients(p: PopulationParameters) -> tuple[float, ...]:
    """The day step's scalar coefficients, in the order :mod:`twin.model.day_kernel` reads them."""
    a = math.exp(-p.kappa_s)
    innov = math.sqrt(1.0 - a * a)
    coef = (
        a, p.sigma_s * innov, p.sigma_g * innov, p.rho_sg, math.sqrt(1.0 - p.rho_sg**2),
        p.c_q, p.g1, p.gamma_g, p.c_sq / 5.0, 1.0 / p.tau_q, p.c_l, p.sigma_q,
        p.o_max / float(pharmacology.occupancy(1.0, p)), p.ed50_rel, p.u_cap,
        p.h10, p.m_care - 1.0, p.m_drug - 1.0, math.log(p.h01), math.log(p.hr_drug), p.beta_q,
        math.exp(-1.0 / p.tau_w), p.k_w, p.e_max, 1.0 / p.tau_e, 1.0 / p.tau_p,
        1.0 / p.recall_days, p.rec_acute, p.rec_chronic, math.log(p.m_stop),
        math.exp(-1.0 / p.tau_stop),
    )  # fmt: skip
    assert len(coef) == day_kernel.N_COEFFICIENTS
    return coef


def _known_fields(inp: DayInputs) -> tuple[Numeric, ...]:
    """One day's known inputs in the kernel's order (``day_kernel.KNOWN``)."""
    decay = np.exp(-np.asarray(inp.k_e, dtype=np.float64))
    inflow = np.asarray(inp.dose_rel, dtype=np.float64) * (1.0 - decay)
    taken = np.asarray(inp.taken, dtype=np.float64)
    return (inp.care, inp.p_adh, inp.psi, inp.cbti, inp.sleep_debt, *inflow, *taken, *decay)


def _on_grid(
    value: npt.NDArray[Any], lead: int, batch: tuple[int, ...], grid: tuple[int, int]
) -> npt.NDArray[Any]:
    """``value`` (``lead`` leading axes, then a shape broadcastable to ``batch``) on the 2-D grid.

    A per-twin or scalar input keeps its length-1 axes (the kernel broadcasts them); only a
    pattern the grid cannot express (a 3-D batch broadcast along a middle axis) is expanded.
    """
    head = value.shape[:lead]
    shape = (1,) * (len(batch) - value.ndim + lead) + value.shape[lead:]
    if all(k == 1 for k in shape[:-1]):
        return value.reshape((*head, 1, shape[-1]))
    if shape[:-1] == batch[:-1]:
        return value.reshape((*head, grid[0], shape[-1]))
    full = np.broadcast_to(value.reshape((*head, *shape)), (*head, *batch))
    return full.reshape((*head, *grid))


def advance_days(
    X: F32,
    days: Sequence[DayInputs],
    p: PopulationParameters,
    *,
    normals: F32,
    uniforms: F32,
    stop_day: Numeric = math.inf,
    first_day: int = 0,
    draw_rows: npt.NDArray[np.int64] | None = None,
) -> None:
    """Advance every latent state in ``X`` by ``len(days)`` days, in place.

    Each day, with a_S = e^{-κ_S}, target T_d = μ_{R_d} - E_d - P_d - Ψ_d + c_Q·(Q_d - q0_i) + W_d:

    - S_{d+1} = clip(T_d + a_S(S_d - T_d) + σ_S√(1-a_S²)·ξ_S, 0, 27)
    - G_{d+1}: the same OU form toward g0_i + g1(S_d - μ_well) - γ_G E_d, noise correlated ρ_SG
    - Q_{d+1} = Q_d + (q0_i + c_SQ(S_d - μ_well)/5 - I_d - Q_d)/τ_Q + c_L L_d + σ_Q ξ_Q
    - C_{k,d+1} = C_k e^{-k_e} + dose_k·taken_k·(1 - e^{-k_e}); u_d = min(O(ΣC)/O(1), u_cap)
    - E_{d+1} = E_d + (η_i E_max u_d - E_d)/τ_E; P_{d+1} = P_d + (c_d π_i - P_d)/τ_P, with c_d
      the care intensity in [0, 1] (:mod:`twin.model.care`)
    - W_{d+1} = W_d e^{-1/τ_W} + ω_i·max(0, u_{d-1} - u_d)·k_W
    - K_{d+1} = max(K_d, u₁_d)·e^{-1/τ_stop}, the recent peak of the capped drive, and
      D_d = max(0, K_d - u₁_d), how far today's drive lies below it
    - R switches 1→0 with probability 1 - exp(-h10·r_i·(1 + (m_care - 1)·c_d)·(1 + (m_drug - 1)·u₁))
      and 0→1 with 1 - exp(-h01·e^{ρ_i}·HR_drug^{u₁}·m_stop^{D_d}·exp(β_Q max(Q,0))),
      u₁ = min(u, 1), where r_i is the recovery multiplier of the patient's course class (r_acute
      or r_chronic) and ρ_i their relapse offset from prior episodes
      (:mod:`twin.model.covariates`)
    - recall means M ← M + (X_{d+1} - M)/τ_recall (an EWMA with the mean age of a 14-day window)

    Compiled by :mod:`twin.model.day_kernel` (blocks of particles through all the days, four
    particles a step).

    Args:
        X: Particle matrix, shape ``(N_ROWS, *batch)``, float32; updated in place.
        days: Each day's known inputs (at least one day).
        p: Population parameters.
        normals: Shape ``(len(days), N_NORMALS, *batch)`` standard normal draws, float32.
        uniforms: Shape ``(len(days), N_UNIFORMS, *batch)`` uniform [0, 1) draws, float32.
        stop_day: Per particle (broadcastable to the batch), the day counted like ``first_day``
            from which no dose is taken (usual-care discontinuation); +inf: never.
        first_day: The number of the first day advanced, for ``stop_day``.
        draw_rows: For a batch ``(M, N)``: the draws are ``(len(days), K, T, N)`` and row i of
            the batch uses the draws of row ``draw_rows[i]`` (shared draws, not copied); ``None``:
            the draws have the batch's shape.
    """
    batch = X.shape[1:]
    grid = (math.prod(batch[:-1]), batch[-1]) if batch else (1, 1)
    n_days = len(days)
    copied = not X.flags.c_contiguous
    # A non-contiguous X (a strided view) is advanced as a copy and written back.
    view = (np.ascontiguousarray(X) if copied else X).reshape((N_ROWS, *grid))
    fields = [_known_fields(day) for day in days]
    shape = np.broadcast_shapes(*(np.shape(f) for day in fields for f in day))
    known = np.empty((n_days, len(day_kernel.KNOWN), *shape))
    for d, day in enumerate(fields):
        for k, field in enumerate(day):
            known[d, k] = field
    if draw_rows is None:
        rows, draw_grid = np.arange(grid[0]), grid
    else:
        draw_grid = (np.shape(normals)[2], grid[1])
        rows = np.asarray(draw_rows, dtype=np.int64)
        # The compiled loop does not check indices: a row outside the draws is refused here.
        if (
            len(batch) != 2
            or rows.shape != batch[:1]
            or not 0 <= rows.min() <= rows.max() < draw_grid[0]
        ):
            raise errors.InvalidInputError("draw_rows: a draw row per row of an (M, N) batch")
    # The compiled loop reads every array with unit strides (copies only where a caller's are not).
    draws = np.ascontiguousarray(uniforms, dtype=np.float32).reshape(
        (n_days, N_UNIFORMS, *draw_grid)
    )
    # V = -ln(1 - U) ~ Exp(1). 1 - U is exact in float32 (U is a multiple of 2^-24), and log is
    # vectorised where log1p is not (several times slower).
    regime_draws = -np.log(np.float32(1.0) - draws[:, 0])
    with np.errstate(divide="ignore"):  # U = 0 gives V = 0, ln V = -inf: always switches
        log_regime_draws = np.log(regime_draws)
    stop = _on_grid(np.asarray(stop_day, dtype=np.float64), 0, batch, grid)
    day_kernel.fused_days(
        view,
        np.exp(view[Row.LOG_ETA]),
        np.ascontiguousarray(_on_grid(known, 2, batch, grid)),
        np.ascontiguousarray(normals, dtype=np.float32).reshape((n_days, N_NORMALS, *draw_grid)),
        draws,
        regime_draws,
        log_regime_draws,
        rows,
        # Per particle in the loop (a row per twin, or one for all).
        np.ascontiguousarray(np.broadcast_to(stop, (stop.shape[0], grid[1]))),
        first_day,
        day_coefficients(p),
    )
    if copied:
        X[...] = view.reshape(X.shape)


def day_step(
    X: F32,
    inp: DayInputs,
    p: PopulationParameters,
    *,
    normals: F32,
    uniforms: F32,
) -> None:
    """Advance every latent state in ``X`` by one day, in place (see :func:`advance_days`).

    Args:
        X: Particle matrix, shape ``(N_ROWS, *batch)``, float32; updated in place.
        inp: The day's known inputs.
        p: Population parameters.
        normals: Shape ``(N_NORMALS, *batch)`` standard normal draws.
        uniforms: Shape ``(N_UNIFORMS, *batch)`` uniform [0, 1) draws.
    """
    advance_days(X, [inp], p, normals=normals[None], uniforms=uniforms[None])


def ema_advance(X: F32, hours: float | F64, p: PopulationParameters, *, normal: F32) -> None:
    """Advance EMA affect A by ``hours`` with the exact OU transition, in place.

    A(t+Δ) = h + e^{-κ Δ}(A(t) - h) + σ_A√(1 - e^{-2κΔ})·ξ, with home base
    h = α_i + β_A z_S and attractor strength κ = κ_A·e^{-b z_S}, z_S = (S - μ_well)/5, both
    held at the current severity (DynAffect; Kuppens et al. 2010; Houben et al. 2015).

    Args:
        X: Particle matrix, updated in place (row A).
        hours: Elapsed time Δ >= 0, hours; scalar or broadcastable per twin.
        p: Population parameters.
        normal: Standard normal draws, batch shape.
    """
    z = (X[Row.S] - X[Row.MU_WELL]) / 5.0
    home = X[Row.ALPHA] + p.beta_a * z
    # Attractor strength weakens with severity: inertia rises with worse well-being (Houben 2015).
    kappa = p.kappa_a_per_h * np.exp(-p.kappa_a_severity * z)
    decay = np.exp(-kappa * np.asarray(hours, dtype=np.float32))
    spread = p.sigma_a * np.sqrt(1.0 - decay * decay)
    X[Row.A] = home + decay * (X[Row.A] - home) + spread * normal


def sample_prior(
    p: PopulationParameters,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    *,
    p_episode: float | F64,
    mu_ep_mean: float | F64 | None = None,
    mu_ep_sd: float | None = None,
) -> F32:
    """Draw latent states from the population prior (docs/model.md §2.6).

    Static parameters: μ_ep ~ N(mean, sd²) on [0, 27]; μ_well ~ N(2.5, 1.5²) on [0, 27];
    π ~ N(5, 4²)⁺; ln η ~ N(-σ²/2, σ²) with σ² = ln(1 + CV²) so E[η] = 1; g0 ~ N(3, 1.5²)⁺;
    α ~ N(0, 0.5²); q0 ~ N(0, 0.8²); ω ~ Bernoulli(0.15); course class chronic ~
    Bernoulli(``chronic_share``); relapse offset from K ~ Geometric prior episodes
    (:mod:`twin.model.covariates`). Dynamic states start at the equilibrium of their regime with
    the OU's stationary spread; drug and care states at zero.

    Args:
        p: Population parameters.
        shape: Batch shape.
        rng: Random generator (the caller's stream).
        p_episode: Probability the regime starts in an episode.
        mu_ep_mean: Mean of μ_ep (default ``p.mu_ep_mean``).
        mu_ep_sd: SD of μ_ep (default ``p.mu_ep_sd``).

    Returns:
        Particle matrix, shape ``(N_ROWS, *shape)``, float32.
    """
    X = np.zeros((N_ROWS, *shape), dtype=np.float32)
    mean = p.mu_ep_mean if mu_ep_mean is None else mu_ep_mean
    sd = p.mu_ep_sd if mu_ep_sd is None else mu_ep_sd
    X[Row.MU_EP] = np.clip(rng.normal(mean, sd, shape), 0.0, 27.0)
    X[Row.MU_WELL] = np.clip(rng.normal(p.mu_well_mean, p.mu_well_sd, shape), 0.0, 27.0)
    X[Row.PI] = np.maximum(rng.normal(p.pi_mean, p.pi_sd, shape), 0.0)
    log_var = math.log1p(p.eta_cv**2)
    X[Row.LOG_ETA] = rng.normal(-log_var / 2.0, math.sqrt(log_var), shape)
    X[Row.G0] = np.maximum(rng.normal(p.g0_mean, p.g0_sd, shape), 0.0)
    X[Row.ALPHA] = rng.normal(0.0, p.alpha_sd, shape)
    X[Row.Q0] = rng.normal(0.0, p.q_sd, shape)
    X[Row.OMEGA] = rng.random(shape) < p.omega_p
    X[Row.R] = rng.random(shape) < p_episode
    level = np.where(X[Row.R] > 0.5, X[Row.MU_EP], X[Row.MU_WELL])
    X[Row.S] = np.clip(level + rng.normal(0.0, p.sigma_s, shape), 0.0, 27.0)
    X[Row.M_S] = np.clip(level + rng.normal(0.0, p.sigma_s * 0.5, shape), 0.0, 27.0)
    g_level = X[Row.G0] + p.g1 * (X[Row.S] - X[Row.MU_WELL])
    X[Row.G] = np.clip(g_level + rng.normal(0.0, p.sigma_g, shape), 0.0, 21.0)
    X[Row.M_G] = np.clip(g_level + rng.normal(0.0, p.sigma_g * 0.5, shape), 0.0, 21.0)
    X[Row.Q] = X[Row.Q0] + (p.c_sq / 5.0) * (X[Row.S] - X[Row.MU_WELL])
    X[Row.A] = X[Row.ALPHA] + (p.beta_a / 5.0) * (X[Row.S] - X[Row.MU_WELL])
    # Drawn last, so the draws above are those of a model without course classes.
    X[Row.CHRONIC] = rng.random(shape) < p.chronic_share
    episodes = covariates.draw_prior_episodes(p.prior_episodes_mean, rng, shape)
    X[Row.LOG_RELAPSE] = covariates.relapse_offset(p, episodes)
    return X
