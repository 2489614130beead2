"""Novamind's twin core: the model, assimilation, forecasts, scenarios and alerts.

The package imports nothing at import time (so ``import twin.client`` stays light); the public
cohort API is resolved lazily on first attribute access (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twin.model.cohort import CohortResult, CohortSpec, DoseChange, simulate_cohort

__all__ = ["CohortResult", "CohortSpec", "DoseChange", "simulate_cohort"]

_LAZY = dict.fromkeys(__all__, "twin.model.cohort")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'twin' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
