"""``plot_forecast``: a fan chart of a PHQ-9 forecast over the severity bands (extra ``client``).

Bands follow Kroenke et al. (2001): minimal 0-4, mild 5-9, moderate 10-14, moderately severe
15-19, severe 20-27. The shaded intervals are the forecast's 10-90% and 25-75% quantiles of the
observable score; the line is the median.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twin import schemas

__all__ = ["SEVERITY_BANDS", "plot_forecast"]

SEVERITY_BANDS = (
    (0, 4, "minimal"),
    (5, 9, "mild"),
    (10, 14, "moderate"),
    (15, 19, "moderately severe"),
    (20, 27, "severe"),
)


def plot_forecast(
    forecast: schemas.ForecastOut,
    *,
    observed: Sequence[tuple[float, int]] = (),
    ax: Any = None,
) -> Any:
    """Draw the fan chart; returns the matplotlib Axes.

    Args:
        forecast: A forecast from :meth:`twin.client.Client.forecast`.
        observed: ``(day, PHQ-9 total)`` pairs to overlay.
        ax: Axes to draw on (a new figure when ``None``).
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # an optional extra
        raise ImportError("plots need matplotlib: pip install 'novamind[client]'") from exc
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    for k, (low, high, label) in enumerate(SEVERITY_BANDS):
        ax.axhspan(low - 0.5, high + 0.5, color="tab:red", alpha=0.05 + 0.03 * k, lw=0)
        ax.annotate(label, (0.005, (low + high) / 27.5 / 2 + 0.01), xycoords="axes fraction",
                    fontsize=7, color="dimgray")  # fmt: skip
    levels = forecast.quantile_levels
    days = [forecast.as_of_day + 7 * w for w in forecast.weeks]

    def column(level: float) -> list[int]:
        j = levels.index(level)
        return [row[j] for row in forecast.phq9_quantiles]

    ax.fill_between(days, column(0.10), column(0.90), color="tab:blue", alpha=0.2, label="80%")
    ax.fill_between(days, column(0.25), column(0.75), color="tab:blue", alpha=0.35, label="50%")
    ax.plot(days, column(0.50), color="tab:blue", label="median")
    if observed:
        ax.plot([d for d, _ in observed], [y for _, y in observed], "ko", label="observed")
    ax.set_ylim(-0.5, 27.5)
    ax.set_xlabel("day")
    ax.set_ylabel("PHQ-9")
    ax.set_title(f"{forecast.scenario} (model {forecast.model_version})")
    ax.legend(loc="upper right", fontsize=8)
    return ax
