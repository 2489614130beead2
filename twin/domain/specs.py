"""What a simulation is asked to do: cohort specs, what-if scenarios, care settings.

These are the value types a researcher writes and the API carries: plain pydantic models with
every field bounded from its domain. The simulator (:func:`twin.model.cohort.simulate_cohort`)
and the forecast engine (:mod:`twin.forecast.engine`) read them; they live here, below the model,
so the SDK validates a spec without loading NumPy, SciPy or the compiled day step.

A scenario never edits the past: its days are offsets from the forecast start (day 0 = the
twin's current day); fields of a scenario left ``None`` keep the twin's current value. A
cohort's days count from the cohort's start.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from twin import errors
from twin.domain.drugs import DRUGS, drug, known_drug_name
from twin.domain.events import CareSetting
from twin.domain.text import Line

__all__ = [
    "CLINICAL_EPISODE_WEEKS",
    "MAX_COHORT_DAYS",
    "MAX_DRUGS_AT_ONCE",
    "MAX_HORIZON_DAYS",
    "CareInput",
    "CareSetting",
    "CohortDay",
    "CohortSpec",
    "DoseChange",
    "DrugName",
    "HorizonDay",
    "Population",
    "Scenario",
    "ScenarioDose",
    "maintenance_history_days",
    "normalise_setting",
    "require_maintenance_history",
]


def normalise_setting(value: object) -> object:
    """Accept the switch of earlier clients: ``True`` is ``"trial"``, ``False`` is ``"none"``.

    ``True`` meant "in active care" as the model's trial-calibrated care effect describes it,
    so it keeps that meaning; anything else passes through to the ``Literal`` check.
    """
    if isinstance(value, bool):
        return "trial" if value else "none"
    return value


#: A care setting in a pydantic model (cohort specs, scenarios): a setting name or a legacy bool.
CareInput = Annotated[CareSetting, BeforeValidator(normalise_setting)]

#: A drug name validated against the drug table (shared by cohorts and scenarios); the schema
#: lists the names, so clients see the choices and nothing unbounded is accepted.
DrugName = Annotated[
    str,
    AfterValidator(known_drug_name),
    WithJsonSchema({"type": "string", "enum": sorted(DRUGS), "maxLength": 32}),
]

#: Drugs a patient takes at once: the current and the previous one, for cross-tapers (the
#: model's drug slots).
MAX_DRUGS_AT_ONCE = 2
#: The integer formats OpenAPI clients size their fields by (JSON Schema has none of its own).
_INT32: dict[str, Any] = {"format": "int32"}
_INT64: dict[str, Any] = {"format": "int64"}
#: The longest cohort a spec may describe, days (ten years).
MAX_COHORT_DAYS = 3650
#: A day of a cohort's schedule, days since cohort start.
CohortDay = Annotated[int, Field(ge=0, le=MAX_COHORT_DAYS, json_schema_extra=_INT32)]
#: The longest what-if horizon, days (26 weeks).
MAX_HORIZON_DAYS = 26 * 7
#: A day offset of a scenario's schedule (0 = the forecast's first day).
HorizonDay = Annotated[int, Field(ge=0, le=MAX_HORIZON_DAYS, json_schema_extra=_INT32)]

#: The episode duration assumed for a patient seen in a clinic when nothing says otherwise,
#: weeks: STAR*D's 2,851 outpatients had been in their episode for a median of just over six
#: months (46 % six months or less; Gilmer et al. 2008). New episodes in the population are much
#: shorter; a patient who comes to care has usually been depressed for a while.
CLINICAL_EPISODE_WEEKS = 26.0


class Population(BaseModel):
    """Covariates of a simulated cohort's patients (each ``None``: the population prior).

    ``Population()`` describes new episodes in the population (the course classes at their
    share of new episodes); a cohort spec's default is a clinical sample,
    ``Population(episode_weeks=CLINICAL_EPISODE_WEEKS)``.

    Attributes:
        episode_weeks: Median duration of the current episode at baseline, weeks; each
            patient's D is log-normal around it with log-SD 1 [assumption].
        anxiety_share: Share of patients with a comorbid anxiety disorder.
        prior_episodes_mean: Mean number of earlier episodes (geometric counts).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    episode_weeks: float | None = Field(default=None, ge=0.0, le=1040.0, allow_inf_nan=False)
    anxiety_share: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    prior_episodes_mean: float | None = Field(default=None, ge=0.0, le=20.0, allow_inf_nan=False)


class DoseChange(BaseModel):
    """A change of daily dose from ``day`` on; ``mg_per_day = 0`` stops the drug."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: CohortDay = Field(description="day of the change, days since cohort start")
    drug: DrugName = Field(description="lower-case generic name from the model's drug table")
    mg_per_day: float = Field(ge=0.0, le=1000.0, allow_inf_nan=False)


class CohortSpec(BaseModel):
    """A simulated cohort: who is enrolled and what is done to them.

    With ``start="remitted"``, a regimen entry on day 0 is a maintenance dose the patients have
    taken to steady state (they remitted on it); a later entry with ``mg_per_day=0`` stops it.
    With ``start="episode"``, a day-0 entry starts a drug in drug-naive patients.

    ``care`` is the setting of clinical contact (:mod:`twin.model.care`): ``trial`` (weekly
    assessments, what randomised trials' arms describe), ``collaborative``, ``usual`` (primary
    care follow-up) or ``none``; its contact schedule begins on day 0. ``true``/``false`` are
    accepted as ``trial``/``none``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_patients: int = Field(ge=1, le=2_000_000, json_schema_extra=_INT32)
    days: CohortDay
    seed: int = Field(default=0, ge=0, lt=2**63, json_schema_extra=_INT64)
    screen_phq9_min: Annotated[int, Field(ge=0, le=27, json_schema_extra=_INT32)] | None = None
    screen_hamd17_min: Annotated[int, Field(ge=0, le=52, json_schema_extra=_INT32)] | None = Field(
        default=None,
        description="enrol only patients rated at least this on the "
        "17-item HAM-D at baseline (the clinician-rated screen of most drug trials)",
    )
    start: Literal["episode", "remitted"] = "episode"
    care: CareInput = Field(default="trial", description="care setting (contact intensity)")
    population: Population = Field(
        default_factory=lambda: Population(episode_weeks=CLINICAL_EPISODE_WEEKS),
        description="the patients' covariates (episode duration, anxiety, prior episodes); "
        "default: a clinical sample, in an episode for a median of 26 weeks",
    )
    regimen: list[DoseChange] = Field(default_factory=list, max_length=100)
    adherence: float = Field(default=1.0, ge=0.0, le=1.0, allow_inf_nan=False)
    persistence: Literal["as_scheduled", "usual_care"] = Field(
        default="as_scheduled",
        description="usual_care: patients stop their drugs at the rate of US usual care "
        "(42 % by 30 days, 72 % by 90; Olfson et al. 2006)",
    )
    therapy_session_days: list[CohortDay] = Field(
        default_factory=list, max_length=MAX_COHORT_DAYS + 1
    )
    observe_every_days: int = Field(default=7, ge=1, le=MAX_COHORT_DAYS, json_schema_extra=_INT32)
    # Insomnia treatment and the sleep window: the sleep channel's inputs (docs/model.md).
    cbti_session_days: list[CohortDay] = Field(default_factory=list, max_length=MAX_COHORT_DAYS + 1)
    sleep_hours: float = Field(default=8.0, ge=0.0, le=16.0, allow_inf_nan=False)
    detailed: bool = Field(default=False, description="also return G, Q, W and u traces")

    @model_validator(mode="after")
    def _at_most_two_drugs(self) -> CohortSpec:
        names = {c.drug for c in self.regimen}
        if len(names) > MAX_DRUGS_AT_ONCE:
            raise ValueError(
                f"a regimen may use at most {MAX_DRUGS_AT_ONCE} drugs, got {len(names)}"
            )
        return self


#: History a remitted cohort's twins need for their care effect to settle (~5·τ_P), days.
_CARE_SETTLING_DAYS = 28


def maintenance_history_days(spec: CohortSpec) -> int:
    """Observed days a remitted cohort needs before its what-if starts.

    Five half-lives of every day-0 maintenance drug (97 % of steady state) and
    :data:`_CARE_SETTLING_DAYS`; 0 for a cohort that starts in an episode.
    """
    if spec.start != "remitted":
        return 0
    half_lives = [
        5.0 * drug(c.drug).half_life_h / 24.0
        for c in spec.regimen
        if c.day == 0 and c.mg_per_day > 0.0
    ]
    return math.ceil(max([_CARE_SETTLING_DAYS, *half_lives]))


def require_maintenance_history(spec: CohortSpec) -> None:
    """Refuse a cohort whose observed history is shorter than its twins need.

    Raises:
        InvalidInputError: ``spec.days < maintenance_history_days(spec)``.
    """
    needed = maintenance_history_days(spec)
    if spec.days < needed:
        raise errors.InvalidInputError(
            f"a remitted cohort's twins need {needed} days of observed history "
            f"(synthetic.days >= {needed}) for their drug exposure and care effect to reach the "
            "patients' steady state"
        )


class ScenarioDose(BaseModel):
    """From ``day`` on, take ``mg_per_day`` of ``drug`` (0 stops it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: HorizonDay
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

    name: Line = Field(default="as now", min_length=1, max_length=80)
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
