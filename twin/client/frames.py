"""Results as pandas DataFrames (extra ``novamind[client]``).

- :func:`forecast_frame`: one row per week and quantile level, columns ``phq9``, ``gad7`` and
  ``severity`` (latent, PHQ-9 points).
- :func:`events_frame`: one row per event with ``seq``, ``day``, ``type`` and the payload's
  fields as columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twin import schemas

__all__ = ["events_frame", "forecast_frame"]


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as exc:  # an optional extra
        raise ImportError("DataFrames need pandas: pip install 'novamind[client]'") from exc
    return pd


def forecast_frame(forecast: schemas.ForecastOut) -> Any:
    """A long DataFrame: ``week``, ``quantile``, ``phq9``, ``gad7``, ``severity``."""
    pd = _pandas()
    rows = [
        {
            "week": week,
            "quantile": level,
            "phq9": forecast.phq9_quantiles[i][j],
            "gad7": forecast.gad7_quantiles[i][j],
            "severity": forecast.severity_quantiles[i][j],
        }
        for i, week in enumerate(forecast.weeks)
        for j, level in enumerate(forecast.quantile_levels)
    ]
    return pd.DataFrame(rows)


def events_frame(events: Iterable[schemas.FeedEventOut]) -> Any:
    """A DataFrame of events (``seq``, ``day``, ``type`` and payload fields)."""
    pd = _pandas()
    return pd.DataFrame([{"seq": e.seq, "day": e.day, **e.payload} for e in events])
