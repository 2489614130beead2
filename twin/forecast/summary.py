"""Forecast summaries and paired scenario contrasts (docs/model.md §8).

Probabilities are Monte-Carlo estimates over N equally weighted particles and carry their
Monte-Carlo standard error √(p(1-p)/N). Questionnaire quantiles are of the *observable* score
(``inverted_cdf``, so they are valid integer scores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin.assimilation.state import TwinState
from twin.domain.specs import Scenario
from twin.forecast.engine import Draws, simulate_scenarios
from twin.model.parameters import MODEL_VERSION, PopulationParameters

__all__ = [
    "QUANTILES",
    "Contrast",
    "Forecast",
    "Probability",
    "compare",
    "compare_many",
    "contrast",
    "forecast",
    "summarize",
]

QUANTILES = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)
RELIABLE_CHANGE = 5
REMISSION_BELOW = 5


@dataclass(frozen=True, slots=True)
class Probability:
    """A Monte-Carlo probability with its standard error; ``None`` value with a reason."""

    value: float | None
    mc_se: float | None
    reason: str | None = None

    @classmethod
    def of(cls, hits: npt.NDArray[np.bool_]) -> Probability:
        """The share of ``hits`` that are true, with SE √(p(1-p)/N)."""
        p = float(np.mean(hits))
        return cls(p, math.sqrt(p * (1.0 - p) / hits.size))

    @classmethod
    def unavailable(cls, reason: str) -> Probability:
        """No estimate, and why."""
        return cls(None, None, reason)


@dataclass(frozen=True, slots=True)
class Forecast:
    """A twin's forecast under one scenario.

    Attributes:
        scenario: Scenario name.
        weeks: Week numbers 1..H.
        phq9_quantiles: Per week, the :data:`QUANTILES` of the observable PHQ-9.
        gad7_quantiles: Per week, the quantiles of the observable GAD-7.
        severity_quantiles: Per week, quantiles of latent severity (PHQ-9 points).
        response: P(PHQ-9 <= 50% of the course baseline) at weeks 8 and 12.
        remission: P(PHQ-9 < 5) at weeks 8 and 12.
        deterioration: P(PHQ-9 >= latest observed + 5 at some week) within 4 and 8 weeks.
        median_weeks_to_remission: Median first week with PHQ-9 < 5, ``None`` beyond horizon.
        model_version: Version of the model.
        as_of_day: Day the forecast starts (the twin's day).
        last_seq: Last event the posterior has seen.
        days_since: Data freshness: days since the latest value of each stream.
        particles: Number of particles (Monte-Carlo sample size).
    """

    scenario: str
    weeks: tuple[int, ...]
    phq9_quantiles: tuple[tuple[int, ...], ...]
    gad7_quantiles: tuple[tuple[int, ...], ...]
    severity_quantiles: tuple[tuple[float, ...], ...]
    response: dict[int, Probability]
    remission: dict[int, Probability]
    deterioration: dict[int, Probability]
    median_weeks_to_remission: int | None
    model_version: str
    as_of_day: int
    last_seq: int
    days_since: dict[str, float]
    particles: int


@dataclass(frozen=True, slots=True)
class Contrast:
    """Paired contrast of scenario B against A on the same posterior and random numbers.

    Attributes:
        a: Name of scenario A.
        b: Name of scenario B.
        weeks: Week numbers.
        difference_quantiles: Per week, quantiles of PHQ-9(B) - PHQ-9(A) (negative: B better).
        mean_difference: Per week, mean of PHQ-9(B) - PHQ-9(A).
        p_b_better_by_5: Per week, P(PHQ-9(A) - PHQ-9(B) >= 5).
        remission_risk_change: P(remission | B) - P(remission | A) at weeks 8 and 12.
        response_risk_change: The same for response.
    """

    a: str
    b: str
    weeks: tuple[int, ...]
    difference_quantiles: tuple[tuple[float, ...], ...]
    mean_difference: tuple[float, ...]
    p_b_better_by_5: tuple[float, ...]
    remission_risk_change: dict[int, float]
    response_risk_change: dict[int, float]


def _quantiles(values: npt.NDArray[np.generic]) -> list[tuple[float, ...]]:
    q = np.quantile(values.astype(np.float64), QUANTILES, axis=-1, method="inverted_cdf")
    return [tuple(float(x) for x in q[:, w]) for w in range(values.shape[0])]


def _event_weeks(draws: Draws, marks: tuple[int, ...]) -> list[int]:
    return [w for w in marks if w <= draws.phq9.shape[0]]


def summarize(draws: Draws) -> Forecast:
    """Summarise simulated futures into a :class:`Forecast`."""
    state = draws.state
    phq9 = draws.phq9
    n_weeks, n = phq9.shape
    baseline = state.baseline_phq9
    latest = int(state.phq9_history[-1][1]) if state.phq9_history else None
    response: dict[int, Probability] = {}
    remission: dict[int, Probability] = {}
    deterioration: dict[int, Probability] = {}
    for w in _event_weeks(draws, (8, 12)):
        remission[w] = Probability.of(phq9[w - 1] < REMISSION_BELOW)
        response[w] = (
            Probability.of(phq9[w - 1] <= 0.5 * baseline)
            if baseline is not None
            else Probability.unavailable("no baseline PHQ-9 observed")
        )
    for w in _event_weeks(draws, (4, 8)):
        deterioration[w] = (
            Probability.of(np.any(phq9[:w] >= latest + RELIABLE_CHANGE, axis=0))
            if latest is not None
            else Probability.unavailable("no PHQ-9 observed")
        )
    remitted = phq9 < REMISSION_BELOW
    first = np.where(remitted.any(axis=0), remitted.argmax(axis=0) + 1, n_weeks + 1)
    median = int(np.quantile(first, 0.5, method="inverted_cdf"))
    return Forecast(
        scenario=draws.scenario.name,
        weeks=tuple(range(1, n_weeks + 1)),
        phq9_quantiles=tuple(tuple(int(v) for v in q) for q in _quantiles(phq9)),
        gad7_quantiles=tuple(tuple(int(v) for v in q) for q in _quantiles(draws.gad7)),
        severity_quantiles=tuple(tuple(round(v, 3) for v in q) for q in _quantiles(draws.severity)),
        response=response,
        remission=remission,
        deterioration=deterioration,
        median_weeks_to_remission=median if median <= n_weeks else None,
        model_version=MODEL_VERSION,
        as_of_day=state.day,
        last_seq=state.last_seq,
        days_since={k: state.clock - v for k, v in sorted(state.last_seen.items())},
        particles=n,
    )


def contrast(a: Draws, b: Draws) -> Contrast:
    """Paired contrast of B against A (both from the same twin and random numbers)."""
    diff = b.phq9 - a.phq9
    baseline = a.state.baseline_phq9
    remission_change = {
        w: float(
            np.mean(b.phq9[w - 1] < REMISSION_BELOW) - np.mean(a.phq9[w - 1] < REMISSION_BELOW)
        )
        for w in _event_weeks(a, (8, 12))
    }
    response_change = (
        {
            w: float(
                np.mean(b.phq9[w - 1] <= 0.5 * baseline) - np.mean(a.phq9[w - 1] <= 0.5 * baseline)
            )
            for w in _event_weeks(a, (8, 12))
        }
        if baseline is not None
        else {}
    )
    return Contrast(
        a=a.scenario.name,
        b=b.scenario.name,
        weeks=tuple(range(1, diff.shape[0] + 1)),
        difference_quantiles=tuple(_quantiles(diff)),
        mean_difference=tuple(float(x) for x in diff.mean(axis=1)),
        p_b_better_by_5=tuple(float(x) for x in np.mean(-diff >= RELIABLE_CHANGE, axis=1)),
        remission_risk_change=remission_change,
        response_risk_change=response_change,
    )


def forecast(
    state: TwinState,
    scenario: Scenario | None = None,
    *,
    weeks: int = 12,
    params: PopulationParameters | None = None,
) -> Forecast:
    """Forecast one twin under one scenario (default: continue as now)."""
    draws = simulate_scenarios([state], [[scenario or Scenario()]], weeks=weeks, params=params)
    return summarize(draws[0][0])


def compare(
    state: TwinState,
    a: Scenario,
    b: Scenario,
    *,
    weeks: int = 12,
    params: PopulationParameters | None = None,
) -> tuple[Forecast, Forecast, Contrast]:
    """Forecast two scenarios on the same posterior with common random numbers, and contrast."""
    draws_a, draws_b = simulate_scenarios([state], [[a, b]], weeks=weeks, params=params)[0]
    return summarize(draws_a), summarize(draws_b), contrast(draws_a, draws_b)


def compare_many(
    state: TwinState,
    scenarios: list[Scenario],
    *,
    weeks: int = 12,
    params: PopulationParameters | None = None,
) -> tuple[list[Forecast], list[Contrast]]:
    """Forecast several scenarios with common random numbers; contrast each with the first.

    Returns:
        The forecasts (one per scenario, in order) and ``len(scenarios) - 1`` contrasts
        (scenario k against scenario 0).
    """
    draws = simulate_scenarios([state], [scenarios], weeks=weeks, params=params)[0]
    return [summarize(d) for d in draws], [contrast(draws[0], d) for d in draws[1:]]
