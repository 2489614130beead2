"""The day step of :func:`twin.model.dynamics.advance_days`, compiled: one pass, many days.

Written as NumPy expressions the day step made about a hundred passes over the particle matrix
(each ``np.where``, ``np.clip`` and arithmetic operator one pass, with a temporary array each),
so a forecast spent its time moving memory and paying per-call overhead. Here a block of a twin's
particles (:data:`BLOCK`, small enough to stay in the core's cache) is taken through all the days
of a call, day by day, four particles at a time in the CPU's vector registers: the same equations
(documented on ``advance_days``), for the particle filter, clinical forecasts, cohort runs and
calibration alike (numba compiles it on first use and caches the machine code on disk).

Arithmetic is float64 inside the loop, and the state is stored as float32 at the end of every
day: advancing seven days in one call or one day in seven calls gives the same bits, and so does
any vector width (each particle is computed alone; no sum is reordered). ``fastmath`` is off, so
NaN means "not logged" for adherence exactly as in the NumPy form. The loop calls no
transcendental function: η and the regime draws' logarithms are computed outside it by NumPy's
vectorised functions and the switch compares logarithms (see ``regime_draws``).

Why the vectorisation is asked for rather than left to LLVM: its cost model counts the float32
loads and stores around float64 arithmetic as too dear and keeps the loop scalar, and the loop
needs more run-time overlap checks between its arrays (the state rows written, the draws read)
than its default limit allows. :func:`_vectorising` lifts both while this one function is
compiled: measured here, 4 particles a step run the day 3.4-3.9 times faster than 1 (about 9
against 30 ns per particle-day), with the same bits.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BLOCK", "KNOWN", "N_COEFFICIENTS", "compile_loop", "fused_days", "load"]

Array = npt.NDArray[Any]
#: Length of the coefficient tuple ``fused_days`` unpacks.
N_COEFFICIENTS = 31
#: The known inputs of a day, in the order of ``fused_days``'s ``known`` (two drug slots).
KNOWN = ("care", "p_adh", "psi", "cbti", "sleep_debt", "inflow0", "inflow1", "taken0", "taken1",
         "decay0", "decay1")  # fmt: skip
_CARE, _P_ADH, _PSI, _CBTI, _SLEEP_DEBT, _INFLOW, _TAKEN, _DECAY = 0, 1, 2, 3, 4, 5, 7, 9
#: Particles taken through the days together: their state (21 float32 rows, 21 KiB) and a day's
#: draws stay in the core's cache from one day to the next.
BLOCK = 256

# Row indices, as in ``dynamics.Row`` (numba needs them as module constants, not attributes).
_R, _S, _G, _Q, _E, _P, _W, _U_PREV, _M_S, _M_G, _C0, _C1 = 0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12
_U_PEAK = 14
_MU_EP, _MU_WELL, _PI, _G0, _Q0, _OMEGA, _CHRONIC, _LOG_RELAPSE = 15, 16, 17, 19, 21, 22, 23, 24
_F32 = np.float32
# LLVM options while the kernel compiles (see the module docstring), and their defaults after.
_VECTOR_WIDTH = 4  # float64 lanes of a 256-bit register (AVX2)
_OVERLAP_CHECKS = 4096
_LLVM_DEFAULTS = {"force-vector-width": 0, "vectorize-memory-check-threshold": 128}


def fused_days(*args: Any) -> None:
    """Advance ``X`` by D days in place: the arguments of :func:`_make_loop`'s loop, compiled."""
    known = args[2]
    _compiled(per_particle=known.shape[3] > 1)(*args)


def load(*, assimilation_only: bool = False) -> None:
    """Compile the kernel now (or load it from numba's cache), so that no request waits for it.

    Long-lived processes that forecast (twin host actors) call this when they start.

    Args:
        assimilation_only: Only the variant that assimilation steps (known inputs per twin);
            the forecast's (per particle) is left to a later call.
    """
    _compiled(per_particle=False)
    if not assimilation_only:
        _compiled(per_particle=True)


@functools.cache
def _compiled(*, per_particle: bool) -> Callable[..., None]:
    """The loop, compiled for the one signature it is called with (see :func:`compile_loop`).

    On first use, not at import: numba probes its on-disk cache when a function is compiled, and
    the SDK, which imports the model but never steps it, need not load numba at all.
    """
    compiled: Callable[..., None] = compile_loop(cache=True, per_particle=per_particle)
    return compiled


def compile_loop(*, cache: bool, per_particle: bool) -> Any:
    """Compile the loop for its one signature, vectorised; ``cache``: numba's disk cache.

    Args:
        cache: Use numba's on-disk cache.
        per_particle: Known inputs per particle (``known``'s last axis is the batch's) rather
            than per twin.

    Returns:
        The numba dispatcher (tests read its LLVM IR: ``inspect_llvm(signatures[0])``).
    """
    import numba
    from numba import types

    def array(dtype: Any, ndim: int) -> Any:
        return types.Array(dtype, ndim, "C", readonly=True)

    signature = types.void(
        types.Array(types.float32, 3, "C"), array(types.float32, 2), array(types.float64, 4),
        array(types.float32, 4), array(types.float32, 4), array(types.float32, 3),
        array(types.float32, 3), types.Array(types.int64, 1, "A", readonly=True),
        array(types.float64, 2), types.int64,
        types.UniTuple(types.float64, N_COEFFICIENTS),  # type: ignore[no-untyped-call]
    )  # fmt: skip
    # error_model="numpy": a float division by zero gives inf, as in NumPy, instead of a check
    # and a raise on every division in the loop (no denominator there can be 0).
    with _vectorising():
        return numba.njit(signature, cache=cache, nogil=True, error_model="numpy")(
            _make_loop(per_particle)
        )


@contextlib.contextmanager
def _vectorising() -> Iterator[None]:
    """Within: LLVM vectorises every legal loop 4 lanes wide, with up to 4096 overlap checks.

    Process-wide LLVM options, restored to their defaults on the way out, so that no other
    numba function is compiled with them. (One that compiled concurrently would be vectorised
    too, with the same results: without fastmath LLVM reorders no floating-point operation.)
    """
    from llvmlite import binding

    def set_options(width: int, checks: int) -> None:
        binding.set_option("novamind", f"-force-vector-width={width}")
        binding.set_option("novamind", f"-vectorize-memory-check-threshold={checks}")

    set_options(_VECTOR_WIDTH, _OVERLAP_CHECKS)
    try:
        yield
    finally:
        set_options(*_LLVM_DEFAULTS.values())


def _make_loop(per_particle: bool) -> Callable[..., None]:
    """The loop, for known inputs per particle (``known``'s last axis is the batch's) or per twin.

    One body for both: ``per_particle`` is a constant of the compiled code, and each of the two
    compiles keeps only its own way of reading the inputs.
    """

    def loop(
        X: Array,
        eta: Array,
        known: Array,
        normals: Array,
        uniforms: Array,
        regime_draws: Array,
        log_regime_draws: Array,
        draw_rows: Array,
        stop_day: Array,
        first_day: int,
        coef: tuple[float, ...],
    ) -> None:
        """Advance ``X`` by D days in place (equations on ``dynamics.advance_days``).

        Args:
            X: Particle matrix viewed as ``(N_ROWS, B0, B1)``, float32; updated in place.
            eta: ``(B0, B1)`` drug sensitivity η_i = e^{ln η_i} (float32, computed outside the
                loop: NumPy's vectorised exp is several times cheaper than a scalar one).
            known: ``(D, N_KNOWN, 1 or B0, 1 or B1)`` float64, each day's known inputs stacked
                in the order of :data:`KNOWN` (a length-1 axis is broadcast over the batch):
                care intensity c_d in [0, 1]; p_adh, the probability an unlogged dose is taken;
                psi Ψ_d (points); cbti I_d (z); sleep_debt L_d; per slot k, inflow_k = dose_k/D_min·
                (1 - e^{-k_e}) (exposure gained if taken), taken_k (1.0, 0.0, NaN unknown) and
                decay_k = e^{-k_e}.
            normals: ``(D, N_NORMALS, T, B1)`` float32 standard normals ξ_S, ξ_G (independent), ξ_Q.
            uniforms: ``(D, N_UNIFORMS, T, B1)`` float32 uniforms; rows 1 and 2 decide the unlogged
                adherence of slots 0 and 1 (row 0 arrives as the next two arguments).
            regime_draws: ``(D, T, B1)`` float32 Exp(1) draws V = -ln(1 - U) of the regime uniform
                U: U < 1 - e^{-h} exactly when h > V, so the switch needs no exp in the loop.
            log_regime_draws: ``(D, T, B1)`` ln V: the relapse hazard h01·e^{z} exceeds V exactly
                when z > ln V - ln h01.
            draw_rows: ``(B0,)`` the row of the draws that row i of the batch uses (the scenarios
                of one twin share its draws: common random numbers, without copies).
            stop_day: ``(1 or B0, B1)`` float64: the day (counted like ``first_day``) from which
                the particle takes no dose at all (usual-care discontinuation); +inf for never.
            first_day: The number of the first day advanced (for ``stop_day``).
            coef: The ``N_COEFFICIENTS`` scalar coefficients (``dynamics.day_coefficients``;
                reciprocals of the time constants, so the loop multiplies instead of dividing).

        Every array is C-contiguous: the particle loop reads and writes with unit strides, which is
        what vectorises. :func:`compile_loop` compiles it for that one signature.
        """
        (
            a, s_innov, g_innov, rho, rho_c, c_q, g1, gamma_g, c_sq5, inv_tau_q, c_l, sigma_q,
            occ_scale, ed50, u_cap, h10, m_care1, m_drug1, ln_h01, ln_hr, beta_q,
            w_decay, k_w, e_max, inv_tau_e, inv_tau_p, inv_recall, rec_acute, rec_chronic,
            ln_m_stop, stop_decay,
        ) = coef  # fmt: skip
        n = X.shape[2]
        for i in range(X.shape[1]):
            ki = i if known.shape[2] > 1 else 0
            si = i if stop_day.shape[0] > 1 else 0
            di = draw_rows[i]
            for start in range(0, n, BLOCK):
                end = min(start + BLOCK, n)
                # Views of the block: unit strides, indexed from 0 (an index LLVM cannot prove
                # non-negative is wrapped like Python's, which keeps the loop scalar).
                # (X[row, i, start:end]: a 1-D slice of a C array is C; X[:, i, start:end] is not.)
                r_, s_, g_ = X[_R, i, start:end], X[_S, i, start:end], X[_G, i, start:end]
                q_, e_, p_ = X[_Q, i, start:end], X[_E, i, start:end], X[_P, i, start:end]
                w_, u_ = X[_W, i, start:end], X[_U_PREV, i, start:end]
                peak_ = X[_U_PEAK, i, start:end]
                ms_, mg_ = X[_M_S, i, start:end], X[_M_G, i, start:end]
                c0_, c1_ = X[_C0, i, start:end], X[_C1, i, start:end]
                mu_ep_, mu_well_ = X[_MU_EP, i, start:end], X[_MU_WELL, i, start:end]
                pi_, g0_ = X[_PI, i, start:end], X[_G0, i, start:end]
                q0_, omega_ = X[_Q0, i, start:end], X[_OMEGA, i, start:end]
                chronic_, log_relapse_ = X[_CHRONIC, i, start:end], X[_LOG_RELAPSE, i, start:end]
                eta_, stop_ = eta[i, start:end], stop_day[si, start:end]
                # The day's known inputs: per particle, the block's slices; per twin, one value
                # each, read once a day (a loop-invariant the vector loop broadcasts).
                # ``per_particle`` is a constant of the compiled code: each compile keeps one
                # of the two reads below.
                lo, hi = (start, end) if per_particle else (0, 1)
                for d in range(normals.shape[0]):
                    day = known[d]
                    care_, p_adh_ = day[_CARE, ki, lo:hi], day[_P_ADH, ki, lo:hi]
                    psi_, cbti_ = day[_PSI, ki, lo:hi], day[_CBTI, ki, lo:hi]
                    debt_ = day[_SLEEP_DEBT, ki, lo:hi]
                    inflow0_, inflow1_ = day[_INFLOW, ki, lo:hi], day[_INFLOW + 1, ki, lo:hi]
                    logged0_, logged1_ = day[_TAKEN, ki, lo:hi], day[_TAKEN + 1, ki, lo:hi]
                    decay0_, decay1_ = day[_DECAY, ki, lo:hi], day[_DECAY + 1, ki, lo:hi]
                    care_d, p_adh_d, psi_d, cbti_d = care_[0], p_adh_[0], psi_[0], cbti_[0]
                    debt_d, inflow0_d, inflow1_d = debt_[0], inflow0_[0], inflow1_[0]
                    logged0_d, logged1_d = logged0_[0], logged1_[0]
                    decay0_d, decay1_d = decay0_[0], decay1_[0]
                    n0_, n1_ = normals[d, 0, di, start:end], normals[d, 1, di, start:end]
                    n2_ = normals[d, 2, di, start:end]
                    a0_, a1_ = uniforms[d, 1, di, start:end], uniforms[d, 2, di, start:end]
                    v_, log_v_ = regime_draws[d, di, start:end], log_regime_draws[d, di, start:end]
                    today = first_day + d
                    for j in range(end - start):
                        care = care_[j] if per_particle else care_d
                        p_adh = p_adh_[j] if per_particle else p_adh_d
                        psi = psi_[j] if per_particle else psi_d
                        cbti = cbti_[j] if per_particle else cbti_d
                        debt = debt_[j] if per_particle else debt_d
                        inflow0 = inflow0_[j] if per_particle else inflow0_d
                        inflow1 = inflow1_[j] if per_particle else inflow1_d
                        logged0 = logged0_[j] if per_particle else logged0_d
                        logged1 = logged1_[j] if per_particle else logged1_d
                        decay0 = decay0_[j] if per_particle else decay0_d
                        decay1 = decay1_[j] if per_particle else decay1_d
                        r = np.float64(r_[j])
                        s = np.float64(s_[j])
                        g = np.float64(g_[j])
                        q = np.float64(q_[j])
                        e = np.float64(e_[j])
                        pc = np.float64(p_[j])
                        w = np.float64(w_[j])
                        c0 = np.float64(c0_[j])
                        c1 = np.float64(c1_[j])
                        mu_ep = np.float64(mu_ep_[j])
                        mu_well = np.float64(mu_well_[j])
                        q0 = np.float64(q0_[j])
                        u_prev = np.float64(u_[j])
                        peak = np.float64(peak_[j])
                        m_s = np.float64(ms_[j])
                        m_g = np.float64(mg_[j])
                        episode = r > 0.5
                        n0 = np.float64(n0_[j])

                        target = (mu_ep if episode else mu_well) - e - pc - psi + c_q * (q - q0) + w
                        s_new = min(max(target + a * (s - target) + s_innov * n0, 0.0), 27.0)
                        xi_g = rho * n0 + rho_c * n1_[j]
                        g_target = g0_[j] + g1 * (s - mu_well) - gamma_g * e
                        g_new = min(max(g_target + a * (g - g_target) + g_innov * xi_g, 0.0), 21.0)
                        q_target = q0 + c_sq5 * (s - mu_well) - cbti
                        q_drift = (q_target - q) * inv_tau_q + c_l * debt
                        q_new = q + q_drift + sigma_q * n2_[j]

                        exposure = c0 + c1
                        u = min(occ_scale * exposure / (exposure + ed50), u_cap)
                        stopped = today >= stop_[j]
                        drawn0 = 1.0 if a0_[j] < p_adh else 0.0
                        drawn1 = 1.0 if a1_[j] < p_adh else 0.0
                        took0 = 0.0 if stopped else (drawn0 if math.isnan(logged0) else logged0)
                        took1 = 0.0 if stopped else (drawn1 if math.isnan(logged1) else logged1)

                        u_low = min(u, 1.0)
                        rec = rec_chronic if chronic_[j] > 0.5 else rec_acute
                        recovery = h10 * rec * (1.0 + m_care1 * care) * (1.0 + m_drug1 * u_low)
                        # The fall below the recent peak: stopping, not a missed dose that the
                        # next dose restores.
                        fall = max(peak - u_low, 0.0)
                        relapse_z = (
                            ln_hr * u_low + beta_q * max(q, 0.0) + log_relapse_[j]
                            + ln_m_stop * fall
                        )  # fmt: skip
                        recovers = recovery > v_[j]
                        relapses = relapse_z > log_v_[j] - ln_h01
                        switch = recovers if episode else relapses

                        # Stored as float32: the state is rounded once a day.
                        w_[j] = w * w_decay + omega_[j] * max(u_prev - u, 0.0) * k_w
                        peak_[j] = max(peak, u_low) * stop_decay
                        e_[j] = e + (eta_[j] * e_max * u - e) * inv_tau_e
                        p_[j] = pc + (care * pi_[j] - pc) * inv_tau_p
                        u_[j] = u
                        c0_[j] = c0 * decay0 + inflow0 * took0
                        c1_[j] = c1 * decay1 + inflow1 * took1
                        r_[j] = 1.0 - r if switch else r
                        s32, g32 = _F32(s_new), _F32(g_new)
                        s_[j] = s32
                        g_[j] = g32
                        q_[j] = q_new
                        # The recall means follow the stored (float32) severities.
                        ms_[j] = m_s + (np.float64(s32) - m_s) * inv_recall
                        mg_[j] = m_g + (np.float64(g32) - m_g) * inv_recall

    return loop
