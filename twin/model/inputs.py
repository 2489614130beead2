"""Twin-level known inputs that evolve day by day: psychotherapy, CBT-I and sleep pressure.

These quantities are functions of what is logged or scheduled (sessions attended, nights slept),
identical for every particle of a twin, so they are tracked once per twin rather than per
particle. :class:`InputTracker` is a small mutable record that serializes as a tuple of floats.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

from twin.model import pharmacology
from twin.model.parameters import PopulationParameters

__all__ = ["DEFAULT_SLEEP_H", "InputTracker"]

#: Sleep assumed for a night with no wearable data and no scenario schedule, hours.
DEFAULT_SLEEP_H = 8.0


@dataclass(slots=True)
class InputTracker:
    """Deterministic per-twin input state.

    Attributes:
        n_eff: Effective psychotherapy sessions (decays with τ_K between courses).
        n_cbti: CBT-I sessions attended.
        h_wake: Process S at the last wake time (16/8 h equilibrium ≈ 0.093).
        sleep_debt: Slow sleep-debt accumulator L (>= 0).
    """

    n_eff: float = 0.0
    n_cbti: float = 0.0
    h_wake: float = 0.0927945  # PopulationParameters().h_wake_norm, the 16/8 h equilibrium
    sleep_debt: float = 0.0

    def psi(self, p: PopulationParameters) -> float:
        """Psychotherapy effect Ψ = Ψ_max·Φ(ln(n_eff/8)/1.75), PHQ-9 points."""
        return p.psi_max * float(pharmacology.howard_fraction(self.n_eff, p))

    def cbti(self, p: PopulationParameters) -> float:
        """CBT-I effect on insomnia I = I_max·min(n/6, 1), z-units (ramps over ~6 sessions)."""
        return p.i_max * min(self.n_cbti / p.cbti_sessions, 1.0)

    def end_day(
        self,
        p: PopulationParameters,
        *,
        therapy_sessions: int = 0,
        cbti_sessions: int = 0,
        sleep_h: float = DEFAULT_SLEEP_H,
    ) -> None:
        """Close one day: count sessions, decay n_eff, run Process S and the sleep debt.

        L_{d+1} = L_d·e^{-1/τ_L} + max(0, H_bed,d - H_bed,16/8), where H_bed,16/8 ≈ 0.62 is H at
        bedtime on the settled 16/8 h schedule, so only pressure beyond a normal night accumulates.
        """
        self.n_eff = self.n_eff * math.exp(-1.0 / p.tau_k) + therapy_sessions
        self.n_cbti += cbti_sessions
        h_bed, self.h_wake = pharmacology.process_s_day(self.h_wake, sleep_h=sleep_h, p=p)
        self.sleep_debt = self.sleep_debt * math.exp(-1.0 / p.tau_l) + max(
            0.0, h_bed - p.h_bed_norm
        )

    def as_tuple(self) -> tuple[float, float, float, float]:
        """Plain floats, for serialization."""
        n_eff, n_cbti, h_wake, sleep_debt = astuple(self)
        return n_eff, n_cbti, h_wake, sleep_debt
