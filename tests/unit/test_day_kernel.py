"""The compiled day step against the equations written as NumPy expressions.

``_numpy_day_step`` is the day step as it was before it was compiled (one NumPy pass per
operation); it is the oracle here, term by term the docstring of ``dynamics.day_step``.
"""

import math

import numpy as np
import pytest

from twin import errors
from twin.model import day_kernel, dynamics, pharmacology
from twin.model.dynamics import N_NORMALS, N_UNIFORMS, SLOTS, DayInputs, Row
from twin.model.parameters import PopulationParameters

# Course classes that differ, so the oracle checks which one each particle follows.
P = PopulationParameters(rec_acute=2.0, rec_chronic=0.3, m_stop=3.0)


def _numpy_day_step(X, inp, p, normals, uniforms):
    R, S, G, Q = X[Row.R], X[Row.S], X[Row.G], X[Row.Q]
    E, Pc, W = X[Row.E], X[Row.P], X[Row.W]
    mu_well = X[Row.MU_WELL]
    episode = R > 0.5
    a = math.exp(-p.kappa_s)
    innov = math.sqrt(1.0 - a * a)
    target = (
        np.where(episode, X[Row.MU_EP], mu_well) - E - Pc - inp.psi + p.c_q * (Q - X[Row.Q0]) + W
    )
    s_new = np.clip(target + a * (S - target) + (p.sigma_s * innov) * normals[0], 0.0, 27.0)
    xi_g = p.rho_sg * normals[0] + math.sqrt(1.0 - p.rho_sg**2) * normals[1]
    g_target = X[Row.G0] + p.g1 * (S - mu_well) - p.gamma_g * E
    g_new = np.clip(g_target + a * (G - g_target) + (p.sigma_g * innov) * xi_g, 0.0, 21.0)
    q_target = X[Row.Q0] + (p.c_sq / 5.0) * (S - mu_well) - inp.cbti
    q_new = Q + (q_target - Q) / p.tau_q + p.c_l * inp.sleep_debt + p.sigma_q * normals[2]
    u = pharmacology.drive(X[Row.C0] + X[Row.C1], p)
    for k, row in enumerate((Row.C0, Row.C1)):
        taken = np.where(np.isnan(inp.taken[k]), uniforms[1 + k] < inp.p_adh, inp.taken[k])
        X[row] = pharmacology.pk_step(X[row], inp.dose_rel[k] * taken, inp.k_e[k])
    u_low = np.minimum(u, 1.0)
    rec = np.where(X[Row.CHRONIC] > 0.5, p.rec_chronic, p.rec_acute)
    recovery = p.h10 * rec * (1.0 + (p.m_care - 1.0) * inp.care) * (1.0 + (p.m_drug - 1.0) * u_low)
    relapse = p.h01 * np.exp(
        math.log(p.hr_drug) * u_low
        + p.beta_q * np.maximum(Q, 0.0)
        + X[Row.LOG_RELAPSE]
        + math.log(p.m_stop) * np.maximum(X[Row.U_PEAK] - u_low, 0.0)
    )
    switch = uniforms[0] < 1.0 - np.exp(-np.where(episode, recovery, relapse))
    X[Row.W] = (
        W * math.exp(-1.0 / p.tau_w) + X[Row.OMEGA] * np.maximum(X[Row.U_PREV] - u, 0.0) * p.k_w
    )
    X[Row.E] = E + (np.exp(X[Row.LOG_ETA]) * p.e_max * u - E) / p.tau_e
    X[Row.P] = Pc + (inp.care * X[Row.PI] - Pc) / p.tau_p
    X[Row.U_PEAK] = np.maximum(X[Row.U_PEAK], u_low) * math.exp(-1.0 / p.tau_stop)
    X[Row.U_PREV] = u
    X[Row.R] = np.where(switch, 1.0 - R, R)
    X[Row.S], X[Row.G], X[Row.Q] = s_new, g_new, q_new
    X[Row.M_S] += (s_new - X[Row.M_S]) / p.recall_days
    X[Row.M_G] += (g_new - X[Row.M_G]) / p.recall_days


def _inputs(rng, twins: int, per_particle_taken: bool) -> DayInputs:
    """Per-twin inputs (shape (twins, 1)), with a mix of logged, missed and unknown doses."""
    col = lambda values: np.asarray(values, np.float32)[:, None]  # noqa: E731
    taken = rng.choice([1.0, 0.0, np.nan], size=(SLOTS, twins, 1)).astype(np.float32)
    if per_particle_taken:  # usual-care stops: some particles have stopped the drug
        taken = np.where(rng.random((SLOTS, twins, 500)) < 0.3, np.float32(0.0), taken)
    return DayInputs(
        care=col(rng.uniform(0.0, 1.0, twins)),  # care intensities between none and trial
        dose_rel=rng.uniform(0.0, 3.0, (SLOTS, twins, 1)).astype(np.float32),
        taken=taken,
        p_adh=col(rng.uniform(0.5, 1.0, twins)),
        k_e=rng.uniform(0.02, 0.8, (SLOTS, twins, 1)).astype(np.float32),
        psi=col(rng.uniform(0.0, 3.0, twins)),
        cbti=col(rng.uniform(0.0, 0.5, twins)),
        sleep_debt=col(rng.uniform(0.0, 1.0, twins)),
    )


@pytest.mark.parametrize("per_particle_taken", [False, True])
def test_compiled_day_step_follows_the_equations_for_30_days(per_particle_taken):
    rng = np.random.default_rng(7)
    twins, n = 6, 500
    X = dynamics.sample_prior(P, (twins, n), rng, p_episode=0.7)
    X[Row.OMEGA] = 1.0  # every particle susceptible: withdrawal load is exercised
    expected = X.copy()
    for _ in range(30):
        inp = _inputs(rng, twins, per_particle_taken)
        normals = rng.standard_normal((N_NORMALS, twins, n), dtype=np.float32)
        uniforms = rng.random((N_UNIFORMS, twins, n), dtype=np.float32)
        dynamics.day_step(X, inp, P, normals=normals, uniforms=uniforms)
        _numpy_day_step(expected, inp, P, normals, uniforms)
        # Float64 inside the kernel vs float32 NumPy: continuous rows agree to float32 rounding;
        # regime switches and adherence draws are the same decisions (no draw sits on a boundary).
        np.testing.assert_array_equal(X[Row.R], expected[Row.R])
        np.testing.assert_allclose(X, expected, rtol=2e-5, atol=2e-5)
        X[...] = expected  # both continue from the same state: differences cannot compound
    assert 0.0 < X[Row.R].mean() < 1.0 and X[Row.W].max() > 0.0 and X[Row.C0].max() > 0.0


def test_scalar_inputs_one_dimensional_batch_and_a_strided_view():
    rng = np.random.default_rng(3)
    X = dynamics.sample_prior(P, (400,), rng, p_episode=0.5)
    inp = DayInputs(
        care=1.0, dose_rel=np.array([[1.5], [0.0]]), taken=np.array([[math.nan], [1.0]]),
        p_adh=0.8, k_e=np.array([[0.3], [0.0]]), psi=0.5, cbti=0.0, sleep_debt=0.2,
    )  # fmt: skip
    normals = rng.standard_normal((N_NORMALS, 400), dtype=np.float32)
    uniforms = rng.random((N_UNIFORMS, 400), dtype=np.float32)
    expected = X.copy()
    _numpy_day_step(expected, inp, P, normals, uniforms)
    strided = np.zeros((dynamics.N_ROWS, 800), np.float32)
    strided[:, ::2] = X
    view = strided[:, ::2]  # not contiguous: advanced as a copy and written back
    dynamics.day_step(view, inp, P, normals=normals, uniforms=uniforms)
    np.testing.assert_allclose(view, expected, rtol=2e-5, atol=2e-5)
    assert not strided[:, 1::2].any()
    dynamics.day_step(X, inp, P, normals=normals, uniforms=uniforms)
    np.testing.assert_array_equal(X, view)


def test_a_week_in_one_call_equals_seven_days_bit_for_bit_with_usual_care_stops():
    rng = np.random.default_rng(5)
    twins, n = 4, 300
    X = dynamics.sample_prior(P, (twins, n), rng, p_episode=0.6)
    X[Row.C0] = 1.5  # on a drug: the stop days matter
    week = [_inputs(rng, twins, per_particle_taken=False) for _ in range(7)]
    normals = rng.standard_normal((7, N_NORMALS, twins, n), dtype=np.float32)
    uniforms = rng.random((7, N_UNIFORMS, twins, n), dtype=np.float32)
    stop = np.where(rng.random((twins, n)) < 0.5, rng.integers(10, 17, (twins, n)), np.inf)
    by_day = X.copy()
    for d in range(7):
        stopped = (10 + d >= stop)[None]
        inp = week[d]
        taken = np.where(stopped, np.float32(0.0), inp.taken)
        day = DayInputs(**{**{f: getattr(inp, f) for f in inp.__slots__}, "taken": taken})
        dynamics.day_step(by_day, day, P, normals=normals[d], uniforms=uniforms[d])
    dynamics.advance_days(
        X, week, P, normals=normals, uniforms=uniforms, stop_day=stop, first_day=10
    )
    np.testing.assert_array_equal(X, by_day)
    assert (stop < 17).any() and not np.isinf(stop).all()


def test_rows_that_share_draws_read_them_in_place():
    """Scenarios of one twin read the twin's draws by row (``draw_rows``), as if copied."""
    rng = np.random.default_rng(8)
    twins, n = 3, 200
    rows = np.array([0, 0, 1, 2, 2, 2])
    X = dynamics.sample_prior(P, (len(rows), n), rng, p_episode=0.6)
    week = [_inputs(rng, len(rows), per_particle_taken=False) for _ in range(7)]
    normals = rng.standard_normal((7, N_NORMALS, twins, n), dtype=np.float32)
    uniforms = rng.random((7, N_UNIFORMS, twins, n), dtype=np.float32)
    copied = X.copy()
    dynamics.advance_days(
        copied, week, P, normals=normals[:, :, rows], uniforms=uniforms[:, :, rows]
    )
    dynamics.advance_days(X, week, P, normals=normals, uniforms=uniforms, draw_rows=rows)
    np.testing.assert_array_equal(X, copied)
    for bad in (np.array([0, 0, 1, 2, 2, 3]), np.array([0, 1, 2]), np.array([-1, 0, 1, 2, 2, 2])):
        with pytest.raises(errors.InvalidInputError):
            dynamics.advance_days(X, week, P, normals=normals, uniforms=uniforms, draw_rows=bad)


def test_the_particle_loop_is_vectorised_and_reads_draws_of_any_layout():
    """The loop compiles to 4-lane vector arithmetic (what makes it fast), whatever the CPU.

    LLVM keeps it scalar when left to its cost model, or when an index may be negative or a
    stride is unknown; the IR is the same on every target, so this fails on any machine if a
    change to the loop makes it scalar again. Draws in another memory layout (particle-major,
    as a caller might keep them) give the same bits as C-contiguous ones.
    """
    for per_particle in (False, True):  # known inputs per twin, per particle
        kernel = day_kernel.compile_loop(cache=False, per_particle=per_particle)
        ir = kernel.inspect_llvm(kernel.signatures[0])
        assert "fmul <4 x double>" in ir and "fpext <4 x float>" in ir

    rng = np.random.default_rng(9)
    twins, n = 4, 300
    X = dynamics.sample_prior(P, (twins, n), rng, p_episode=0.6)
    week = [_inputs(rng, twins, per_particle_taken=False) for _ in range(7)]
    normals = rng.standard_normal((7, N_NORMALS, twins, n), dtype=np.float32)
    uniforms = rng.random((7, N_UNIFORMS, twins, n), dtype=np.float32)
    particle_major = [np.empty((twins, n, 7, k), np.float32).transpose(2, 3, 0, 1)
                      for k in (N_NORMALS, N_UNIFORMS)]  # fmt: skip
    particle_major[0][...], particle_major[1][...] = normals, uniforms
    expected = X.copy()
    dynamics.advance_days(expected, week, P, normals=normals, uniforms=uniforms)
    dynamics.advance_days(X, week, P, normals=particle_major[0], uniforms=particle_major[1])
    np.testing.assert_array_equal(X, expected)
