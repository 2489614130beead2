"""Population calibration: fit prior parameters to observed courses by simulated moments (SMM).

**Data.** Each patient's event log is reduced to a :class:`Course`: the first PHQ-9 is the
baseline (day d0); the treatment in force at d0 (+1 day) defines the design cell (*arm*): start
``episode`` (baseline >= 10) or ``remitted`` (baseline < 5), the care setting, one drug and dose
or none. Later PHQ-9 totals are assigned to week w when taken within ±2 days of d0 + 7w. Courses
whose treatment changes during follow-up, with psychotherapy, or with a baseline of 5-9 are left
out (counted by reason): their design is not one a fixed-arm simulation reproduces.

**Moments.** Per arm with at least :data:`MIN_ARM` patients, at the weeks of :data:`MARKS` that at
least half of its patients reached: episode arms, the mean PHQ-9 and the share below 5; remitted
arms, the share at or above 10 (relapse to caseness).

**Estimator.** θ̂ = argmin_θ Σ_k (m̂_k - m_k(θ))² / (v̂_k (1 + n_k/n_sim)), where m_k(θ) are
the same moments of the arm simulated by :func:`twin.model.cohort.simulate_cohort` with θ in
place of the defaults (``n_sim`` patients, the same selection on the observed baseline, fixed
seeds: common random numbers across θ), and v̂_k the sampling variance of m̂_k. Minimised over
log θ by Nelder-Mead within :data:`BOUNDS`. Standard errors from the numerical Jacobian G of the
moments: Var(log θ̂) = (GᵀWG)⁻¹(1 + n/n_sim) (McFadden 1989; Gouriéroux & Monfort 1996); the
J statistic Σ z² over the moments checks the fit (≈ χ² with moments - parameters d.o.f.).

Identification: ``pi_mean`` (care effect) needs an episode arm in care; ``e_max`` (drug effect
scale) an episode arm with a drug *and* one without; ``h10`` (untreated recovery) an episode arm
without care; ``h01`` (off-drug relapse) a remitted arm without a drug. Only identified
parameters are fitted; the others keep their current values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize

from twin import errors
from twin.analytics import smm
from twin.domain import events
from twin.domain.drugs import DRUGS
from twin.domain.specs import normalise_setting
from twin.model.cohort import CohortSpec, DoseChange, simulate_cohort
from twin.model.parameters import PopulationParameters
from twin.model.priors import FITTABLE

__all__ = [
    "BOUNDS",
    "MARKS",
    "MIN_ARM",
    "Arm",
    "Course",
    "Fit",
    "arms_of",
    "care_of",
    "course_of",
    "exclusions",
    "fit",
    "identified",
    "simulate_arm_moments",
]


#: Weeks at which moments are taken.
MARKS = (1, 2, 4, 6, 8, 12, 16, 20, 26, 39, 52)
#: Smallest arm used.
MIN_ARM = 30
#: Search box of each parameter (its units: points, points, per day, per day).
BOUNDS: dict[str, tuple[float, float]] = {
    "pi_mean": (0.5, 12.0),
    "e_max": (0.2, 8.0),
    "h10": (3e-4, 2e-2),
    "h01": (2e-4, 1e-2),
}
_EPISODE_MIN = 10
_REMITTED_BELOW = 5
_WINDOW_DAYS = 2.0


@dataclass(frozen=True, slots=True)
class Course:
    """One patient's observed course in a fixed design.

    Attributes:
        start: ``episode`` or ``remitted`` (from the baseline PHQ-9).
        care: The care setting (``twin.model.care``): stated by the log's care status at
            baseline, or inferred from how often the patient was assessed (:func:`care_of`).
        drug: The drug taken from baseline, or ``None``.
        mg_per_day: Its daily dose (0 without a drug).
        phq9: PHQ-9 total by week since baseline (week 0 = baseline).
    """

    start: str
    care: str
    drug: str | None
    mg_per_day: float
    phq9: dict[int, int]

    @property
    def arm(self) -> tuple[str, str, str | None, float]:
        """The design cell."""
        return self.start, self.care, self.drug, self.mg_per_day

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (courses cross Ray processes as text)."""
        return {
            "start": self.start,
            "care": self.care,
            "drug": self.drug,
            "mg_per_day": self.mg_per_day,
            "phq9": {str(w): v for w, v in self.phq9.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Course:
        """The inverse of :meth:`to_dict`."""
        return cls(
            str(data["start"]),
            str(normalise_setting(data["care"])),  # documents from before settings held a bool
            None if data["drug"] is None else str(data["drug"]),
            float(data["mg_per_day"]),
            {int(w): int(v) for w, v in data["phq9"].items()},
        )


def course_of(log: Sequence[events.Event]) -> Course | str:
    """The course of one event log, or the reason it cannot be used."""
    phq9 = [(e.day, e.payload.total) for e in log if isinstance(e.payload, events.Phq9)]
    if len(phq9) < 2:
        return "fewer than two PHQ-9"
    d0, baseline = phq9[0]
    if baseline >= _EPISODE_MIN:
        start = "episode"
    elif baseline < _REMITTED_BELOW:
        start = "remitted"
    else:
        return "baseline PHQ-9 5-9"
    stated: str | None = None
    doses: dict[str, float] = {}
    for e in log:
        p = e.payload
        at_baseline = e.day <= d0 + 1.0
        if isinstance(p, events.TherapySession):
            return "psychotherapy"
        if isinstance(p, events.CareStatus):
            if not at_baseline:
                return "treatment changed during follow-up"
            stated = p.setting if p.active else "none"
        if isinstance(p, events.Prescription):
            if not at_baseline:
                return "treatment changed during follow-up"
            doses[p.drug] = p.mg_per_day
    taking = {name: mg for name, mg in doses.items() if mg > 0}
    if len(taking) > 1:
        return "more than one drug"
    if any(name not in DRUGS for name in taking):
        return "drug not in the model's table"
    drug, mg = next(iter(taking.items()), (None, 0.0))
    weekly: dict[int, int] = {0: int(baseline)}
    for day, total in phq9[1:]:
        week = round((day - d0) / 7.0)
        if week > 0 and abs(day - d0 - 7 * week) <= _WINDOW_DAYS:
            weekly.setdefault(week, int(total))
    care = stated if stated is not None else care_of([day for day, _ in phq9])
    return Course(start, care, drug, float(mg), weekly)


def care_of(assessment_days: Sequence[float]) -> str:
    """The care setting a course's assessment schedule shows, where its log states none.

    The median gap between assessments: up to 10 days is a trial-like weekly schedule, up to
    21 days fortnightly collaborative care, longer usual care (``twin.model.care.PROFILES``).

    Args:
        assessment_days: Days of the course's PHQ-9 assessments (at least two), ascending.
    """
    gap = float(np.median(np.diff(np.asarray(assessment_days, dtype=np.float64))))
    if gap <= 10.0:
        return "trial"
    return "collaborative" if gap <= 21.0 else "usual"


@dataclass(frozen=True, slots=True)
class Arm:
    """A design cell with its observed moments.

    Attributes:
        start, care, drug, mg_per_day: The design (see :class:`Course`).
        patients: Courses in the arm.
        weeks: Weeks at which moments are taken.
        names: Moment names, e.g. ``mean@8``, ``below5@8``, ``atleast10@26``.
        values: Observed moments, shape (K,).
        variances: Their sampling variances, shape (K,).
        counts: Patients observed for each moment, shape (K,).
        covariance: Sampling covariance of the moments, (K, K): the same patients give every
            week's moments, so they are strongly correlated.
    """

    start: str
    care: str
    drug: str | None
    mg_per_day: float
    patients: int
    weeks: tuple[int, ...]
    names: tuple[str, ...]
    values: npt.NDArray[np.float64]
    variances: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]
    covariance: npt.NDArray[np.float64]

    @property
    def label(self) -> str:
        """A readable name of the design."""
        treatment = f"{self.drug} {self.mg_per_day:g} mg" if self.drug else "no drug"
        care = "no care" if self.care == "none" else f"{self.care} care"
        return f"{self.start}, {care}, {treatment}"


def _moments(
    start: str, scores: Sequence[tuple[int, npt.NDArray[np.float64]]]
) -> tuple[list[str], list[float], list[float]]:
    """Names, values and sampling variances of one arm's moments, from scores per week."""
    names: list[str] = []
    values: list[float] = []
    variances: list[float] = []
    for week, y in scores:
        n = y.size
        if start == "episode":
            share = float(np.mean(y < 5))
            names += [f"mean@{week}", f"below5@{week}"]
            values += [float(y.mean()), share]
            variances += [max(float(y.var(ddof=1)), 1.0) / n, max(share * (1 - share), 1 / n) / n]
        else:
            share = float(np.mean(y >= 10))
            names.append(f"atleast10@{week}")
            values.append(share)
            variances.append(max(share * (1 - share), 1 / n) / n)
    return names, values, variances


def arms_of(courses: Sequence[Course]) -> list[Arm]:
    """Group courses into arms of at least :data:`MIN_ARM` patients, with their moments."""
    cells: dict[tuple[str, str, str | None, float], list[Course]] = {}
    for c in courses:
        cells.setdefault(c.arm, []).append(c)
    arms: list[Arm] = []
    for (start, care, drug, mg), members in sorted(cells.items(), key=lambda kv: str(kv[0])):
        if len(members) < MIN_ARM:
            continue
        weeks = tuple(
            w for w in MARKS if sum(w in c.phq9 for c in members) >= max(MIN_ARM, len(members) / 2)
        )
        if not weeks:
            continue
        scores = [
            (w, np.array([c.phq9[w] for c in members if w in c.phq9], np.float64)) for w in weeks
        ]
        names, values, variances = _moments(start, scores)
        per_moment = 2 if start == "episode" else 1
        counts = np.repeat([s.size for _, s in scores], per_moment).astype(np.int64)
        covariance = _covariance(start, members, weeks, np.array(values), counts)
        arms.append(
            Arm(start, care, drug, mg, len(members), weeks, tuple(names),
                np.array(values), np.array(variances), counts, covariance)
        )  # fmt: skip
    return arms


def _covariance(
    start: str,
    members: Sequence[Course],
    weeks: tuple[int, ...],
    values: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """Sampling covariance of an arm's moments from per-patient contributions.

    Moment k is a mean over the n_k patients observed that week of x_ik (the score, or an
    indicator); patient i contributes z_ik = (x_ik - m_k)/n_k (0 when unobserved), and
    Cov(m) = Σ_i z_i z_iᵀ.
    """
    z = np.zeros((len(members), values.size))
    for i, course in enumerate(members):
        row: list[float] = []
        for w in weeks:
            y = course.phq9.get(w)
            if start == "episode":
                row += [math.nan, math.nan] if y is None else [float(y), float(y < 5)]
            else:
                row.append(math.nan if y is None else float(y >= 10))
        x = np.array(row)
        z[i] = np.where(np.isnan(x), 0.0, (x - values) / counts)
    return z.T @ z


def _seed(arm: Arm, base: int) -> int:
    digest = hashlib.sha256(f"calibration|{base}|{arm.label}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def simulate_arm_moments(
    arm: Arm, params: PopulationParameters, *, n_sim: int, seed: int = 0
) -> npt.NDArray[np.float64]:
    """The arm's moments in a simulated cohort of ``n_sim`` patients under ``params``.

    The simulated patients are selected on their observed baseline exactly as the data were.
    """
    spec = CohortSpec(
        n_patients=n_sim,
        days=7 * max(arm.weeks),
        seed=_seed(arm, seed),
        screen_phq9_min=_EPISODE_MIN if arm.start == "episode" else None,
        start="episode" if arm.start == "episode" else "remitted",
        care=arm.care,
        regimen=[DoseChange(day=0, drug=arm.drug, mg_per_day=arm.mg_per_day)] if arm.drug else [],
    )
    result = simulate_cohort(spec, params=params)
    phq9 = result.phq9
    if arm.start == "remitted":
        phq9 = phq9[phq9[:, 0] < _REMITTED_BELOW]
    scores = [(w, phq9[:, w].astype(np.float64)) for w in arm.weeks]
    return np.array(_moments(arm.start, scores)[1])


def identified(arms: Sequence[Arm]) -> tuple[str, ...]:
    """The parameters these arms identify (see the module docstring)."""
    episode_care = [a for a in arms if a.start == "episode" and a.care != "none"]
    found = []
    if episode_care:
        found.append("pi_mean")
    if any(a.drug for a in episode_care) and any(not a.drug for a in episode_care):
        found.append("e_max")
    if any(a.start == "episode" and a.care == "none" for a in arms):
        found.append("h10")
    if any(a.start == "remitted" and not a.drug for a in arms):
        found.append("h01")
    return tuple(name for name in FITTABLE if name in found)


@dataclass(frozen=True, slots=True)
class Fit:
    """A calibration's result.

    Attributes:
        estimates: Fitted values by parameter.
        standard_errors: Their standard errors (delta method from log scale).
        start: The values the search started from.
        objective: The minimised weighted distance (the J statistic).
        degrees_of_freedom: Moments minus parameters.
        evaluations: Objective evaluations.
        converged: Whether Nelder-Mead met its tolerances.
        moments: Per moment: arm, name, observed, fitted, z.
        arms: Per arm: design and patients.
        n_sim: Simulated patients per arm and evaluation.
    """

    estimates: dict[str, float]
    standard_errors: dict[str, float]
    start: dict[str, float]
    objective: float
    degrees_of_freedom: int
    evaluations: int
    converged: bool
    moments: list[dict[str, Any]] = field(default_factory=list)
    arms: list[dict[str, Any]] = field(default_factory=list)
    n_sim: int = 0

    def diagnostics(self) -> dict[str, Any]:
        """JSON-ready diagnostics for the model registry."""
        z = [abs(m["z"]) for m in self.moments]
        return {
            "estimator": "simulated method of moments (Nelder-Mead on log θ, diagonal weights)",
            "standard_errors": self.standard_errors,
            "start": self.start,
            "j_statistic": self.objective,
            "degrees_of_freedom": self.degrees_of_freedom,
            "evaluations": self.evaluations,
            "converged": self.converged,
            "max_abs_z": max(z, default=0.0),
            "moments_beyond_3_se": sum(v > 3 for v in z),
            "arms": self.arms,
            "moments": self.moments,
            "n_sim": self.n_sim,
        }


def _block_diagonal(blocks: Sequence[npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    size = sum(b.shape[0] for b in blocks)
    out = np.zeros((size, size))
    at = 0
    for b in blocks:
        k = b.shape[0]
        out[at : at + k, at : at + k] = b
        at += k
    return out


def fit(
    courses: Sequence[Course],
    *,
    start: PopulationParameters | None = None,
    n_sim: int = 4000,
    seed: int = 0,
    max_evaluations: int = 300,
    mapper: smm.Mapper[Any, Any] | None = None,
) -> Fit:
    """Fit the identified parameters to the courses (see the module docstring).

    Args:
        courses: Observed courses (:func:`course_of`).
        start: Parameters to start from and to keep for what is not fitted (defaults).
        n_sim: Simulated patients per arm.
        seed: Seed of the simulated cohorts (fixed across θ: common random numbers).
        max_evaluations: Budget of objective evaluations.
        mapper: Runs one function over the arms (``map`` semantics); a Ray job passes one that
            simulates the arms in parallel.

    Raises:
        InvalidInputError: No arm identifies any parameter.
    """
    base = start or PopulationParameters()
    run = mapper or smm.serial
    arms = arms_of(courses)
    names = identified(arms)
    if not names:
        raise errors.InvalidInputError(
            f"no arm of at least {MIN_ARM} patients identifies a parameter ({len(courses)} courses)"
        )
    observed = np.concatenate([a.values for a in arms])
    weight = 1.0 / np.concatenate([a.variances * (1.0 + a.patients / n_sim) for a in arms])
    lower = np.log([BOUNDS[n][0] for n in names])
    upper = np.log([BOUNDS[n][1] for n in names])
    x0 = np.clip(np.log([getattr(base, n) for n in names]), lower, upper)
    evaluations = 0

    def moments(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        nonlocal evaluations
        evaluations += 1
        values: dict[str, Any] = {n: float(v) for n, v in zip(names, np.exp(x), strict=True)}
        params = dataclasses.replace(base, **values)
        parts = run(lambda arm: simulate_arm_moments(arm, params, n_sim=n_sim, seed=seed), arms)
        return np.concatenate(parts)

    def objective(x: npt.NDArray[np.float64]) -> float:
        return float(np.sum(weight * (observed - moments(x)) ** 2))

    simplex = [x0] + [
        x0 + np.where(np.arange(len(names)) == i, 0.25, 0.0) for i in range(len(names))
    ]
    result = optimize.minimize(
        objective,
        x0,
        method="Nelder-Mead",
        bounds=list(zip(lower, upper, strict=True)),
        options={
            "maxfev": max_evaluations,
            "xatol": 0.01,
            "fatol": 0.05,
            "initial_simplex": np.clip(np.array(simplex), lower, upper),
        },
    )
    x = np.asarray(result.x, dtype=np.float64)
    fitted = moments(x)
    G = smm.jacobian(lambda points: [moments(point) for point in points], x, step=0.05)
    # Sandwich variance with a non-optimal (diagonal) weight W and moment covariance Ω (data,
    # plus the simulation's share n/n_sim).
    omega = _block_diagonal([a.covariance * (1.0 + a.patients / n_sim) for a in arms])
    se_log = smm.sandwich_standard_errors(G, weight, omega)
    estimates = {n: float(v) for n, v in zip(names, np.exp(x), strict=True)}
    z = (observed - fitted) * np.sqrt(weight)
    labels = [(a.label, name) for a in arms for name in a.names]
    return Fit(
        estimates=estimates,
        standard_errors={n: float(estimates[n] * s) for n, s in zip(names, se_log, strict=True)},
        start={n: float(getattr(base, n)) for n in names},
        objective=float(np.sum(z**2)),
        degrees_of_freedom=int(observed.size - len(names)),
        evaluations=evaluations,
        converged=bool(result.success),
        moments=[
            {"arm": arm, "moment": name, "observed": float(o), "fitted": float(f), "z": float(v)}
            for (arm, name), o, f, v in zip(labels, observed, fitted, z, strict=True)
        ],
        arms=[{"arm": a.label, "patients": a.patients, "weeks": list(a.weeks)} for a in arms],
        n_sim=n_sim,
    )


def exclusions(results: Sequence[Course | str]) -> dict[str, int]:
    """Counts of the courses left out, by reason."""
    return dict(Counter(r for r in results if isinstance(r, str)).most_common())
