"""Builders for twin events and states (cosmicpython's random_refs idea, for twins)."""

from __future__ import annotations

from twin.assimilation.state import TwinState, new_twin
from twin.domain import events as E


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
