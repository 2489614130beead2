"""What-if scenarios: alternative future input schedules applied to the same posterior.

A scenario never edits the past: its days are offsets from the forecast start (day 0 = the
twin's current day). Fields left ``None`` keep the twin's current value.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from twin.domain.text import Line
from twin.model.care import CareInput
from twin.model.cohort import DrugName

__all__ = ["Scenario", "ScenarioDose"]

MAX_HORIZON_DAYS = 26 * 7
#: A day offset of a scenario's schedule (0 = the forecast's first day).
HorizonDay = Annotated[int, Field(ge=0, le=MAX_HORIZON_DAYS)]


class ScenarioDose(BaseModel):
    """From ``day`` on, take ``mg_per_day`` of ``drug`` (0 stops it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: int = Field(ge=0, le=MAX_HORIZON_DAYS)
    drug: DrugName
    mg_per_day: float = Field(ge=0.0, le=1000.0, allow_inf_nan=False)


class Scenario(BaseModel):
    """One future schedule of treatment and behaviour.

    Attributes:
        name: Label shown with the results.
        doses: Dose changes (start, stop, change) at day offsets.
        adherence: Probability each scheduled dose is taken (``None``: the twin's estimate).
        persistence: ``as_scheduled`` keeps taking the drug; ``usual_care`` adds the stop hazard
            of US usual care (42% stopped by 30 days, 72% by 90; Olfson et al. 2006).
        therapy_session_days: Day offsets of psychotherapy sessions.
        cbti_session_days: Day offsets of CBT-I sessions.
        sleep_hours: Nightly sleep window, hours (``None``: the twin's habitual sleep).
        care: The care setting from day 0 (``twin.model.care``: ``none``, ``usual``,
            ``collaborative`` or ``trial``; ``true``/``false`` mean ``trial``/``none``).
            ``None``: as now (the twin's stated setting continues its schedule, or its observed
            contact rate is held).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Line = Field(default="as now", max_length=80)
    doses: list[ScenarioDose] = Field(default_factory=list, max_length=100)
    adherence: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    persistence: Literal["as_scheduled", "usual_care"] = "as_scheduled"
    therapy_session_days: list[HorizonDay] = Field(
        default_factory=list, max_length=MAX_HORIZON_DAYS + 1
    )
    cbti_session_days: list[HorizonDay] = Field(
        default_factory=list, max_length=MAX_HORIZON_DAYS + 1
    )
    sleep_hours: float | None = Field(default=None, ge=0.0, le=16.0, allow_inf_nan=False)
    care: CareInput | None = None
