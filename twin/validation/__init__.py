"""Forecast validation: proper scores of forecasts against what was later observed.

:mod:`twin.validation.scoring` holds the scores (CRPS, central-interval coverage, the PIT and
its histogram) and :func:`~twin.validation.scoring.score_table`, which scores a longitudinal
table overall and per horizon window. It needs NumPy only, so the SDK (``twin.client``) uses it
without the model's dependencies; :func:`twin.client.frames.score_forecasts` is the DataFrame
entry point.
"""

from twin.validation.scoring import (
    DEFAULT_LEVELS,
    DEFAULT_WINDOWS,
    PitHistogram,
    ScoreReport,
    Scores,
    Window,
    central_levels,
    crps_ensemble,
    crps_quantiles,
    interval_coverage,
    interval_coverage_quantiles,
    pit,
    pit_coverage,
    pit_histogram,
    score_table,
)

__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_WINDOWS",
    "PitHistogram",
    "ScoreReport",
    "Scores",
    "Window",
    "central_levels",
    "crps_ensemble",
    "crps_quantiles",
    "interval_coverage",
    "interval_coverage_quantiles",
    "pit",
    "pit_coverage",
    "pit_histogram",
    "score_table",
]
