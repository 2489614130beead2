"""The antidepressants the platform knows: names, elimination half-lives and dose equivalents.

One table serves every layer: events refuse a drug it does not name, cohort specs and scenarios
validate against it, and the model's pharmacokinetics read its half-lives (``docs/model.md``
§4.1). It is plain data, so the SDK validates drug names without loading the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twin import errors

__all__ = ["DRUGS", "DRUG_NAMES", "Drug", "drug", "known_drug_name"]


@dataclass(frozen=True, slots=True)
class Drug:
    """One antidepressant in the pharmacokinetic table.

    Attributes:
        name: Lower-case generic name.
        half_life_h: Elimination half-life of the active moiety, hours.
        min_dose_mg: Minimum therapeutic daily dose D_min, mg/day.
        fluoxetine40_mg: Dose equivalent to fluoxetine 40 mg/day (Hayasaka et al. 2015), or
            ``None`` where the table defers to the paper; then 2·D_min is used [assumption].
    """

    name: str
    half_life_h: float
    min_dose_mg: float
    fluoxetine40_mg: float | None

    @property
    def k_e(self) -> float:
        """Daily elimination rate constant k_e = ln2·24/t½ (1/day)."""
        return math.log(2.0) * 24.0 / self.half_life_h

    def fluoxetine_equivalent_mg(self, mg_per_day: float) -> float:
        """Convert a daily dose of this drug to fluoxetine-equivalent mg/day."""
        reference = (
            self.fluoxetine40_mg if self.fluoxetine40_mg is not None else 2 * self.min_dose_mg
        )
        return 40.0 * mg_per_day / reference


# Half-lives: Ther Clin Risk Manag 2018;14:1799 Table 3 (midpoints); fluoxetine uses the active
# moiety (fluoxetine + norfluoxetine) 7 d and venlafaxine its active metabolite ODV 11 h, both
# [assumption] (docs/model.md §4.1). Minimum doses: standard labels.
DRUGS: dict[str, Drug] = {
    d.name: d
    for d in (
        Drug("sertraline", 26.0, 50.0, 98.5),
        Drug("escitalopram", 30.0, 10.0, 18.0),
        Drug("citalopram", 34.0, 20.0, None),
        Drug("paroxetine", 22.0, 20.0, 34.0),
        Drug("fluoxetine", 7 * 24.0, 20.0, 40.0),
        Drug("venlafaxine", 11.0, 75.0, None),
        Drug("duloxetine", 12.0, 60.0, None),
    )
}

#: The generic names of :data:`DRUGS`.
DRUG_NAMES = frozenset(DRUGS)


def known_drug_name(value: str) -> str:
    """A pydantic-style validator: ``value`` if it names a drug in the table, else ValueError."""
    if value not in DRUGS:
        raise ValueError(f"unknown drug {value!r}: expected one of {', '.join(DRUGS)}")
    return value


def drug(name: str) -> Drug:
    """Look a drug up by name.

    Raises:
        UnknownDrugError: The name is not in :data:`DRUGS`.
    """
    found = DRUGS.get(name)
    if found is None:
        raise errors.UnknownDrugError(name, tuple(DRUGS))
    return found
