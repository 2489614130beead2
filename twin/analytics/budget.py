"""What a cohort run costs, and the budget one run may spend (checked before it is queued).

A run's work is counted in particle-days: every simulated day of every particle of every twin,

    synthetic:  n_patients · particles · (days + 7 · weeks · S)   (history, then S scenarios)
    stored:     n_twins · stored_particles · 7 · weeks · S          (twins are caught up already)

and its result rows are ``n · S`` (held in memory until they are written). Stored selections are
counted at their bound (``filter.limit`` or the number of pseudonyms): the index is not read at
submission.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin import errors, schemas

__all__ = ["CohortBudget", "CohortCost", "cohort_cost"]


@dataclass(frozen=True, slots=True)
class CohortCost:
    """The work and result size of one run.

    Attributes:
        particle_days: Particle-days simulated (see the module docstring).
        rows: Per-(patient, scenario) result rows.
    """

    particle_days: float
    rows: int


def cohort_cost(run: schemas.CohortRunIn, stored_particles: int) -> CohortCost:
    """The cost of ``run`` (stored twins have ``stored_particles`` particles each)."""
    scenarios = len(run.scenarios)
    forecast_days = 7 * run.weeks * scenarios
    if run.synthetic is not None:
        n = run.synthetic.n_patients
        days = float(n) * run.particles * (run.synthetic.days + forecast_days)
    else:
        n = run.filter.limit if run.filter is not None else len(run.pseudonyms or ())
        days = float(n) * stored_particles * forecast_days
    return CohortCost(particle_days=days, rows=n * scenarios)


@dataclass(frozen=True, slots=True)
class CohortBudget:
    """The most one run may ask for.

    Attributes:
        max_particle_days: Particle-days per run.
        max_rows: Result rows per run.
    """

    max_particle_days: float
    max_rows: int

    def check(self, cost: CohortCost) -> None:
        """Refuse a run over budget.

        Raises:
            InvalidInputError: The run asks for more than the budget (with both figures).
        """
        if cost.particle_days > self.max_particle_days:
            raise errors.InvalidInputError(
                f"the run needs {cost.particle_days:.3g} particle-days, over the budget of "
                f"{self.max_particle_days:.3g} per run: select fewer twins, particles, "
                "scenarios, weeks or history days"
            )
        if cost.rows > self.max_rows:
            raise errors.InvalidInputError(
                f"the run would give {cost.rows} result rows (twins x scenarios), over the "
                f"budget of {self.max_rows} per run"
            )
