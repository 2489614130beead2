"""Forecasts: propagate a twin's posterior forward under scenarios, many twins at once.

For each twin, the weighted posterior is first resampled to equal weights (systematic, with a
generator keyed by the twin and its last event), then every scenario of that twin is run from
the same particles with the **same random numbers** (common random numbers), so scenario
differences are paired per particle and their Monte-Carlo error is small. All (twin, scenario)
pairs advance together in one ``(rows, pairs, particles)`` matrix. The day step's draws are
counter-based (:mod:`twin.model.counter_random`, keyed by a stream key drawn from the twin's
event-keyed generator): a function of the twin, its last event, the seed and the day only.

Observable scores are drawn from the observation model each week (docs/model.md §8: the fan
chart shows the *observable* PHQ-9, latent + measurement noise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin import errors
from twin.assimilation import resampling
from twin.assimilation.state import FORECAST_SALT, TwinState, event_generator
from twin.domain.drugs import drug
from twin.domain.specs import MAX_HORIZON_DAYS, Scenario
from twin.model import care, counter_random, dynamics, likelihood, pharmacology
from twin.model.dynamics import Row
from twin.model.inputs import InputTracker
from twin.model.parameters import PopulationParameters

__all__ = ["Draws", "simulate_scenarios"]

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Draws:
    """Simulated weekly futures of one twin under one scenario.

    Attributes:
        scenario: The scenario.
        phq9: Observable PHQ-9 totals, shape (weeks, N), week w at row w - 1.
        gad7: Observable GAD-7 totals, shape (weeks, N).
        severity: Latent severity S at each week, shape (weeks, N).
        state: The twin the draws came from (for reference scores and freshness).
    """

    scenario: Scenario
    phq9: I64
    gad7: I64
    severity: F32
    state: TwinState


@dataclass(slots=True)
class _Plan:
    """Per-day known inputs of one (twin, scenario) pair over the horizon."""

    dose_rel: npt.NDArray[np.float32]  # (days, SLOTS)
    k_e: npt.NDArray[np.float32]  # (days, SLOTS)
    care: npt.NDArray[np.float32]  # (days,)
    psi: npt.NDArray[np.float32]
    cbti: npt.NDArray[np.float32]
    sleep_debt: npt.NDArray[np.float32]
    p_adh: float
    usual_care: bool


def _care_plan(state: TwinState, scenario: Scenario, days: int) -> npt.NDArray[np.float32]:
    """Care intensity c_d over the horizon (:mod:`twin.model.care`), shape ``(days,)``.

    The twin's own setting (the scenario's ``care`` unset, or the same setting) continues its
    schedule from the day it began; another setting begins on the forecast's first day.
    """
    if scenario.care is None or scenario.care == state.care_setting:
        return np.array([state.care_intensity(d) for d in range(days)], np.float32)
    return care.intensity(scenario.care, np.arange(days)).astype(np.float32)


def _dose_changes(state: TwinState, scenario: Scenario) -> dict[int, list[tuple[int, str, float]]]:
    """The scenario's dose changes by day, as (drug slot, drug, mg/day).

    A drug started in a stopped drug's slot takes the slot from its day on (the residual
    exposure then decays at the new drug's rate, as when a twin applies a switch).

    Raises:
        InvalidInputError: The scenario starts a drug while two others are prescribed.
    """
    slots = list(state.slots)
    planned = list(state.prescribed_mg)  # the doses as the scenario's changes take effect
    changes: dict[int, list[tuple[int, str, float]]] = {}
    # On one day, stops before starts: a switch frees its slot for the new drug.
    for change in sorted(scenario.doses, key=lambda c: (c.day, c.mg_per_day > 0)):
        if change.drug in slots:
            k = slots.index(change.drug)
        elif change.mg_per_day == 0.0:
            continue  # a stop of a drug the twin does not take changes nothing
        elif None in slots:
            k = slots.index(None)
        else:
            stopped = [k for k in range(dynamics.SLOTS) if planned[k] == 0.0]
            if not stopped:
                raise errors.InvalidInputError(
                    f"scenario starts {change.drug} while two other drugs are prescribed"
                )
            # The twin's own rule (twin.assimilation.kernel): the least exposed stopped slot.
            k = min(stopped, key=lambda j: float(np.max(state.particles[Row.C0 + j])))
        slots[k] = change.drug
        planned[k] = change.mg_per_day
        changes.setdefault(change.day, []).append((k, change.drug, change.mg_per_day))
    return changes


def scenario_refusal(state: TwinState, scenarios: Sequence[Scenario]) -> str | None:
    """Why the scenarios cannot be forecast for this twin (``None``: they can).

    A cohort leaves such a twin out with this reason rather than failing for every twin.
    """
    for scenario in scenarios:
        try:
            _dose_changes(state, scenario)
        except errors.InvalidInputError as exc:
            return str(exc)
    return None


def _plan(state: TwinState, scenario: Scenario, days: int, p: PopulationParameters) -> _Plan:
    changes = _dose_changes(state, scenario)
    slots = list(state.slots)
    mg = list(state.prescribed_mg)
    tracker = InputTracker(*state.tracker.as_tuple())
    therapy = np.bincount(scenario.therapy_session_days, minlength=days + 1)
    cbti = np.bincount(scenario.cbti_session_days, minlength=days + 1)
    therapy[0] += state.sessions_today
    cbti[0] += state.cbti_today
    sleep_h = state.sleep_h if scenario.sleep_hours is None else scenario.sleep_hours
    plan = _Plan(
        dose_rel=np.zeros((days, dynamics.SLOTS), np.float32),
        k_e=np.zeros((days, dynamics.SLOTS), np.float32),
        care=_care_plan(state, scenario, days),
        psi=np.zeros(days, np.float32),
        cbti=np.zeros(days, np.float32),
        sleep_debt=np.zeros(days, np.float32),
        p_adh=state.p_adherence if scenario.adherence is None else scenario.adherence,
        usual_care=scenario.persistence == "usual_care",
    )
    for d in range(days):
        for k, started, dose in changes.get(d, []):
            slots[k] = started
            mg[k] = dose
        for k, name in enumerate(slots):
            if name is not None:
                plan.dose_rel[d, k] = mg[k] / drug(name).min_dose_mg
                plan.k_e[d, k] = drug(name).k_e
        plan.psi[d] = tracker.psi(p)
        plan.cbti[d] = tracker.cbti(p)
        plan.sleep_debt[d] = tracker.sleep_debt
        tracker.end_day(
            p, therapy_sessions=int(therapy[d]), cbti_sessions=int(cbti[d]), sleep_h=sleep_h
        )
    return plan


def _plans(
    states: Sequence[TwinState],
    scenarios: Sequence[Sequence[Scenario]],
    days: int,
    p: PopulationParameters,
) -> list[_Plan]:
    """Every (twin, scenario) pair's plan, in pair order; computed once per distinct input.

    A plan depends on the scenario and on the twin's known inputs only (regimen, therapy and
    sleep trackers, care, adherence), which many twins of a cohort share: building one costs a
    Python loop over the days (about 2 ms for 12 weeks), as much as a tenth of the forecast.
    """
    built: dict[tuple[object, ...], _Plan] = {}
    out = []
    for state, scs in zip(states, scenarios, strict=True):
        inputs = (
            tuple(state.slots), tuple(state.prescribed_mg), state.tracker.as_tuple(),
            state.sessions_today, state.cbti_today, state.sleep_h, state.p_adherence,
            state.care_setting, state.day - state.care_since, state.contact_rate,
        )  # fmt: skip
        for sc in scs:
            key = (id(sc), *inputs)
            if key not in built:
                built[key] = _plan(state, sc, days, p)
            out.append(built[key])
    return out


def _stack_plans(plans: list[_Plan]) -> _Plan:
    """All pairs' plans as arrays indexed [day] -> (pairs, 1) or (SLOTS, pairs, 1)."""
    return _Plan(
        dose_rel=np.stack([pl.dose_rel for pl in plans], axis=2)[..., None],  # (days, SLOTS, M, 1)
        k_e=np.stack([pl.k_e for pl in plans], axis=2)[..., None],
        care=np.stack([pl.care for pl in plans], axis=1)[..., None],  # (days, M, 1)
        psi=np.stack([pl.psi for pl in plans], axis=1)[..., None],
        cbti=np.stack([pl.cbti for pl in plans], axis=1)[..., None],
        sleep_debt=np.stack([pl.sleep_debt for pl in plans], axis=1)[..., None],
        p_adh=0.0,
        usual_care=False,
    )


def simulate_scenarios(
    states: Sequence[TwinState],
    scenarios: Sequence[Sequence[Scenario]],
    *,
    weeks: int = 12,
    params: PopulationParameters | None = None,
    seed: int = 0,
) -> list[list[Draws]]:
    """Simulate every scenario of every twin ``weeks`` ahead, in one vectorised pass.

    A twin's random numbers depend only on its key, its last event and ``seed`` (never on the
    other twins in the batch), so splitting a cohort into batches does not change any result.

    Args:
        states: Twins (not modified), all with the same particle count.
        scenarios: Per twin, its scenarios (each twin at least one).
        weeks: Horizon, 1..26 weeks.
        params: Population parameters.
        seed: Selects another set of random numbers (0..2**62 - 1; 0 is the clinical default).

    Returns:
        Per twin, one :class:`Draws` per scenario, in the order given.
    """
    if not 1 <= weeks <= MAX_HORIZON_DAYS // 7:
        raise errors.ObservationRangeError("weeks", weeks, f"integer 1..{MAX_HORIZON_DAYS // 7}")
    if not 0 <= seed < 2**62:
        raise errors.ObservationRangeError("seed", seed, "integer 0..2**62 - 1")
    if len(states) != len(scenarios) or any(not s for s in scenarios):
        raise errors.InvalidInputError("each twin needs at least one scenario")
    if len({s.n_particles for s in states}) != 1:
        raise errors.InvalidInputError("twins in one batch must have the same particle count")
    p = params or PopulationParameters()
    days = 7 * weeks
    n = states[0].n_particles
    owner = [t for t, scs in enumerate(scenarios) for _ in scs]
    plans = _plans(states, scenarios, days, p)
    salt = FORECAST_SALT ^ (seed << 1)
    start_gens = [event_generator(s.key, s.last_seq, salt=salt) for s in states]
    indices = resampling.systematic_indices(
        np.stack([s.weights for s in states]), np.array([g.random() for g in start_gens])
    )
    X0 = resampling.gather(np.stack([s.particles for s in states], axis=1), indices)
    X = np.ascontiguousarray(X0[:, owner])
    gens = [event_generator(s.key, s.last_seq, salt=salt ^ 1) for s in states]
    stop = np.stack(
        [pharmacology.persistence_stop_day(g.random(n, dtype=np.float32), p) for g in gens]
    )[owner]
    keys = np.array([counter_random.stream_key(g) for g in gens], np.uint64)
    # The observation noise: a stream of its own (a second key), one row per week.
    noise_keys = np.array([counter_random.stream_key(g) for g in gens], np.uint64)
    draw_rows = np.array(owner, np.int64)
    usual = np.array([pl.usual_care for pl in plans])[:, None]
    # Under usual-care persistence a particle takes no dose from its stop day on.
    stop_day = np.where(usual, stop, np.inf) if usual.any() else math.inf
    p_adh = np.array([[pl.p_adh] for pl in plans], np.float32)
    logged = _logged_taken(states, owner)
    unknown = np.full_like(logged, np.nan)
    phq9 = np.empty((weeks, len(plans), n), np.int64)
    gad7 = np.empty((weeks, len(plans), n), np.int64)
    severity = np.empty((weeks, len(plans), n), np.float32)
    schedule = _stack_plans(plans)
    # Day-major, as the compiled step reads them: a day's draws of a twin's particles in a row.
    normals = np.empty((7, dynamics.N_NORMALS, len(states), n), np.float32)
    uniforms = np.empty((7, dynamics.N_UNIFORMS, len(states), n), np.float32)
    noise = np.empty((1, 2, len(states), n), np.float32)
    unused = np.empty_like(noise)  # the fill's uniforms of the same counters
    for w in range(weeks):
        # A week of day-step draws per twin, a function of its stream key and the day only
        # (counter-based), and the week's two observation normals (PHQ-9, GAD-7). Every
        # scenario of a twin reuses them (common random numbers).
        counter_random.fill_day_draws(keys, 7 * w, normals, uniforms)
        counter_random.fill_day_draws(noise_keys, w, noise, unused)
        week = [
            dynamics.DayInputs(
                care=schedule.care[d],
                dose_rel=schedule.dose_rel[d],
                # Unknown adherence is drawn per particle; today's logged doses are known.
                taken=logged if d == 0 else unknown,
                p_adh=p_adh,
                k_e=schedule.k_e[d],
                psi=schedule.psi[d],
                cbti=schedule.cbti[d],
                sleep_debt=schedule.sleep_debt[d],
            )
            for d in range(7 * w, 7 * w + 7)
        ]
        dynamics.advance_days(
            X, week, p, normals=normals, uniforms=uniforms, stop_day=stop_day, first_day=7 * w,
            draw_rows=draw_rows,
        )  # fmt: skip
        phq9[w] = likelihood.sample_score(X[Row.M_S], p.phq9_sd, 27, noise[0, 0, owner])
        gad7[w] = likelihood.sample_score(X[Row.M_G], p.gad7_sd, 21, noise[0, 1, owner])
        severity[w] = X[Row.S]
    out: list[list[Draws]] = [[] for _ in states]
    for m, t in enumerate(owner):
        sc = scenarios[t][len(out[t])]
        out[t].append(Draws(sc, phq9[:, m], gad7[:, m], severity[:, m], states[t]))
    return out


def _logged_taken(states: Sequence[TwinState], owner: list[int]) -> npt.NDArray[np.float32]:
    """Today's logged doses per (slot, pair): 1 taken, 0 missed, NaN not logged."""
    table = np.array(
        [[math.nan if v is None else v for v in s.taken_today] for s in states], np.float32
    )  # (T, SLOTS)
    return table[owner].T[..., None]  # (SLOTS, pairs, 1)
