"""Novamind's twin core: the model, assimilation, forecasts, scenarios and alerts.

The package imports nothing at import time (so ``import twin.client`` stays light); the public
cohort API is resolved lazily on first attribute access (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twin.domain.specs import CohortSpec, DoseChange
    from twin.model.cohort import CohortResult, simulate_cohort

__all__ = ["CohortResult", "CohortSpec", "DoseChange", "simulate_cohort"]

# The specs are plain value types; the simulator and its result load the model.
_LAZY = {
    "CohortSpec": "twin.domain.specs",
    "DoseChange": "twin.domain.specs",
    "CohortResult": "twin.model.cohort",
    "simulate_cohort": "twin.model.cohort",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'twin' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("twin."):
            raise
        # The SDK alone (novamind-client) has the specs but not the simulator.
        raise AttributeError(
            f"twin.{name} needs the simulator, which the novamind distribution installs "
            "(novamind-client has the SDK and the specs only)"
        ) from None
