"""Cohort what-if: every patient × scenario forecast, as de-identified rows and exact tallies.

A batch of twins is simulated in one :func:`twin.forecast.engine.simulate_scenarios` call (all
scenarios of a twin share its random numbers: common random numbers), then reduced to

- one row per (patient, scenario) keyed by the research pseudonym: the final week's response
  and remission probabilities, quantiles and mean of the observable PHQ-9 and, for every
  scenario after the first, the paired contrast against the first;
- a :class:`Tally` of integer counts per (scenario, week): PHQ-9 histograms over all particles,
  response hits, paired-difference histograms. Integer sums are associative, so the cohort's
  aggregate is bit-identical however the cohort was split into batches and workers.

Definitions follow :mod:`twin.forecast.summary`: response is PHQ-9 <= 50% of the course
baseline (twins without a baseline PHQ-9 are excluded from response, and counted), remission is
PHQ-9 < 5, "better by 5" is PHQ-9(first) - PHQ-9(this) >= 5 (reliable change).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin import errors
from twin.assimilation.state import TwinState
from twin.domain.deidentify import record_day
from twin.domain.specs import Scenario
from twin.forecast.engine import Draws, simulate_scenarios
from twin.forecast.summary import RELIABLE_CHANGE, REMISSION_BELOW
from twin.model.parameters import PopulationParameters

__all__ = ["CohortTwin", "Tally", "aggregate_rows", "simulate_batch"]

I64 = npt.NDArray[np.int64]
_SCORES = 28  # PHQ-9 totals 0..27
_DIFFS = 2 * 27 + 1  # paired differences -27..27
_QUANTILES = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)
_ROW_QUANTILES = (0.10, 0.50, 0.90)


@dataclass(frozen=True, slots=True)
class CohortTwin:
    """A twin in a cohort run: its posterior and the pseudonym its results carry.

    Attributes:
        pseudonym: Research pseudonym (never the patient id).
        state: The twin's posterior, caught up with its log.
    """

    pseudonym: str
    state: TwinState


@dataclass(slots=True)
class Tally:
    """Integer counts of a cohort's simulated futures; shapes use S scenarios and W weeks.

    Attributes:
        scenarios: Scenario names, in order.
        patients: Twins counted.
        with_baseline: Twins with a baseline PHQ-9 (the response denominator).
        particles: Particles summed over twins (the histogram total per scenario and week).
        baseline_particles: Particles summed over twins with a baseline.
        phq9: Histogram of observable PHQ-9 over particles, (S, W, 28).
        response: Particles meeting response, (S, W).
        response_sq: Sum over twins of (response hits)², (S, W), for the between-twin spread.
        remission_sq: Sum over twins of (remission hits)², (S, W).
        diff: Histogram of paired PHQ-9(s) - PHQ-9(first) + 27, (S, W, 55) (row 0 all at 27).
    """

    scenarios: tuple[str, ...]
    patients: int
    with_baseline: int
    particles: int
    baseline_particles: int
    phq9: I64
    response: I64
    response_sq: I64
    remission_sq: I64
    diff: I64

    @classmethod
    def empty(cls, scenarios: Sequence[str], weeks: int) -> Tally:
        """No twins counted yet."""
        s = len(scenarios)
        return cls(
            tuple(scenarios),
            0,
            0,
            0,
            0,
            np.zeros((s, weeks, _SCORES), np.int64),
            np.zeros((s, weeks), np.int64),
            np.zeros((s, weeks), np.int64),
            np.zeros((s, weeks), np.int64),
            np.zeros((s, weeks, _DIFFS), np.int64),
        )

    def merge(self, other: Tally) -> Tally:
        """The counts of both (exact: integer sums)."""
        if other.scenarios != self.scenarios or other.phq9.shape != self.phq9.shape:
            raise errors.InvalidInputError("tallies of different runs cannot be merged")
        return Tally(
            self.scenarios,
            self.patients + other.patients,
            self.with_baseline + other.with_baseline,
            self.particles + other.particles,
            self.baseline_particles + other.baseline_particles,
            self.phq9 + other.phq9,
            self.response + other.response,
            self.response_sq + other.response_sq,
            self.remission_sq + other.remission_sq,
            self.diff + other.diff,
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form (crosses processes as text)."""
        return {
            "scenarios": list(self.scenarios),
            "patients": self.patients,
            "with_baseline": self.with_baseline,
            "particles": self.particles,
            "baseline_particles": self.baseline_particles,
            **{
                name: getattr(self, name).tolist()
                for name in ("phq9", "response", "response_sq", "remission_sq", "diff")
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Tally:
        """The inverse of :meth:`to_dict`."""

        def arr(name: str) -> I64:
            return np.asarray(data[name], dtype=np.int64)

        scenarios = data["scenarios"]
        if not isinstance(scenarios, list):
            raise errors.InvalidInputError("tally: scenarios must be a list")
        return cls(
            tuple(str(s) for s in scenarios),
            int(data["patients"]),  # type: ignore[call-overload]
            int(data["with_baseline"]),  # type: ignore[call-overload]
            int(data["particles"]),  # type: ignore[call-overload]
            int(data["baseline_particles"]),  # type: ignore[call-overload]
            arr("phq9"),
            arr("response"),
            arr("response_sq"),
            arr("remission_sq"),
            arr("diff"),
        )


def _hist(values: I64, bins: int, offset: int = 0) -> I64:
    """Per week, counts of each integer value (values + offset in 0..bins-1), (W, bins)."""
    weeks = values.shape[0]
    flat = (values + offset) + bins * np.arange(weeks)[:, None]
    return np.bincount(flat.ravel(), minlength=weeks * bins).reshape(weeks, bins)


def _row(twin: CohortTwin, draws: Draws, first: Draws, index: int, weeks: int) -> dict[str, object]:
    """The (patient, scenario) row: final-week outcomes and the paired contrast."""
    final = draws.phq9[weeks - 1].astype(np.float64)
    n = final.size
    baseline = twin.state.baseline_phq9
    remission = float(np.mean(final < REMISSION_BELOW))
    response = float(np.mean(final <= 0.5 * baseline)) if baseline is not None else None
    q = np.quantile(final, _ROW_QUANTILES, method="inverted_cdf")
    row: dict[str, object] = {
        "pseudonym": twin.pseudonym,
        "scenario": draws.scenario.name,
        "scenario_index": index,
        "week": weeks,
        "particles": n,
        "as_of_record_day": record_day(twin.state.day, twin.state.record_start),
        "baseline_phq9": baseline,
        "phq9_mean": float(final.mean()),
        **{f"phq9_q{round(p * 100):02d}": int(v) for p, v in zip(_ROW_QUANTILES, q, strict=True)},
        "remission_p": remission,
        "remission_mc_se": math.sqrt(remission * (1.0 - remission) / n),
        "response_p": response,
        "response_mc_se": (
            math.sqrt(response * (1.0 - response) / n) if response is not None else None
        ),
        "diff_mean": None,
        "diff_q50": None,
        "p_better_by_5": None,
        "remission_change": None,
        "response_change": None,
    }
    if index > 0:
        diff = draws.phq9[weeks - 1] - first.phq9[weeks - 1]
        base_final = first.phq9[weeks - 1]
        row["diff_mean"] = float(diff.mean())
        row["diff_q50"] = float(np.quantile(diff, 0.5, method="inverted_cdf"))
        row["p_better_by_5"] = float(np.mean(-diff >= RELIABLE_CHANGE))
        row["remission_change"] = remission - float(np.mean(base_final < REMISSION_BELOW))
        if baseline is not None and response is not None:
            row["response_change"] = response - float(np.mean(base_final <= 0.5 * baseline))
    return row


def simulate_batch(
    twins: Sequence[CohortTwin],
    scenarios: Sequence[Scenario],
    *,
    weeks: int = 12,
    seed: int = 0,
    params: PopulationParameters | None = None,
) -> tuple[list[dict[str, object]], Tally]:
    """Forecast every twin under every scenario (common random numbers) and reduce.

    Args:
        twins: The batch (all with the same particle count).
        scenarios: The scenarios; the first is the reference of the paired contrasts.
        weeks: Horizon, weeks (1..26).
        seed: Random-number set (see :func:`simulate_scenarios`).
        params: Population parameters.

    Returns:
        The rows (patient-major, scenarios in order) and the batch's tally.
    """
    if not scenarios:
        raise errors.InvalidInputError("a cohort run needs at least one scenario")
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise errors.InvalidInputError("scenario names must be distinct")
    tally = Tally.empty(names, weeks)
    if not twins:
        return [], tally
    draws = simulate_scenarios(
        [t.state for t in twins],
        [list(scenarios)] * len(twins),
        weeks=weeks,
        params=params,
        seed=seed,
    )
    rows: list[dict[str, object]] = []
    for twin, per_scenario in zip(twins, draws, strict=True):
        first = per_scenario[0]
        baseline = twin.state.baseline_phq9
        n = first.phq9.shape[1]
        tally.patients += 1
        tally.particles += n
        if baseline is not None:
            tally.with_baseline += 1
            tally.baseline_particles += n
        for k, d in enumerate(per_scenario):
            rows.append(_row(twin, d, first, k, weeks))
            tally.phq9[k] += _hist(d.phq9, _SCORES)
            tally.diff[k] += _hist(d.phq9 - first.phq9, _DIFFS, offset=27)
            remission_hits = np.sum(d.phq9 < REMISSION_BELOW, axis=1)
            tally.remission_sq[k] += remission_hits**2
            if baseline is not None:
                hits = np.sum(d.phq9 <= 0.5 * baseline, axis=1)
                tally.response[k] += hits
                tally.response_sq[k] += hits**2
    return rows, tally


def _quantiles_of(hist: I64, offset: int = 0) -> list[int]:
    """Quantiles (inverted CDF) of the integer distribution given by ``hist``."""
    cdf = np.cumsum(hist)
    total = cdf[-1]
    return [int(np.searchsorted(cdf, q * total, side="left")) - offset for q in _QUANTILES]


def _between_se(hits: int, hits_sq: int, patients: int, particles_each: float) -> float | None:
    """SE of a cohort rate across twins: sd of per-twin rates / √patients."""
    if patients < 2:
        return None
    p = np.array([hits, hits_sq], np.float64) / np.array([particles_each, particles_each**2])
    mean = p[0] / patients
    var = max(p[1] / patients - mean**2, 0.0) * patients / (patients - 1)
    return math.sqrt(var / patients)


def aggregate_rows(tally: Tally) -> list[dict[str, object]]:
    """The cohort's aggregate, one row per (scenario, week).

    Columns: counts, mean and quantiles of the pooled observable PHQ-9, remission and response
    rates (mean over twins of their probabilities, with the between-twin standard error) and,
    after the first scenario, the paired contrast (mean difference, difference quantiles,
    P(better by 5), risk differences).
    """
    if tally.patients == 0:
        return []
    scores = np.arange(_SCORES)
    diffs = np.arange(_DIFFS) - 27
    each = tally.particles / tally.patients
    out: list[dict[str, object]] = []
    for k, name in enumerate(tally.scenarios):
        for w in range(tally.phq9.shape[1]):
            hist = tally.phq9[k, w]
            remission_hits = int(hist[:REMISSION_BELOW].sum())
            remission = remission_hits / tally.particles
            response = (
                int(tally.response[k, w]) / tally.baseline_particles
                if tally.baseline_particles
                else None
            )
            row: dict[str, object] = {
                "scenario": name,
                "scenario_index": k,
                "week": w + 1,
                "patients": tally.patients,
                "patients_with_baseline": tally.with_baseline,
                "phq9_mean": float(hist @ scores) / tally.particles,
                **{
                    f"phq9_q{round(q * 100):02d}": v
                    for q, v in zip(_QUANTILES, _quantiles_of(hist), strict=True)
                },
                "remission_rate": remission,
                "remission_se": _between_se(
                    remission_hits, int(tally.remission_sq[k, w]), tally.patients, each
                ),
                "response_rate": response,
                "response_se": (
                    _between_se(
                        int(tally.response[k, w]),
                        int(tally.response_sq[k, w]),
                        tally.with_baseline,
                        each,
                    )
                    if tally.with_baseline
                    else None
                ),
                "diff_mean": None,
                "diff_q05": None,
                "diff_q50": None,
                "diff_q95": None,
                "p_better_by_5": None,
                "remission_change": None,
                "response_change": None,
            }
            if k > 0:
                dh = tally.diff[k, w]
                dq = _quantiles_of(dh, offset=27)
                first = tally.phq9[0, w]
                row["diff_mean"] = float(dh @ diffs) / tally.particles
                row["diff_q05"], row["diff_q50"], row["diff_q95"] = dq[0], dq[3], dq[6]
                row["p_better_by_5"] = int(dh[: 27 - RELIABLE_CHANGE + 1].sum()) / tally.particles
                row["remission_change"] = remission - int(first[:REMISSION_BELOW].sum()) / (
                    tally.particles
                )
                if response is not None:
                    row["response_change"] = response - int(tally.response[0, w]) / (
                        tally.baseline_particles
                    )
            out.append(row)
    return out
