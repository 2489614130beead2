"""Versioned population prior sets: which parameters a twin was created with.

A prior set overrides some fields of :class:`PopulationParameters` (the calibrated ones, see
:mod:`twin.analytics.calibration` and :mod:`twin.analytics.joint`); everything else keeps the
defaults of docs/model.md §6. Three sets ship with the code:

- ``builtin``: the defaults themselves (the hand-calibrated model; the course classes and the
  rater's share of the care effect neutral). Twins created before the joint fit keep it.
- :data:`LITERATURE_2026_12`: the first joint fit, without the excess relapse hazard after
  stopping a drug (``m_stop`` = 1). Twins created with it keep it.
- :data:`LITERATURE`: the current joint fit of every published target (docs/model-fit.md), the
  set new twins take unless the registry activates another, and the parameters of simulated
  cohorts and of the literature battery by default (:func:`current`).

A twin records the version it was created with and keeps using it for its whole life, so a new
calibration never changes an existing twin's posterior retroactively.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from twin import errors
from twin.model.parameters import PopulationParameters

__all__ = [
    "BUILTIN",
    "BUILTIN_VERSION",
    "FITTABLE",
    "LITERATURE",
    "LITERATURE_2026_12",
    "SHIPPED",
    "PriorSet",
    "current",
]

BUILTIN_VERSION = "builtin"
#: The parameters a calibration may set (docs/model.md §9): those the courses of patients
#: identify (care effect, drug effect scale, untreated recovery and off-drug relapse hazards)
#: and those the joint fit of the published targets sets.
FITTABLE = (
    "pi_mean", "e_max", "h10", "h01", "m_care", "tau_p", "hamd_care_share", "hamd_drug_share",
    "hamd_sd", "m_drug", "eta_cv", "chronic_share", "rec_acute", "rec_chronic", "p_anx_chronic",
    "p_anx_acute", "hr_drug", "psi_max", "gamma_g", "m_stop",
)  # fmt: skip
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: Probabilities and shares: strictly between 0 and 1 (the covariates' likelihood ratios divide
#: by them and by their complements).
_PROBABILITIES = frozenset({"chronic_share", "p_anx_chronic", "p_anx_acute"})
#: The rater's extra shares of treatment effects: zero is the self-report view.
_NON_NEGATIVE = frozenset({"hamd_care_share", "hamd_drug_share"})
#: Multipliers that cannot fall below one: stopping a drug does not protect from relapse.
_AT_LEAST_ONE = frozenset({"m_stop"})


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
        if not isinstance(self.version, str) or not _VERSION.fullmatch(self.version):
            raise errors.ObservationRangeError("prior_set.version", self.version, "a short name")
        for name, value in self.overrides.items():
            if name not in FITTABLE:
                raise errors.InvalidInputError(f"prior set: {name!r} is not a fitted parameter")
            if not isinstance(value, float) or not math.isfinite(value):
                raise errors.ObservationRangeError(f"prior_set.{name}", value, "a finite number")
            if name in _PROBABILITIES and not 0.0 < value < 1.0:
                raise errors.ObservationRangeError(f"prior_set.{name}", value, "between 0 and 1")
            if name in _AT_LEAST_ONE and value < 1.0:
                raise errors.ObservationRangeError(f"prior_set.{name}", value, "1 or more")
            if name in _NON_NEGATIVE and value < 0.0:
                raise errors.ObservationRangeError(f"prior_set.{name}", value, "0 or more")
            if name not in _PROBABILITIES | _NON_NEGATIVE and value <= 0.0:
                raise errors.ObservationRangeError(f"prior_set.{name}", value, "a positive number")

    def parameters(self) -> PopulationParameters:
        """The full parameter set: the defaults with this set's overrides."""
        overrides: dict[str, Any] = dict(self.overrides)  # FITTABLE fields are all floats
        return dataclasses.replace(PopulationParameters(), **overrides)


BUILTIN = PriorSet(BUILTIN_VERSION)

#: The first joint fit of the literature battery, before the excess relapse hazard after
#: stopping a drug entered the model (its ``m_stop`` is the neutral default, 1).
LITERATURE_2026_12 = PriorSet(
    "literature-2026.12",
    {
        "pi_mean": 0.6801,
        "m_care": 1.003,
        "tau_p": 10.15,
        "hamd_care_share": 1.67,
        "hamd_drug_share": 1.615,
        "hamd_sd": 3.731,
        "e_max": 1.806,
        "m_drug": 1.295,
        "eta_cv": 3.998,
        "chronic_share": 0.2755,
        "rec_acute": 3.806,
        "rec_chronic": 0.3765,
        "p_anx_chronic": 0.8021,
        "p_anx_acute": 0.02473,
        "h01": 0.001257,
        "hr_drug": 0.3547,
        "psi_max": 4.601,
        "gamma_g": 1.29,
    },
)

#: The joint fit of the literature battery (``novamind model fit``; docs/model-fit.md).
LITERATURE = PriorSet(
    "literature-2026.12.2",
    {
        "pi_mean": 0.6202,
        "m_care": 1.144,
        "tau_p": 10.89,
        "hamd_care_share": 1.662,
        "hamd_drug_share": 1.566,
        "hamd_sd": 3.659,
        "e_max": 1.695,
        "m_drug": 1.394,
        "eta_cv": 4.0,
        "chronic_share": 0.2489,
        "rec_acute": 3.718,
        "rec_chronic": 0.3165,
        "p_anx_chronic": 0.7846,
        "p_anx_acute": 0.03842,
        "h01": 0.0007393,
        "hr_drug": 0.6098,
        "m_stop": 4.749,
        "psi_max": 4.154,
        "gamma_g": 1.302,
    },
)

#: The sets that ship with the code, by version (the registry resolves them without a record).
SHIPPED = {s.version: s for s in (BUILTIN, LITERATURE_2026_12, LITERATURE)}


def current() -> PopulationParameters:
    """The parameters of the current model: the shipped joint fit (:data:`LITERATURE`)."""
    return LITERATURE.parameters()
