"""What is observed about a patient and what is done to them, as validated value objects.

Every constructor validates its fields and raises :class:`twin.errors.ObservationRangeError`
naming the field and the valid range; nothing is clipped or coerced silently (a float where an
integer score is required is an error, ``True`` is not a score). Quality-control drops (a night
with under 4 h of wear, a day with under 10 h) are not errors: the value is valid but carries no
information, and :attr:`usable` says so.

Times are days since the twin's origin (float, so an EMA beep at 14:30 on day 3 is 3.6042).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from twin import errors
from twin.domain.drugs import DRUG_NAMES

__all__ = [
    "CARE_SETTINGS",
    "INTERVENTION_TYPES",
    "MAX_DAY",
    "MAX_EVENT_GAP_DAYS",
    "MAX_SEQ",
    "OBSERVATION_TYPES",
    "CareSetting",
    "CareStatus",
    "Covariates",
    "DoseTaken",
    "EmaAffect",
    "Event",
    "Gad7",
    "Intervention",
    "LnRmssd",
    "Observation",
    "Payload",
    "Phq9",
    "Prescription",
    "RestingHeartRate",
    "SleepDuration",
    "Steps",
    "TherapySession",
]

#: The latest day on a twin's time axis: 100 years after its origin.
MAX_DAY = 36_525.0
#: The most days one event may lie after the patient's latest event (10 years): a twin advances
#: through every day between, and a later date is a wrong origin or a typing error, not care.
MAX_EVENT_GAP_DAYS = 3_653.0
#: Largest event or audit sequence number (SQLite and PostgreSQL store 64-bit integers).
MAX_SEQ = 2**62


def _integer(field: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise errors.ObservationRangeError(field, value, f"integer {lo}..{hi}")
    return value


def _real(field: str, value: object, lo: float, hi: float, unit: str) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    try:
        number = float(value) if ok else math.nan  # type: ignore[arg-type]
    except OverflowError:  # an integer beyond any float
        number = math.nan
    if not math.isfinite(number) or not lo <= number <= hi:
        raise errors.ObservationRangeError(field, value, f"number {lo:g}..{hi:g} {unit}".rstrip())
    return number


@dataclass(frozen=True, slots=True)
class Phq9:
    """A PHQ-9 questionnaire: total 0-27, optionally the nine items 0-3 (item 9 = self-harm).

    Missing items are never prorated: give all nine or none.
    """

    total: int
    items: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _integer("phq9.total", self.total, 0, 27)
        if self.items is not None:
            if not isinstance(self.items, tuple) or len(self.items) != 9:
                raise errors.ObservationRangeError("phq9.items", self.items, "nine items")
            for i, item in enumerate(self.items, start=1):
                _integer(f"phq9.item{i}", item, 0, 3)
            if sum(self.items) != self.total:
                raise errors.ObservationRangeError("phq9.total", self.total, "the sum of the items")

    @property
    def item9(self) -> int | None:
        """The self-harm item (0-3), or ``None`` when items were not given."""
        return None if self.items is None else self.items[8]


@dataclass(frozen=True, slots=True)
class Phq9Item9:
    """PHQ-9 item 9 answered on its own (a safety screen): 0-3, self-harm thoughts.

    One item is not a severity measure, so the twin draws no evidence on severity from it; it
    feeds the ``safety_item9`` alert exactly as the item inside a full PHQ-9 does.
    """

    answer: int

    def __post_init__(self) -> None:
        _integer("phq9_item9.answer", self.answer, 0, 3)


@dataclass(frozen=True, slots=True)
class Gad7:
    """A GAD-7 questionnaire total, 0-21."""

    total: int

    def __post_init__(self) -> None:
        _integer("gad7.total", self.total, 0, 21)


@dataclass(frozen=True, slots=True)
class EmaAffect:
    """An EMA negative-affect rating on a 1-7 Likert item (1 = none, 7 = extreme)."""

    rating: int

    def __post_init__(self) -> None:
        _integer("ema.rating", self.rating, 1, 7)


@dataclass(frozen=True, slots=True)
class SleepDuration:
    """Total sleep time of one night from a wearable, hours (0-16), with hours of wear."""

    hours: float
    wear_hours: float = 24.0

    def __post_init__(self) -> None:
        _real("sleep.hours", self.hours, 0.0, 16.0, "h")
        _real("sleep.wear_hours", self.wear_hours, 0.0, 24.0, "h")

    @property
    def usable(self) -> bool:
        """Nights with under 4 h of wear carry no information (docs/model.md §5.3)."""
        return self.wear_hours >= 4.0


@dataclass(frozen=True, slots=True)
class Steps:
    """Steps in one day (0-100,000), with hours of wear."""

    count: int
    wear_hours: float = 24.0

    def __post_init__(self) -> None:
        _integer("steps.count", self.count, 0, 100_000)
        _real("steps.wear_hours", self.wear_hours, 0.0, 24.0, "h")

    @property
    def usable(self) -> bool:
        """Days with under 10 h of wear carry no information."""
        return self.wear_hours >= 10.0


@dataclass(frozen=True, slots=True)
class RestingHeartRate:
    """Resting heart rate, beats per minute (25-220)."""

    bpm: float

    def __post_init__(self) -> None:
        _real("resting_hr.bpm", self.bpm, 25.0, 220.0, "bpm")


@dataclass(frozen=True, slots=True)
class LnRmssd:
    """Heart-rate variability as ln RMSSD, RMSSD in ms (ln 1 .. ln 300 = 0 .. 5.70)."""

    value: float

    def __post_init__(self) -> None:
        _real("hrv.ln_rmssd", self.value, 0.0, math.log(300.0), "ln ms")


@dataclass(frozen=True, slots=True)
class Covariates:
    """Patient characteristics that change the expected course; any subset may be given.

    Baseline severity is not among them: it is the first PHQ-9 observed.

    Attributes:
        episode_weeks: Duration of the current depressive episode on the event's day, weeks
            (0-1040; two years and more is a chronic episode).
        prior_episodes: Depressive episodes before the current one (0-50).
        anxiety_comorbid: A comorbid anxiety disorder (GAD, panic, social phobia, agoraphobia).
        age_years: Age, years (18-120: the model describes adults).
    """

    episode_weeks: float | None = None
    prior_episodes: int | None = None
    anxiety_comorbid: bool | None = None
    age_years: float | None = None

    def __post_init__(self) -> None:
        if self.episode_weeks is not None:
            _real("covariates.episode_weeks", self.episode_weeks, 0.0, 1040.0, "weeks")
        if self.prior_episodes is not None:
            _integer("covariates.prior_episodes", self.prior_episodes, 0, 50)
        if self.anxiety_comorbid is not None and not isinstance(self.anxiety_comorbid, bool):
            raise errors.ObservationRangeError(
                "covariates.anxiety_comorbid", self.anxiety_comorbid, "true or false"
            )
        if self.age_years is not None:
            _real("covariates.age_years", self.age_years, 18.0, 120.0, "years")
        if all(getattr(self, name) is None for name in self.__slots__):
            raise errors.ObservationRangeError("covariates", "empty", "at least one covariate")


def _drug(field: str, value: object) -> None:
    if not isinstance(value, str) or value not in DRUG_NAMES:
        raise errors.ObservationRangeError(field, value, f"one of {', '.join(sorted(DRUG_NAMES))}")


@dataclass(frozen=True, slots=True)
class Prescription:
    """A change of the prescribed daily dose from this day on; ``mg_per_day = 0`` stops."""

    drug: str
    mg_per_day: float

    def __post_init__(self) -> None:
        _drug("prescription.drug", self.drug)
        _real("prescription.mg_per_day", self.mg_per_day, 0.0, 1000.0, "mg/day")


@dataclass(frozen=True, slots=True)
class DoseTaken:
    """A logged dose of the prescribed drug on this day: taken or missed."""

    drug: str
    taken: bool

    def __post_init__(self) -> None:
        _drug("dose.drug", self.drug)
        if not isinstance(self.taken, bool):
            raise errors.ObservationRangeError("dose.taken", self.taken, "true or false")


@dataclass(frozen=True, slots=True)
class TherapySession:
    """An attended session: ``psychotherapy`` (CBT/IPT/BA) or ``cbti``."""

    kind: Literal["psychotherapy", "cbti"] = "psychotherapy"

    def __post_init__(self) -> None:
        if self.kind not in ("psychotherapy", "cbti"):
            raise errors.ObservationRangeError("therapy.kind", self.kind, "psychotherapy or cbti")


#: Care settings by contact intensity (``twin.model.care``): none, primary-care usual care,
#: collaborative (care-manager) care, trial-like weekly assessments.
CareSetting = Literal["none", "usual", "collaborative", "trial"]
#: The names of :data:`CareSetting`, in that order.
CARE_SETTINGS: tuple[str, ...] = get_args(CareSetting)


@dataclass(frozen=True, slots=True)
class CareStatus:
    """Start (``active=True``) or end of clinical follow-up, and its setting (the care input c_d).

    Attributes:
        active: In clinical follow-up.
        setting: The setting, one of :data:`CARE_SETTINGS`; ``None`` with ``active=True``: not
            stated, so the twin infers its care intensity from the contacts it observes. An end
            of follow-up (``active=False``) takes no setting other than ``"none"``.
    """

    active: bool
    setting: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.active, bool):
            raise errors.ObservationRangeError("care_status.active", self.active, "true or false")
        if self.setting is not None and self.setting not in CARE_SETTINGS:
            raise errors.ObservationRangeError(
                "care_status.setting", self.setting, f"one of {', '.join(CARE_SETTINGS)}"
            )
        if not self.active and self.setting not in (None, "none"):
            raise errors.ObservationRangeError(
                "care_status.setting", self.setting, "none (or absent) when active is false"
            )
        if self.active and self.setting == "none":
            raise errors.ObservationRangeError(
                "care_status.setting", self.setting, "a care setting other than none when active"
            )


Observation = (
    Phq9
    | Phq9Item9
    | Gad7
    | EmaAffect
    | SleepDuration
    | Steps
    | RestingHeartRate
    | LnRmssd
    | Covariates
)
Intervention = Prescription | DoseTaken | TherapySession | CareStatus
Payload = Observation | Intervention

#: The classes of each kind, for ``isinstance`` checks (observations vs interventions routes).
OBSERVATION_TYPES: tuple[type[Observation], ...] = get_args(Observation)
INTERVENTION_TYPES: tuple[type[Intervention], ...] = get_args(Intervention)


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a twin's event log.

    Attributes:
        seq: Per-patient sequence number (>= 1, strictly increasing in the log).
        day: Time, days since the twin's origin (>= 0).
        payload: What happened.
    """

    seq: int
    day: float
    payload: Payload

    def __post_init__(self) -> None:
        _integer("event.seq", self.seq, 1, 2**62)
        # Read back as stored: logs written before the time axis was bounded went up to 1e6.
        _real("event.day", self.day, 0.0, 1e6, "days")
