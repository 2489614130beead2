"""Forecast validation: proper scores of forecasts against what was later observed.

:mod:`twin.validation.scoring` holds the scores (CRPS, central-interval coverage, the PIT and
its histogram) and :func:`~twin.validation.scoring.score_table`, which scores a longitudinal
table overall and per horizon window. It needs NumPy only, so the SDK (``twin.client``) uses it
without the model's dependencies; :func:`twin.client.frames.score_forecasts` is the DataFrame
entry point.
"""

# The package's API is the scoring module's, named once there.
from twin.validation import scoring
from twin.validation.scoring import *  # noqa: F403

__all__ = scoring.__all__
