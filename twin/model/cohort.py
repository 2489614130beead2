"""Simulated cohorts: the public API that tests and outside validators call.

``simulate_cohort(CohortSpec(...))`` draws patients from the population prior, optionally
screens them on an observed baseline PHQ-9 (so regression to the mean emerges, as in trials),
and runs the day step of :mod:`twin.model.dynamics` for every patient at once, one patient per
column. Observed PHQ-9 totals are drawn from the interval-censored observation model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin import errors
from twin.domain.drugs import drug
from twin.domain.specs import (
    CohortSpec,
    DoseChange,
    Population,
    maintenance_history_days,
    require_maintenance_history,
)
from twin.model import covariates, dynamics, likelihood, pharmacology, priors, scales
from twin.model.care import intensity
from twin.model.dynamics import Row
from twin.model.inputs import InputTracker
from twin.model.parameters import PopulationParameters

# The spec types are re-exported: ``simulate_cohort(CohortSpec(...))`` is the simulator's API.
__all__ = [
    "CohortResult",
    "CohortSpec",
    "DoseChange",
    "maintenance_history_days",
    "require_maintenance_history",
    "simulate_cohort",
    "stop_days",
]

PHQ9_CUTS = likelihood.score_cuts(27)
GAD7_CUTS = likelihood.score_cuts(21)
# Patients screened per round while filling a cohort under a baseline screen.
_SCREEN_BATCH = 8192
# Screening rounds a cohort may take (about 41 million simulated patients screened).
_MAX_SCREEN_ROUNDS = 5000
# The second Philox key word of the clinician ratings' stream.
_RATING_STREAM = 0x4A4D44


@dataclass(frozen=True, slots=True)
class CohortResult:
    """Trajectories of a simulated cohort.

    Attributes:
        phq9: Observed PHQ-9 totals, int64, shape (patients, observations), at ``obs_days``.
        obs_days: Observation days 0, k, 2k, ... <= days (k = ``observe_every_days``), int64.
        severity: Latent severity S, float32, shape (patients, days + 1), PHQ-9 points.
        episode: Regime R (True = depressive episode), shape (patients, days + 1).
        hamd17: Clinician-rated 17-item HAM-D at ``obs_days`` (:mod:`twin.model.scales`); at
            day 0 the rating the patients were screened on when the spec screens on it.
        gad7: Observed GAD-7 totals at ``obs_days`` (``detailed`` only).
        anxiety: Latent G, (patients, days + 1) (``detailed`` only).
        insomnia: Latent Q, z-units (``detailed`` only).
        withdrawal: Discontinuation load W, points (``detailed`` only).
        baseline_phq9: Observed PHQ-9 at screening (day 0), equal to ``phq9[:, 0]``.
        params: Static parameters θ_i per patient, shape (8, patients) (``detailed`` only).
    """

    phq9: npt.NDArray[np.int64]
    obs_days: npt.NDArray[np.int64]
    hamd17: npt.NDArray[np.int64]
    severity: npt.NDArray[np.float32]
    episode: npt.NDArray[np.bool_]
    gad7: npt.NDArray[np.int64] | None = None
    anxiety: npt.NDArray[np.float32] | None = None
    insomnia: npt.NDArray[np.float32] | None = None
    withdrawal: npt.NDArray[np.float32] | None = None
    params: npt.NDArray[np.float32] | None = None


def _schedule(spec: CohortSpec) -> tuple[list[str], npt.NDArray[np.float64]]:
    """Per-slot daily dose / D_min for days 0..days, from the regimen's step changes."""
    names: list[str] = []
    for change in sorted(spec.regimen, key=lambda c: c.day):
        if change.drug not in names:
            names.append(change.drug)
    dose = np.zeros((dynamics.SLOTS, spec.days + 1))
    for change in sorted(spec.regimen, key=lambda c: c.day):
        k = names.index(change.drug)
        dose[k, change.day :] = change.mg_per_day / drug(change.drug).min_dose_mg
    return names, dose


def _enrol(
    spec: CohortSpec,
    p: PopulationParameters,
    rng: np.random.Generator,
    rating_rng: np.random.Generator,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64] | None]:
    """Draw patients from the prior and apply the baseline screens, until ``n_patients``.

    Returns:
        The particle matrix, the baseline PHQ-9 and, with a HAM-D screen, the baseline HAM-D
        the patients were selected on (``None`` without one).
    """
    episode = 1.0 if spec.start == "episode" else 0.0
    screened = spec.screen_phq9_min is not None or spec.screen_hamd17_min is not None
    kept: list[npt.NDArray[np.float32]] = []
    kept_y: list[npt.NDArray[np.int64]] = []
    kept_h: list[npt.NDArray[np.int64]] = []
    have = 0
    rounds = 0
    while have < spec.n_patients:
        batch = _SCREEN_BATCH if screened else spec.n_patients
        X = dynamics.sample_prior(p, (batch,), rng, p_episode=episode)
        y = likelihood.sample_ordinal(X[Row.M_S], p.phq9_sd, PHQ9_CUTS, rng.standard_normal(batch))
        keep = np.ones(batch, dtype=np.bool_)
        if spec.screen_phq9_min is not None:
            keep &= y >= spec.screen_phq9_min
        if spec.screen_hamd17_min is not None:
            noise = rating_rng.standard_normal(batch)
            h = scales.hamd17(X[Row.M_S], X[Row.P], X[Row.E], p, noise)
            keep &= h >= spec.screen_hamd17_min
            kept_h.append(h[keep])
        kept.append(X[:, keep])
        kept_y.append(y[keep])
        have += int(keep.sum())
        rounds += 1
        # Refuse a cohort whose screens would take more than _MAX_SCREEN_ROUNDS to fill: once a
        # few patients are admitted, by the projected count; with none, at the cap itself.
        projected = spec.n_patients * rounds / have if have >= 10 else rounds
        if have < spec.n_patients and (
            rounds >= _MAX_SCREEN_ROUNDS or (rounds >= 20 and projected > _MAX_SCREEN_ROUNDS)
        ):
            raise errors.InvalidInputError(
                f"the baseline screens admit {have} of {rounds * _SCREEN_BATCH} simulated "
                f"patients: filling {spec.n_patients} would take more than "
                f"{_MAX_SCREEN_ROUNDS} screening rounds of {_SCREEN_BATCH} (lower n_patients, "
                "screen_phq9_min or screen_hamd17_min)"
            )
    n = spec.n_patients
    hamd = np.concatenate(kept_h)[:n] if kept_h else None
    return np.concatenate(kept, axis=1)[:, :n].copy(), np.concatenate(kept_y)[:n], hamd


def _condition_on_population(
    X: npt.NDArray[np.float32],
    population: Population,
    p: PopulationParameters,
    rng: np.random.Generator,
) -> None:
    """Draw each patient's covariates, then their course class and relapse offset, in place.

    The class is drawn from its posterior given the covariates (:mod:`twin.model.covariates`):
    logit P(chronic) = logit(``chronic_share``) + ln LR(covariates). Covariates left ``None``
    keep the population prior's draws.
    """
    n = X.shape[1]
    weeks = None
    if population.episode_weeks is not None:
        median = max(population.episode_weeks, 1e-3)
        weeks = np.exp(rng.normal(math.log(median), 1.0, n))
    anxious = None
    if population.anxiety_share is not None:
        anxious = rng.random(n) < population.anxiety_share
    if weeks is not None or anxious is not None:
        llr = covariates.chronic_log_likelihood_ratio(
            p, episode_weeks=weeks, anxiety_comorbid=anxious
        )
        X[Row.CHRONIC] = rng.random(n) < covariates.chronic_probability(p, llr)
    if population.prior_episodes_mean is not None:
        counts = covariates.draw_prior_episodes(population.prior_episodes_mean, rng, (n,))
        X[Row.LOG_RELAPSE] = covariates.relapse_offset(p, counts)


def stop_days(
    spec: CohortSpec, p: PopulationParameters, rng: np.random.Generator
) -> float | npt.NDArray[np.float64]:
    """Per patient, the day from which no dose is taken; +inf for every patient as scheduled.

    Under usual-care persistence a patient stops at a day drawn from the usual-care survival
    (:func:`twin.model.pharmacology.persistence_stop_day`), counted from the regimen's first
    dose: nobody stops a drug before starting it.
    """
    if spec.persistence != "usual_care":
        return math.inf
    first_dose = min((c.day for c in spec.regimen if c.mg_per_day > 0.0), default=0)
    return first_dose + pharmacology.persistence_stop_day(rng.random(spec.n_patients), p)


def simulate_cohort(
    spec: CohortSpec, *, params: PopulationParameters | None = None
) -> CohortResult:
    """Simulate a cohort of virtual patients day by day.

    Args:
        spec: Who is enrolled and what is done to them.
        params: Population parameters (default: the current model, ``priors.current()``).

    Returns:
        Observed PHQ-9 totals at ``obs_days`` and the latent trajectories.
    """
    p = params or priors.current()
    rng = np.random.Generator(np.random.Philox(key=spec.seed))
    # Clinician ratings draw from a stream of their own, so adding them changed no PHQ-9 course
    # (a HAM-D screen still selects other patients).
    rating_rng = np.random.Generator(np.random.Philox(key=[spec.seed, _RATING_STREAM]))
    X, baseline, screened_hamd = _enrol(spec, p, rng, rating_rng)
    n = spec.n_patients
    _condition_on_population(X, spec.population, p, rng)
    care = intensity(spec.care, np.arange(spec.days + 1))
    names, dose = _schedule(spec)
    k_e = np.array([drug(d).k_e for d in names] + [0.0] * (dynamics.SLOTS - len(names)))
    k_e = k_e.reshape(dynamics.SLOTS, 1)
    if spec.start == "remitted":
        # Maintenance patients: exposure and effect at steady state on the day-0 regimen.
        for k in range(len(names)):
            X[Row.C0 + k] = dose[k, 0]
        u = pharmacology.drive(X[Row.C0] + X[Row.C1], p)
        X[Row.U_PREV] = u
        X[Row.U_PEAK] = np.minimum(u, 1.0)
        X[Row.E] = np.exp(X[Row.LOG_ETA]) * p.e_max * u
        X[Row.P] = X[Row.PI] * float(care[0])

    obs_days = np.arange(0, spec.days + 1, spec.observe_every_days, dtype=np.int64)
    phq9 = np.empty((n, obs_days.size), dtype=np.int64)
    phq9[:, 0] = baseline
    hamd = np.empty((n, obs_days.size), dtype=np.int64)
    hamd[:, 0] = (
        screened_hamd
        if screened_hamd is not None
        else scales.hamd17(X[Row.M_S], X[Row.P], X[Row.E], p, rating_rng.standard_normal(n))
    )
    severity = np.empty((n, spec.days + 1), dtype=np.float32)
    episode = np.empty((n, spec.days + 1), dtype=np.bool_)
    detailed = spec.detailed
    shape = (n, spec.days + 1)
    anxiety = np.empty(shape, dtype=np.float32) if detailed else None
    insomnia = np.empty(shape, dtype=np.float32) if detailed else None
    withdrawal = np.empty(shape, dtype=np.float32) if detailed else None
    gad7 = np.empty((n, obs_days.size), dtype=np.int64) if detailed else None

    therapy = np.bincount(spec.therapy_session_days, minlength=spec.days + 1)
    cbti = np.bincount(spec.cbti_session_days, minlength=spec.days + 1)
    taken = np.full((dynamics.SLOTS, 1), 1.0 if spec.adherence >= 1.0 else math.nan)
    stop_day = stop_days(spec, p, rng)
    tracker = InputTracker()
    obs_index = 0
    for day in range(spec.days + 1):
        severity[:, day] = X[Row.S]
        episode[:, day] = X[Row.R] > 0.5
        if detailed:
            anxiety[:, day] = X[Row.G]  # type: ignore[index]
            insomnia[:, day] = X[Row.Q]  # type: ignore[index]
            withdrawal[:, day] = X[Row.W]  # type: ignore[index]
        if obs_index < obs_days.size and obs_days[obs_index] == day:
            if day > 0:
                noise = rng.standard_normal(n)
                phq9[:, obs_index] = likelihood.sample_ordinal(
                    X[Row.M_S], p.phq9_sd, PHQ9_CUTS, noise
                )
            if gad7 is not None:
                noise = rng.standard_normal(n)
                gad7[:, obs_index] = likelihood.sample_ordinal(
                    X[Row.M_G], p.gad7_sd, GAD7_CUTS, noise
                )
            if day > 0:
                hamd[:, obs_index] = scales.hamd17(
                    X[Row.M_S], X[Row.P], X[Row.E], p, rating_rng.standard_normal(n)
                )
            obs_index += 1
        if day == spec.days:
            break
        inputs = dynamics.DayInputs(
            care=float(care[day]),
            dose_rel=dose[:, day : day + 1],
            taken=taken,
            p_adh=spec.adherence,
            k_e=k_e,
            psi=tracker.psi(p),
            cbti=tracker.cbti(p),
            sleep_debt=tracker.sleep_debt,
        )
        normals = rng.standard_normal((dynamics.N_NORMALS, n), dtype=np.float32)
        uniforms = rng.random((dynamics.N_UNIFORMS, n), dtype=np.float32)
        dynamics.advance_days(
            X, [inputs], p, normals=normals[None], uniforms=uniforms[None], stop_day=stop_day,
            first_day=day,
        )  # fmt: skip
        tracker.end_day(
            p,
            therapy_sessions=int(therapy[day]),
            cbti_sessions=int(cbti[day]),
            sleep_h=spec.sleep_hours,
        )
    return CohortResult(
        phq9=phq9,
        obs_days=obs_days,
        hamd17=hamd,
        severity=severity,
        episode=episode,
        gad7=gad7,
        anxiety=anxiety,
        insomnia=insomnia,
        withdrawal=withdrawal,
        params=X[len(dynamics.DYNAMIC_ROWS) :].copy() if detailed else None,
    )
