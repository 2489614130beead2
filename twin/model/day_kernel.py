"""The day step of :func:`twin.model.dynamics.advance_days`, compiled: one pass, many days.

Written as NumPy expressions the day step made about a hundred passes over the particle matrix
(each ``np.where``, ``np.clip`` and arithmetic operator one pass, with a temporary array each),
so a forecast spent its time moving memory and paying per-call overhead. Here each latent state is
loaded once, advanced through all the days of a call in registers, and stored once: the same
equations (documented on ``advance_days``), several times faster for the particle filter,
clinical forecasts, cohort runs and calibration alike (numba compiles it on first use and caches
the machine code on disk). Going particle by particle through a week, rather than day by day
through the batch, keeps a large batch from turning the step into a memory-bandwidth problem.

Arithmetic is float64 inside the loop, and the state is rounded to float32 at the end of every
day, as it is stored: advancing seven days in one call or one day in seven calls gives the same
bits. ``fastmath`` is off, so NaN means "not logged" for adherence exactly as in the NumPy form
and results do not depend on the CPU's vector width. The loop calls no transcendental function:
a scalar ``exp`` cost more than the rest of the step, so η and the regime draws' logarithms are
computed outside it by NumPy's vectorised functions and the switch compares logarithms (see
``regime_draws``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["KNOWN", "N_COEFFICIENTS", "fused_days", "load"]

Array = npt.NDArray[Any]
#: Length of the coefficient tuple ``fused_days`` unpacks.
N_COEFFICIENTS = 27
#: The known inputs of a day, in the order of ``fused_days``'s ``known`` (two drug slots).
KNOWN = ("care", "p_adh", "psi", "cbti", "sleep_debt", "inflow0", "inflow1", "taken0", "taken1",
         "decay0", "decay1")  # fmt: skip
_CARE, _P_ADH, _PSI, _CBTI, _SLEEP_DEBT, _INFLOW, _TAKEN, _DECAY = 0, 1, 2, 3, 4, 5, 7, 9

# Row indices, as in ``dynamics.Row`` (numba needs them as module constants, not attributes).
_R, _S, _G, _Q, _E, _P, _W, _U_PREV, _M_S, _M_G, _C0, _C1 = 0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12
_MU_EP, _MU_WELL, _PI, _G0, _Q0, _OMEGA = 14, 15, 16, 18, 20, 21
_F32, _F64 = np.float32, np.float64


def fused_days(*args: Any) -> None:
    """Advance ``X`` by D days in place: the arguments of :func:`_loop`, compiled."""
    _compiled()(*args)


def load() -> None:
    """Compile the kernel now (or load it from numba's cache), so that no request waits for it.

    Long-lived processes that forecast (twin host actors) call this when they start.
    """
    _compiled()


@functools.cache
def _compiled() -> Callable[..., None]:
    """The loop, compiled for the one signature it is called with.

    On first use, not at import: numba probes its on-disk cache when a function is compiled, and
    the SDK, which imports the model but never steps it, need not load numba at all.
    """
    import numba
    from numba import types

    def array(dtype: Any, ndim: int) -> Any:
        return types.Array(dtype, ndim, "A", readonly=True)

    draws = array(types.float32, 4)
    signature = types.void(
        types.Array(types.float32, 3, "C"), array(types.float32, 2), array(types.float64, 4),
        draws, draws, array(types.float32, 3), array(types.float32, 3), array(types.int64, 1),
        array(types.float64, 2), types.int64,
        types.UniTuple(types.float64, N_COEFFICIENTS),  # type: ignore[no-untyped-call]
    )  # fmt: skip
    # error_model="numpy": a float division by zero gives inf, as in NumPy, instead of a check
    # and a raise on every division in the loop (no denominator there can be 0).
    compiled: Callable[..., None] = numba.njit(
        signature, cache=True, nogil=True, error_model="numpy"
    )(_loop)
    return compiled


def _loop(
    X: Array,
    eta: Array,
    known: Array,
    normals: Array,
    adherence_draws: Array,
    regime_draws: Array,
    log_regime_draws: Array,
    draw_rows: Array,
    stop_day: Array,
    first_day: int,
    coef: tuple[float, ...],
) -> None:
    """Advance ``X`` by D days in place (equations on :func:`twin.model.dynamics.advance_days`).

    Args:
        X: Particle matrix viewed as ``(N_ROWS, B0, B1)``, C-contiguous float32; updated in place.
        eta: ``(B0, B1)`` drug sensitivity η_i = e^{ln η_i} (float32, computed outside the loop:
            NumPy's vectorised exp is several times cheaper than a scalar one per element).
        known: ``(D, N_KNOWN, 1 or B0, 1 or B1)`` float64, each day's known inputs stacked in the
            order of :data:`KNOWN` (a length-1 axis is broadcast over the batch):
            care c_d (1.0 or 0.0); p_adh, the probability an unlogged dose is taken; psi Ψ_d
            (points); cbti I_d (z); sleep_debt L_d; per slot k, inflow_k = dose_k/D_min·
            (1 - e^{-k_e}) (exposure gained if taken), taken_k (1.0, 0.0, NaN unknown) and
            decay_k = e^{-k_e}.
        normals: ``(D, N_NORMALS, T, B1)`` float32 standard normals ξ_S, ξ_G (independent), ξ_Q.
        adherence_draws: ``(D, SLOTS, T, B1)`` float32 uniforms: adherence of slots 0 and 1.
        regime_draws: ``(D, T, B1)`` float32 Exp(1) draws V = -ln(1 - U) of the regime uniform
            U: U < 1 - e^{-h} exactly when h > V, so the switch needs no exp in the loop.
        log_regime_draws: ``(D, T, B1)`` ln V: the relapse hazard h01·e^{z} exceeds V exactly
            when z > ln V - ln h01.
        draw_rows: ``(B0,)`` the row of the draws that row i of the batch uses (the scenarios
            of one twin share its draws: common random numbers, without copies).
        stop_day: ``(1 or B0, 1 or B1)`` float64: the day (counted like ``first_day``) from which
            the particle takes no dose at all (usual-care discontinuation); +inf for never.
        first_day: The number of the first day advanced (for ``stop_day``).
        coef: The ``N_COEFFICIENTS`` scalar coefficients (``dynamics.day_coefficients``;
            reciprocals of the time constants, so the loop multiplies instead of dividing).

    Inputs may be broadcast views (zero strides) of any layout: :func:`_compiled` compiles this
    once, for that signature.
    """
    # The state is carried in float64 and rounded to float32 (_F64(_F32(x))) at the end of every
    # day, as it is stored.
    (
        a, s_innov, g_innov, rho, rho_c, c_q, g1, gamma_g, c_sq5, inv_tau_q, c_l, sigma_q,
        occ_scale, ed50, u_cap, h10, m_care, m_drug1, ln_h01, ln_hr, beta_q,
        w_decay, k_w, e_max, inv_tau_e, inv_tau_p, inv_recall,
    ) = coef  # fmt: skip
    # An input of length 1 along a batch axis applies to the whole axis (broadcasting).
    ri = 1 if known.shape[2] > 1 else 0
    rj = 1 if known.shape[3] > 1 else 0
    si = 1 if stop_day.shape[0] > 1 else 0
    sj = 1 if stop_day.shape[1] > 1 else 0
    for i in range(X.shape[1]):
        for j in range(X.shape[2]):
            ki, kj, di = i * ri, j * rj, draw_rows[i]
            stop = stop_day[i * si, j * sj]
            r = np.float64(X[_R, i, j])
            s = np.float64(X[_S, i, j])
            g = np.float64(X[_G, i, j])
            q = np.float64(X[_Q, i, j])
            e = np.float64(X[_E, i, j])
            pc = np.float64(X[_P, i, j])
            w = np.float64(X[_W, i, j])
            u_prev = np.float64(X[_U_PREV, i, j])
            m_s = np.float64(X[_M_S, i, j])
            m_g = np.float64(X[_M_G, i, j])
            c0 = np.float64(X[_C0, i, j])
            c1 = np.float64(X[_C1, i, j])
            mu_ep = np.float64(X[_MU_EP, i, j])
            mu_well = np.float64(X[_MU_WELL, i, j])
            pi = np.float64(X[_PI, i, j])
            g0 = np.float64(X[_G0, i, j])
            q0 = np.float64(X[_Q0, i, j])
            omega = np.float64(X[_OMEGA, i, j])
            eta_ij = np.float64(eta[i, j])
            for d in range(normals.shape[0]):
                day = known[d]
                care = day[_CARE, ki, kj]
                episode = r > 0.5
                n0 = np.float64(normals[d, 0, di, j])

                target = (
                    (mu_ep if episode else mu_well) - e - pc - day[_PSI, ki, kj]
                    + c_q * (q - q0) + w
                )  # fmt: skip
                s_new = min(max(target + a * (s - target) + s_innov * n0, 0.0), 27.0)
                xi_g = rho * n0 + rho_c * normals[d, 1, di, j]
                g_target = g0 + g1 * (s - mu_well) - gamma_g * e
                g_new = min(max(g_target + a * (g - g_target) + g_innov * xi_g, 0.0), 21.0)
                q_target = q0 + c_sq5 * (s - mu_well) - day[_CBTI, ki, kj]
                q_drift = (q_target - q) * inv_tau_q + c_l * day[_SLEEP_DEBT, ki, kj]
                q_new = q + q_drift + sigma_q * normals[d, 2, di, j]

                exposure = c0 + c1
                u = min(occ_scale * exposure / (exposure + ed50), u_cap)
                stopped = first_day + d >= stop
                p_adh = day[_P_ADH, ki, kj]
                logged0, logged1 = day[_TAKEN, ki, kj], day[_TAKEN + 1, ki, kj]
                drawn0 = 1.0 if adherence_draws[d, 0, di, j] < p_adh else 0.0
                drawn1 = 1.0 if adherence_draws[d, 1, di, j] < p_adh else 0.0
                took0 = 0.0 if stopped else (drawn0 if math.isnan(logged0) else logged0)
                took1 = 0.0 if stopped else (drawn1 if math.isnan(logged1) else logged1)
                c0 = _F64(_F32(c0 * day[_DECAY, ki, kj] + day[_INFLOW, ki, kj] * took0))
                c1 = _F64(_F32(c1 * day[_DECAY + 1, ki, kj] + day[_INFLOW + 1, ki, kj] * took1))

                u_low = min(u, 1.0)
                recovery = h10 * (m_care if care > 0.5 else 1.0) * (1.0 + m_drug1 * u_low)
                relapse_z = ln_hr * u_low + beta_q * max(q, 0.0)
                recovers = recovery > regime_draws[d, di, j]
                relapses = relapse_z > log_regime_draws[d, di, j] - ln_h01
                switch = recovers if episode else relapses

                w = _F64(_F32(w * w_decay + omega * max(u_prev - u, 0.0) * k_w))
                e = _F64(_F32(e + (eta_ij * e_max * u - e) * inv_tau_e))
                pc = _F64(_F32(pc + (care * pi - pc) * inv_tau_p))
                u_prev = _F64(_F32(u))
                r = 1.0 - r if switch else r
                s = _F64(_F32(s_new))
                g = _F64(_F32(g_new))
                q = _F64(_F32(q_new))
                m_s = _F64(_F32(m_s + (s - m_s) * inv_recall))
                m_g = _F64(_F32(m_g + (g - m_g) * inv_recall))
            X[_R, i, j] = r
            X[_S, i, j] = s
            X[_G, i, j] = g
            X[_Q, i, j] = q
            X[_E, i, j] = e
            X[_P, i, j] = pc
            X[_W, i, j] = w
            X[_U_PREV, i, j] = u_prev
            X[_M_S, i, j] = m_s
            X[_M_G, i, j] = m_g
            X[_C0, i, j] = c0
            X[_C1, i, j] = c1
