"""Results as pandas DataFrames (extra ``novamind[client]``).

- :func:`forecast_frame`: one row per week and quantile level, columns ``phq9``, ``gad7`` and
  ``severity`` (latent, PHQ-9 points), and ``time``, the instant each week describes.
- :func:`events_frame`: one row per event with ``seq``, ``day``, ``effective`` (when it
  happened), ``type`` and the payload's fields as columns.
- :func:`forecasts_frame`: several patients' forecasts in one long frame with ``patient``,
  ``as_of_day`` and ``day`` (the twin's clock), and ``as_of`` and ``time`` (instants), ready to
  be scored.

Instants are pandas ``Timestamp`` s in UTC (``datetime64[us, UTC]``); ``NaT`` for a patient
registered without an enrolment.
- :func:`score_forecasts`: score a long table of forecasts (draws or quantiles) against an
  observed longitudinal table, overall and per horizon window (CRPS, interval coverage, PIT;
  :mod:`twin.validation.scoring`); :func:`scores_frame` turns the report into a DataFrame.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from twin import errors, schemas
from twin.validation import scoring

__all__ = [
    "events_frame",
    "forecast_frame",
    "forecasts_frame",
    "score_forecasts",
    "scores_frame",
]


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as exc:  # an optional extra
        raise ImportError("DataFrames need pandas: pip install 'novamind[client]'") from exc
    return pd


def _instants(values: Sequence[Any]) -> Any:
    """Instants (aware ``datetime`` or ``None``) as a UTC datetime column."""
    return _pandas().to_datetime(list(values), utc=True).as_unit("us")


def forecast_frame(forecast: schemas.ForecastOut) -> Any:
    """A long DataFrame: ``week``, ``time``, ``quantile``, ``phq9``, ``gad7``, ``severity``.

    ``time`` is the instant a week's values describe (``NaT`` without an enrolment).
    """
    pd = _pandas()
    times: list[datetime | None] = list(forecast.times or [])
    times += [None] * (len(forecast.weeks) - len(times))
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
    frame = pd.DataFrame(rows, columns=["week", "quantile", "phq9", "gad7", "severity"])
    levels = len(forecast.quantile_levels)
    frame.insert(1, "time", _instants([t for t in times for _ in range(levels)]))
    return frame


def events_frame(events: Iterable[schemas.FeedEventOut]) -> Any:
    """A DataFrame of events: ``seq``, ``day``, ``effective`` (UTC), ``type``, payload fields."""
    pd = _pandas()
    listed = list(events)
    rows = [{"seq": e.seq, "day": e.day, **e.payload} for e in listed]
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["seq", "day"])
    frame.insert(2, "effective", _instants([e.effective for e in listed]))
    return frame


def forecasts_frame(
    forecasts: Mapping[str, schemas.ForecastOut] | Iterable[tuple[str, schemas.ForecastOut]],
) -> Any:
    """Several forecasts in one long DataFrame, one row per patient, forecast, week and level.

    Columns: ``patient``, ``as_of_day`` (the day the forecast starts), ``as_of`` (that day's
    instant), ``week`` (weeks ahead), ``day`` (``as_of_day + 7·week``, on the twin's clock: days
    since the patient's enrolment, as in :func:`events_frame`), ``time`` (that day's instant),
    ``quantile``, ``phq9``, ``gad7`` and ``severity``.

    Args:
        forecasts: ``{patient id: forecast}``, or ``(patient id, forecast)`` pairs when a
            patient has several forecasts (different ``as_of_day``).
    """
    pd = _pandas()
    pairs = forecasts.items() if isinstance(forecasts, Mapping) else forecasts
    frames = []
    for patient, forecast in pairs:
        frame = forecast_frame(forecast)
        frame.insert(0, "patient", patient)
        frame.insert(1, "as_of_day", forecast.as_of_day)
        frame.insert(2, "as_of", _instants([forecast.as_of] * len(frame)))
        frame.insert(4, "day", forecast.as_of_day + 7 * frame["week"])
        frames.append(frame)
    if not frames:
        raise errors.InvalidInputError("no forecasts given")
    return pd.concat(frames, ignore_index=True)


def _require(frame: Any, name: str, columns: Iterable[str]) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise errors.InvalidInputError(f"{name} has no column(s) {', '.join(missing)}")


def score_forecasts(
    forecasts: Any,
    observed: Any,
    *,
    score: str = "phq9",
    observed_score: str | None = None,
    patient: str = "patient",
    time: str = "week",
    horizon: str = "week",
    origin: str = "as_of_day",
    tolerance: float | None = None,
    windows: Sequence[scoring.Window] = scoring.DEFAULT_WINDOWS,
    levels: Sequence[float] | None = None,
    rng: scoring.Seed = None,
    discrete: bool = True,
    bins: int = 10,
) -> scoring.ScoreReport:
    """Score forecasts against what was observed, overall and per horizon window.

    ``forecasts`` is a long table with one row per forecast and member: either a
    ``quantile`` column (quantile forecasts, as :func:`forecast_frame` and
    :func:`forecasts_frame` return) or a ``draw`` column (one row per draw, e.g. the twin's
    particles), plus ``patient``, ``time``, ``horizon`` and the ``score`` value. A forecast is
    identified by (patient, origin, time), the origin only when the table has that column
    (several forecasts of one patient). ``observed`` is a longitudinal table with ``patient``,
    ``time`` and the observed score; rows without a value are not scored.

    Each observation is joined to the forecast for the same patient and time (exactly, or
    within ``tolerance`` of the nearest forecast time), then scored with
    :func:`twin.validation.scoring.score_table`: from draws, the exact CRPS and coverage from
    the randomised PIT (integer scores); from quantiles, the quantile-approximated CRPS and
    closed-interval coverage (biased upwards for integer quantiles), without PIT.

    Args:
        forecasts: Long forecast DataFrame (see above).
        observed: Observed DataFrame.
        score: Column of the forecast values (``"phq9"``, ``"gad7"``…).
        observed_score: Column of the observed values; ``None``: ``score``.
        patient: Patient column, in both tables.
        time: Time column to join on, the same clock in both tables (e.g. ``"week"``, or
            ``"day"`` with :func:`forecasts_frame`).
        horizon: Column of the forecasts with weeks since the forecast started.
        origin: Column of the forecasts with the forecast's start, used when present.
        tolerance: Join each observation to the nearest forecast time of its patient within
            this distance (in ``time`` units, e.g. 0.5 day); ``None``: exact matches only.
        windows: Horizon windows (default weeks 1-4 and weeks 12-26).
        levels: Central interval levels; ``None``: 0.5, 0.8, 0.95 for draws, the levels the
            quantiles define (0.5, 0.8, 0.9 for the API's quantiles) for quantiles.
        rng: Generator or seed for the randomised PIT (``None``: seed 0).
        discrete: Integer score: randomise the PIT within ties.
        bins: PIT histogram bins.

    Returns:
        The :class:`~twin.validation.scoring.ScoreReport`; :func:`scores_frame` tabulates it.

    Raises:
        InvalidInputError: Missing columns, forecasts with differing draws or levels,
            repeated members, no observation matching a forecast, or bad values.
    """
    pd = _pandas()
    if "quantile" in forecasts.columns:
        member = "quantile"
    elif "draw" in forecasts.columns:
        member = "draw"
    else:
        raise errors.InvalidInputError(
            "forecasts need a 'quantile' column (quantile forecasts) or a 'draw' column (draws)"
        )
    observed_score = observed_score or score
    _require(forecasts, "forecasts", [patient, time, horizon, member, score])
    _require(observed, "observed", [patient, time, observed_score])
    keys = [patient]
    if origin in forecasts.columns and origin not in (patient, time):
        keys.append(origin)
    keys.append(time)
    fc = forecasts[list(dict.fromkeys([*keys, horizon, member, score]))]
    if fc[score].isna().any():
        raise errors.InvalidInputError(f"forecasts column {score} has missing values")
    try:
        wide = fc.pivot(index=keys, columns=member, values=score).sort_index(axis=1)
    except ValueError as exc:
        raise errors.InvalidInputError(f"a forecast repeats a {member}") from exc
    if wide.isna().to_numpy().any():
        raise errors.InvalidInputError(f"every forecast needs the same {member} values")
    if horizon == time:
        weeks = wide.index.get_level_values(time).to_numpy(np.float64)
    else:
        span = fc.groupby(keys)[horizon].agg(["min", "max"]).reindex(wide.index)
        if (span["min"] != span["max"]).any():
            raise errors.InvalidInputError(f"a forecast's rows disagree on its {horizon}")
        weeks = span["min"].to_numpy(np.float64)
    index = wide.index.to_frame(index=False)
    index["_row"] = np.arange(len(index))
    index["_horizon"] = weeks
    index["_t"] = index[time].astype(np.float64)
    grid = index[[patient, "_t"]].drop_duplicates().reset_index(drop=True)
    grid["_grid"] = np.arange(len(grid))
    index = index.merge(grid, on=[patient, "_t"])
    obs = observed[[patient, time, observed_score]].dropna(subset=[observed_score])
    obs = pd.DataFrame(
        {
            patient: obs[patient].to_numpy(),
            "_time": obs[time].to_numpy(np.float64),
            "_observed": obs[observed_score].to_numpy(),
        }
    )
    if tolerance is None:
        matched = obs.merge(grid, left_on=[patient, "_time"], right_on=[patient, "_t"])
    else:
        matched = pd.merge_asof(
            obs.sort_values("_time"),
            grid.sort_values("_t"),
            left_on="_time",
            right_on="_t",
            by=patient,
            direction="nearest",
            tolerance=float(tolerance),
        ).dropna(subset=["_grid"])
        matched["_grid"] = matched["_grid"].astype(np.int64)
    rows = matched[[patient, "_time", "_observed", "_grid"]].merge(
        index[["_grid", "_row", "_horizon"]], on="_grid"
    )
    if rows.empty:
        raise errors.InvalidInputError("no observation matches a forecast (patient and time)")
    # A fixed row order, whatever the order of the input tables: it decides which row gets
    # which uniform draw in the randomised PIT.
    rows = rows.sort_values(["_row", "_time"], kind="stable")
    values = wide.to_numpy(np.float64)[rows["_row"].to_numpy()]
    common: dict[str, Any] = {
        "horizon": rows["_horizon"].to_numpy(),
        "windows": windows,
        "levels": levels,
        "rng": rng,
        "discrete": discrete,
        "bins": bins,
    }
    args = (rows[patient].to_numpy(), rows["_time"].to_numpy(), rows["_observed"].to_numpy())
    if member == "draw":
        return scoring.score_table(*args, values, **common)
    return scoring.score_table(
        *args,
        quantiles=values,
        quantile_levels=wide.columns.to_numpy(np.float64),
        **common,
    )


def scores_frame(report: scoring.ScoreReport) -> Any:
    """A DataFrame of a report: one row per scope (``all``, then each window).

    Columns: ``scope``, ``first_week``, ``last_week``, ``n``, ``n_patients``, ``mean_crps``,
    ``crps_se``, ``coverage_<L>`` and ``coverage_<L>_se`` per level (``coverage_80``…), and
    ``pit_chi2``, ``pit_p_value``, ``pit_max_deviation`` when scored from draws.
    """
    return _pandas().DataFrame(report.rows())
