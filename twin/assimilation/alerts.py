"""Alert rules evaluated on every update of a twin (domain rules, not model forecasts).

Rules and their statuses:

- ``safety_item9``: any PHQ-9 with item 9 (self-harm) > 0, or item 9 answered on its own
  (:class:`~twin.domain.events.Phq9Item9`) > 0, fires, critical. It is never
  suppressed, never deduplicated and never derived from a forecast: it triggers the clinical
  safety protocol.
- ``reliable_deterioration``: an observed PHQ-9 total at least 5 points (the reliable change
  index, Lowe et al. 2004) above the previous total or the course baseline.
- ``missed_doses``: two or more consecutive logged missed doses.
- ``stale_data``: no PHQ-9 for more than 28 days (or none 28 days after the twin started).
- ``behavioural_decline``: a rule over two metrics (steps and sleep over the last 7 days against
  the person's baselines); if either metric has fewer than 3 values in the window or no
  completed baseline, it reports ``insufficient_data`` instead of firing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from twin.assimilation.state import TwinState
from twin.domain import events

__all__ = ["RELIABLE_CHANGE", "STALE_AFTER_DAYS", "Alert", "evaluate"]

RELIABLE_CHANGE = 5
STALE_AFTER_DAYS = 28.0
_MIN_WINDOW_VALUES = 3
_STEPS_DROP = 0.5  # log-steps below baseline (~40% fewer steps)
_SLEEP_DROP_H = 1.0

Status = Literal["fired", "insufficient_data"]
Severity = Literal["critical", "warning", "info"]


@dataclass(frozen=True, slots=True)
class Alert:
    """One rule's outcome on one update (quiet rules are not reported)."""

    rule: str
    status: Status
    severity: Severity
    day: float
    seq: int
    detail: str


def _safety_item9(event: events.Event, answer: int | None) -> list[Alert]:
    if answer is None or answer == 0:
        return []
    detail = f"PHQ-9 item 9 answered {answer}: follow the clinical safety protocol"
    return [Alert("safety_item9", "fired", "critical", event.day, event.seq, detail)]


def _phq9_rules(state: TwinState, event: events.Event, phq9: events.Phq9) -> list[Alert]:
    out = _safety_item9(event, phq9.item9)
    earlier = state.phq9_history[:-1]  # the history already holds this observation
    references = [("previous", int(earlier[-1][1]))] if earlier else []
    if state.baseline_phq9 is not None and earlier:
        references.append(("baseline", state.baseline_phq9))
    for name, ref in references:
        if phq9.total - ref >= RELIABLE_CHANGE:
            out.append(
                Alert(
                    "reliable_deterioration",
                    "fired",
                    "warning",
                    event.day,
                    event.seq,
                    f"PHQ-9 {phq9.total} is {phq9.total - ref} above the {name} total {ref}",
                )
            )
            break
    return out


def _composite(state: TwinState, event: events.Event) -> Alert | None:
    steps = state.recent.get("steps", [])
    sleep = state.recent.get("sleep", [])
    base_steps = state.baselines.get("steps")
    base_sleep = state.baselines.get("sleep")
    missing = [
        name
        for name, window, base in (("steps", steps, base_steps), ("sleep", sleep, base_sleep))
        if len(window) < _MIN_WINDOW_VALUES or base is None or base[0] < 14
    ]
    if missing:
        return Alert(
            "behavioural_decline",
            "insufficient_data",
            "info",
            event.day,
            event.seq,
            f"not evaluated: too little {' and '.join(missing)} data in 7 days",
        )
    if base_steps is None or base_sleep is None:  # unreachable: `missing` covers it
        return None
    mean_steps = sum(v for _, v in steps) / len(steps)
    mean_sleep = sum(v for _, v in sleep) / len(sleep)
    if mean_steps < base_steps[1] - _STEPS_DROP and mean_sleep < base_sleep[1] - _SLEEP_DROP_H:
        drop = 1.0 - math.exp(mean_steps - base_steps[1])
        return Alert(
            "behavioural_decline",
            "fired",
            "warning",
            event.day,
            event.seq,
            f"7-day steps {drop:.0%} below baseline and sleep "
            f"{base_sleep[1] - mean_sleep:.1f} h below baseline",
        )
    return None


def evaluate(state: TwinState, event: events.Event) -> list[Alert]:
    """Evaluate every rule that ``event`` can change, on the state after the event."""
    out: list[Alert] = []
    payload = event.payload
    if isinstance(payload, events.Phq9):
        out.extend(_phq9_rules(state, event, payload))
    if isinstance(payload, events.Phq9Item9):
        out.extend(_safety_item9(event, payload.answer))
    if isinstance(payload, events.DoseTaken) and state.consecutive_missed >= 2:
        out.append(
            Alert(
                "missed_doses",
                "fired",
                "warning",
                event.day,
                event.seq,
                f"{state.consecutive_missed} consecutive doses logged as missed",
            )
        )
    last_phq9 = state.phq9_history[-1][0] if state.phq9_history else 0.0
    if event.day - last_phq9 > STALE_AFTER_DAYS:
        out.append(
            Alert(
                "stale_data",
                "fired",
                "info",
                event.day,
                event.seq,
                f"no PHQ-9 for {event.day - last_phq9:.0f} days",
            )
        )
    if isinstance(payload, events.Steps | events.SleepDuration):
        composite = _composite(state, event)
        if composite is not None:
            out.append(composite)
    return out
