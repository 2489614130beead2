"""Versioned population prior sets: which parameters a twin was created with.

A prior set overrides some fields of :class:`PopulationParameters` (the calibrated ones, see
:mod:`twin.analytics.calibration`); everything else keeps the defaults of docs/model.md §6.
``builtin`` is the set of those defaults. A twin records the version it was created with and keeps
using it for its whole life, so a new calibration never changes an existing twin's posterior
retroactively; new twins take the registry's active version.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from twin import errors
from twin.model.parameters import PopulationParameters

__all__ = ["BUILTIN", "BUILTIN_VERSION", "FITTABLE", "PriorSet"]

BUILTIN_VERSION = "builtin"
#: The parameters a calibration may set (docs/model.md §9: care effect, drug effect scale,
#: untreated recovery and off-drug relapse hazards).
FITTABLE = ("pi_mean", "e_max", "h10", "h01")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class PriorSet:
    """One version of the population priors.

    Attributes:
        version: Name, e.g. ``calib-20261129T0700Z-ab12cd34`` (letters, digits, ``_.-``).
        overrides: Fitted values by :class:`PopulationParameters` field (units of that field).
    """

    version: str
    overrides: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not _VERSION.match(self.version):
            raise errors.ObservationRangeError("prior_set.version", self.version, "a short name")
        for name, value in self.overrides.items():
            if name not in FITTABLE:
                raise errors.InvalidInputError(f"prior set: {name!r} is not a fitted parameter")
            if not isinstance(value, float) or not math.isfinite(value) or value <= 0.0:
                raise errors.ObservationRangeError(f"prior_set.{name}", value, "a positive number")

    def parameters(self) -> PopulationParameters:
        """The full parameter set: the defaults with this set's overrides."""
        overrides: dict[str, Any] = dict(self.overrides)  # FITTABLE fields are all floats
        return dataclasses.replace(PopulationParameters(), **overrides)


BUILTIN = PriorSet(BUILTIN_VERSION)
