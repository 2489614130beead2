"""Builders for twin events and states (cosmicpython's random_refs idea, for twins)."""

from __future__ import annotations

from twin.assimilation import kernel
from twin.assimilation.state import TwinState, new_twin
from twin.domain import events as E
from twin.model.cohort import CohortSpec, DoseChange


class Log:
    """Builds a twin's event log with increasing sequence numbers."""

    def __init__(self, start_seq: int = 1) -> None:
        self.seq = start_seq - 1
        self.events: list[E.Event] = []

    def add(self, day: float, payload: E.Payload) -> Log:
        self.seq += 1
        self.events.append(E.Event(self.seq, day, payload))
        return self

    def phq9(self, day: float, total: int, item9: int | None = None) -> Log:
        if item9 is None:
            return self.add(day, E.Phq9(total))
        rest = total - item9
        items = [min(3, max(0, rest - 3 * k)) for k in range(8)] + [item9]
        return self.add(day, E.Phq9(total, tuple(items)))


def twin(name: str = "patient-a", particles: int = 500) -> TwinState:
    return new_twin(name, n_particles=particles)


def depressed_twin(name: str = "depressed", particles: int = 1000) -> TwinState:
    """A twin that has seen three weekly PHQ-9 totals of a moderately severe episode."""
    state = twin(name, particles=particles)
    log = Log()
    for week, total in enumerate([19, 18, 20]):
        log.phq9(7 * week + 0.5, total)
    kernel.apply_events([state], [log.events])
    return state


def calibration_design(
    treated: int, treated_days: int, untreated: int, untreated_days: int
) -> list[CohortSpec]:
    """The four arms that identify the calibrated priors (care, drug, recovery, relapse).

    Screened episodes in care without and with sertraline 100 mg (``treated`` patients each,
    ``treated_days``), screened episodes out of care, and remitted patients out of care
    (``untreated`` each, ``untreated_days``).
    """
    sertraline = [DoseChange(day=0, drug="sertraline", mg_per_day=100.0)]
    return [
        CohortSpec(n_patients=treated, days=treated_days, seed=1, screen_phq9_min=10),
        CohortSpec(n_patients=treated, days=treated_days, seed=2, screen_phq9_min=10,
                   regimen=sertraline),
        CohortSpec(n_patients=untreated, days=untreated_days, seed=3, screen_phq9_min=10,
                   care=False),
        CohortSpec(n_patients=untreated, days=untreated_days, seed=4, start="remitted",
                   care=False),
    ]  # fmt: skip
