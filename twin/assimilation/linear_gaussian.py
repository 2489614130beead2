"""The linear-Gaussian sub-model and three filters that must agree on it (docs/model.md §7.5).

Sub-model (no regime, Gaussian observations), per twin and day t:

    x_{t+1} = F x_t + w_t,  w_t ~ N(0, Q)      x = (S - μ_S, G - μ_G), deviations in points
    y_t     = H x_t + v_t,  v_t ~ N(0, R)      y = (PHQ-9, GAD-7) deviations

with F = e^{-κ_S}·I (κ_S = 1/3 per day), Q the stationary innovations of the severity and anxiety
OUs (σ_S = 2, σ_G = 1.8, correlation ρ = 0.5) and R = diag(2.2², 2.0²).

- :func:`kalman`: the exact filter (Kalman 1960), batched over twins.
- :func:`particle_filter`: the bootstrap filter with systematic resampling at ESS < N/2.
- :func:`enkf`: the stochastic EnKF with perturbed observations (Evensen 1994; Burgers et al.
  1998), vectorised over twins and members.
- :func:`filterpy_enkf`: filterpy's ``EnsembleKalmanFilter`` run twin by twin (benchmark baseline,
  imported lazily so filterpy stays a development dependency).

Observation arrays have shape (twins, steps, m) with NaN where nothing was observed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin.assimilation import resampling
from twin.model.parameters import PopulationParameters

__all__ = ["FilterResult", "LinearGaussian", "enkf", "filterpy_enkf", "kalman", "particle_filter"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LinearGaussian:
    """Matrices of the sub-model: x' = F x + w (Q), y = H x + v (R), x_0 ~ N(0, P0)."""

    F: F64
    Q: F64
    H: F64
    R: F64
    P0: F64

    @classmethod
    def default(cls, p: PopulationParameters | None = None) -> LinearGaussian:
        """The severity/anxiety OU pair of the twin model with PHQ-9/GAD-7 noise."""
        p = p or PopulationParameters()
        a = math.exp(-p.kappa_s)
        stationary = np.array(
            [
                [p.sigma_s**2, p.rho_sg * p.sigma_s * p.sigma_g],
                [p.rho_sg * p.sigma_s * p.sigma_g, p.sigma_g**2],
            ]
        )
        return cls(
            F=a * np.eye(2),
            Q=(1.0 - a * a) * stationary,
            H=np.eye(2),
            R=np.diag([p.phq9_sd**2, p.gad7_sd**2]),
            P0=stationary * 4.0,  # a wide prior: between-person spread of the deviations
        )

    def simulate(self, rng: np.random.Generator, *, twins: int, steps: int) -> F64:
        """Observations of ``twins`` independent truths, shape (twins, steps, m)."""
        n = self.F.shape[0]
        x = rng.multivariate_normal(np.zeros(n), self.P0, size=twins)
        ys = np.empty((twins, steps, self.H.shape[0]))
        for t in range(steps):
            ys[:, t] = x @ self.H.T + rng.multivariate_normal(
                np.zeros(self.R.shape[0]), self.R, size=twins
            )
            x = x @ self.F.T + rng.multivariate_normal(np.zeros(n), self.Q, size=twins)
        return ys


@dataclass(frozen=True, slots=True)
class FilterResult:
    """Filtered means (twins, steps, n) and a per-step spread or precision measure.

    Attributes:
        mean: Posterior means after each step's update.
        var: Posterior variances of each state (twins, steps, n).
        ess: Effective sample size per twin and step (N for unweighted ensembles; ∞ for exact).
    """

    mean: F64
    var: F64
    ess: F64


def kalman(model: LinearGaussian, ys: F64) -> FilterResult:
    """Exact Kalman filter, batched over twins (all twins share the matrices)."""
    twins, steps, _ = ys.shape
    n = model.F.shape[0]
    x = np.zeros((twins, n))
    P = np.broadcast_to(model.P0, (twins, n, n)).copy()
    means = np.empty((twins, steps, n))
    var = np.empty((twins, steps, n))
    for t in range(steps):
        S = model.H @ P @ model.H.T + model.R
        K = P @ model.H.T @ np.linalg.inv(S)
        innovation = ys[:, t] - x @ model.H.T
        x = x + np.einsum("tij,tj->ti", K, innovation)
        P = (np.eye(n) - K @ model.H) @ P
        means[:, t] = x
        var[:, t] = np.diagonal(P, axis1=1, axis2=2)
        x = x @ model.F.T
        P = model.F @ P @ model.F.T + model.Q
    return FilterResult(means, var, np.full((twins, steps), np.inf))


def particle_filter(
    model: LinearGaussian, ys: F64, *, particles: int, rng: np.random.Generator
) -> FilterResult:
    """Bootstrap particle filter with systematic resampling when ESS < N/2."""
    twins, steps, _ = ys.shape
    n = model.F.shape[0]
    chol_q = np.linalg.cholesky(model.Q)
    r_inv = np.linalg.inv(model.R)
    x = rng.standard_normal((twins, particles, n)) @ np.linalg.cholesky(model.P0).T
    log_w = np.full((twins, particles), -math.log(particles))
    means = np.empty((twins, steps, n))
    var = np.empty((twins, steps, n))
    ess_out = np.empty((twins, steps))
    for t in range(steps):
        resid = ys[:, t, None, :] - x @ model.H.T
        log_w, _ = resampling.normalise(
            log_w - 0.5 * np.einsum("tpi,ij,tpj->tp", resid, r_inv, resid)
        )
        w = np.exp(log_w)
        means[:, t] = np.einsum("tp,tpi->ti", w, x)
        var[:, t] = np.einsum("tp,tpi->ti", w, (x - means[:, t, None]) ** 2)
        ess = resampling.effective_sample_size(log_w)
        ess_out[:, t] = ess
        low = ess < particles / 2
        if np.any(low):
            idx = resampling.systematic_indices(w[low], rng.random(int(low.sum())))
            x[low] = np.take_along_axis(x[low], idx[..., None], axis=1)
            log_w[low] = -math.log(particles)
        x = x @ model.F.T + rng.standard_normal(x.shape) @ chol_q.T
    return FilterResult(means, var, ess_out)


def enkf(model: LinearGaussian, ys: F64, *, members: int, rng: np.random.Generator) -> FilterResult:
    """Stochastic EnKF (perturbed observations), vectorised over twins and members.

    Analysis: K = P_xy P_yy⁻¹ from the ensemble's sample covariances (with R added to P_yy),
    x_j ← x_j + K (y + ε_j - H x_j), ε_j ~ N(0, R).
    """
    twins, steps, m = ys.shape
    n = model.F.shape[0]
    chol_q = np.linalg.cholesky(model.Q)
    chol_r = np.linalg.cholesky(model.R)
    x = rng.standard_normal((twins, members, n)) @ np.linalg.cholesky(model.P0).T
    means = np.empty((twins, steps, n))
    var = np.empty((twins, steps, n))
    for t in range(steps):
        hx = x @ model.H.T
        dx = x - x.mean(axis=1, keepdims=True)
        dy = hx - hx.mean(axis=1, keepdims=True)
        p_xy = np.einsum("tki,tkj->tij", dx, dy) / (members - 1)
        p_yy = np.einsum("tki,tkj->tij", dy, dy) / (members - 1) + model.R
        gain = np.linalg.solve(p_yy, p_xy.transpose(0, 2, 1)).transpose(0, 2, 1)  # (T, n, m)
        perturbed = ys[:, t, None, :] + rng.standard_normal((twins, members, m)) @ chol_r.T
        x = x + np.einsum("tij,tkj->tki", gain, perturbed - hx)
        means[:, t] = x.mean(axis=1)
        var[:, t] = x.var(axis=1, ddof=1)
        x = x @ model.F.T + rng.standard_normal(x.shape) @ chol_q.T
    return FilterResult(means, var, np.full((twins, steps), float(members)))


def filterpy_enkf(model: LinearGaussian, ys: F64, *, members: int) -> FilterResult:
    """Filterpy's EnsembleKalmanFilter, one twin at a time (the benchmark's baseline)."""
    # filterpy is a development dependency, imported only for this baseline.
    from filterpy.kalman import EnsembleKalmanFilter

    twins, steps, m = ys.shape
    n = model.F.shape[0]
    means = np.empty((twins, steps, n))
    var = np.empty((twins, steps, n))
    F, H = model.F, model.H
    for i in range(twins):
        f = EnsembleKalmanFilter(
            x=np.zeros(n),
            P=model.P0,
            dim_z=m,
            dt=1.0,
            N=members,
            hx=lambda s: H @ s,
            fx=lambda s, dt: F @ s,
        )
        f.Q = model.Q
        f.R = model.R
        for t in range(steps):
            f.update(ys[i, t])
            means[i, t] = f.x
            var[i, t] = np.diag(f.P)
            f.predict()
    return FilterResult(means, var, np.full((twins, steps), float(members)))
