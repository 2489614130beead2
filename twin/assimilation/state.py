"""One twin's state as one serializable object, and its exact bytes round trip.

A :class:`TwinState` holds the particle matrix (float32, ``(N_ROWS, N)``), normalised log-weights
(float64), the twin-level known inputs and bookkeeping for alerts and freshness, the last applied
event sequence and the model version. Randomness has no hidden position: every event's random
numbers come from a Philox generator keyed by (patient key, event sequence), so the state plus
the event log determine everything (see :func:`event_generator`).

Wire format (little-endian): ``b"NMTW"``, u32 header length, the header as canonical JSON
(sorted keys, floats in shortest round-trip form), then the particle matrix and the log-weights
as raw C-order bytes. ``to_bytes(from_bytes(b)) == b`` and ``from_bytes(to_bytes(s)) == s``.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from twin import errors
from twin.domain.specs import CLINICAL_EPISODE_WEEKS
from twin.model import care, covariates, dynamics
from twin.model.inputs import DEFAULT_SLEEP_H, InputTracker
from twin.model.parameters import MODEL_VERSION, PopulationParameters
from twin.model.priors import BUILTIN_VERSION

__all__ = [
    "DEFAULT_PARTICLES",
    "STREAMS",
    "TwinState",
    "event_generator",
    "new_twin",
    "patient_key",
]

DEFAULT_PARTICLES = 2000
#: Wearable streams with a person baseline learnt in a run-in.
STREAMS = ("sleep", "steps", "resting_hr", "ln_rmssd")
#: Probability that a new twin's patient is in an episode (they are referred for care).
NEW_TWIN_P_EPISODE = 0.7
_MAGIC = b"NMTW"
_HISTORY = 12  # PHQ-9 totals kept for alert rules
_RECENT_DAYS = 7.0  # window of wearable values kept for the composite alert rule
# Stream salts keep forecast randomness apart from event randomness under the same key.
FORECAST_SALT = 0x5CE7A810F0CA57ED


def patient_key(patient_id: str) -> int:
    """A stable 64-bit key of an opaque patient id (BLAKE2b), used to seed randomness."""
    digest = hashlib.blake2b(patient_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def event_generator(key: int, seq: int, *, salt: int = 0) -> np.random.Generator:
    """The counter-based generator of event ``seq`` of a twin: Philox keyed (key ^ salt, seq)."""
    bits = np.random.Philox(key=np.array([key ^ salt, seq], dtype=np.uint64), counter=0)
    return np.random.Generator(bits)


@dataclass
class TwinState:
    """Everything a twin knows, as of event ``last_seq``.

    Attributes:
        key: 64-bit patient key (see :func:`patient_key`).
        particles: Particle matrix, float32, shape ``(N_ROWS, N)``.
        log_weights: Normalised log-weights, float64, shape ``(N,)`` (logsumexp = 0).
        day: Day whose start the particles describe (days since the origin).
        clock: Time of the last applied event, days since the origin.
        ema_clock_h: Hour (since the origin) at which EMA affect A was last advanced.
        last_seq: Sequence number of the last applied event (0: none).
        model_version: Version of the model that wrote the state.
        prior_version: The population prior set the twin was created with (it keeps using it).
        tracker: Twin-level input state (psychotherapy, CBT-I, sleep pressure).
        slots: Drug name per slot, or ``None``.
        prescribed_mg: Prescribed daily dose per slot, mg/day.
        taken_today: Per slot: 1.0 logged taken, 0.0 logged missed, ``None`` not logged.
        care_setting: The stated care setting (``twin.model.care``), or ``None``: not stated,
            so the care intensity is inferred from ``contact_rate``.
        care_since: Day the stated setting began (its acute phase counts from there).
        contact_rate: Contacts (assessments, psychotherapy sessions) per week, an exponential
            average over about four weeks (``care.contact_rate_step``).
        contacts_today: Contacts observed today (counted once at the end of the day).
        record_start: Day of the twin's first event (``None`` before it).
        covariates: The latest known covariates that are evidence on the course class:
            ``episode_weeks`` (the episode's duration when the record started) and
            ``anxiety_comorbid`` (1.0 or 0.0).
        chronic_llr: The log-likelihood ratio (chronic against acute) of ``covariates`` already
            applied to the weights, so a covariate stated again is not counted twice.
        sessions_today: Psychotherapy sessions attended today.
        cbti_today: CBT-I sessions attended today.
        sleep_h: Habitual sleep from the latest usable night, hours.
        doses_taken: Logged doses taken (adherence evidence).
        doses_logged: Logged doses, taken or missed.
        consecutive_missed: Logged missed doses since the last logged dose taken.
        baselines: Per wearable stream ``[n, mean, reference]``: run-in count, mean of the
            values (the person baseline) and, for sleep, the posterior mean insomnia deviation
            Q - q0 when the run-in ended.
        wearable_reference_day: Day the first wearable run-in ended and Z_REF was set.
        phq9_history: Last PHQ-9 totals as ``[day, total]``, oldest first.
        baseline_phq9: First PHQ-9 total of the current course, or ``None``.
        last_seen: Per observation stream, day of the latest value.
        recent: Per wearable stream, ``[day, value]`` over the last 7 days.
        fired: Per alert rule, the day it last fired (``twin.assimilation.alerts``): part of
            the state, so the flags a twin reports survive its checkpoints and restarts.
    """

    key: int
    particles: npt.NDArray[np.float32]
    log_weights: npt.NDArray[np.float64]
    day: int = 0
    clock: float = 0.0
    ema_clock_h: float = 0.0
    last_seq: int = 0
    model_version: str = MODEL_VERSION
    prior_version: str = BUILTIN_VERSION
    tracker: InputTracker = field(default_factory=InputTracker)
    slots: list[str | None] = field(default_factory=lambda: [None] * dynamics.SLOTS)
    prescribed_mg: list[float] = field(default_factory=lambda: [0.0] * dynamics.SLOTS)
    taken_today: list[float | None] = field(default_factory=lambda: [None] * dynamics.SLOTS)
    care_setting: str | None = None
    care_since: int = 0
    contact_rate: float = care.PROFILES["usual"].early_per_week
    contacts_today: int = 0
    record_start: float | None = None
    covariates: dict[str, float] = field(default_factory=dict)
    chronic_llr: float = 0.0
    sessions_today: int = 0
    cbti_today: int = 0
    sleep_h: float = DEFAULT_SLEEP_H
    doses_taken: int = 0
    doses_logged: int = 0
    consecutive_missed: int = 0
    baselines: dict[str, list[float]] = field(default_factory=dict)
    wearable_reference_day: float | None = None
    phq9_history: list[list[float]] = field(default_factory=list)
    baseline_phq9: int | None = None
    last_seen: dict[str, float] = field(default_factory=dict)
    recent: dict[str, list[list[float]]] = field(default_factory=dict)
    fired: dict[str, float] = field(default_factory=dict)

    @property
    def n_particles(self) -> int:
        """Number of particles N."""
        return int(self.particles.shape[1])

    @property
    def weights(self) -> npt.NDArray[np.float64]:
        """Normalised weights, shape ``(N,)``."""
        return np.exp(self.log_weights)

    @property
    def p_adherence(self) -> float:
        """Posterior mean of the daily adherence: Beta(8, 2) prior updated by logged doses."""
        return (self.doses_taken + 8.0) / (self.doses_logged + 10.0)

    def care_intensity(self, days_ahead: int = 0) -> float:
        """Care intensity c_d in [0, 1] ``days_ahead`` days after the twin's current day.

        A stated setting follows its contact schedule from the day it began; otherwise the
        intensity is the observed contact rate (per week, relative to weekly visits, at most 1),
        held at its current value for days ahead: the patient is assumed to keep being seen as
        they are now.
        """
        if self.care_setting is None:
            return min(self.contact_rate, 1.0)
        elapsed = self.day - self.care_since + days_ahead
        return float(care.intensity(self.care_setting, elapsed))

    def remember_phq9(self, day: float, total: int) -> None:
        """Record a PHQ-9 total for the alert rules (bounded history)."""
        if self.baseline_phq9 is None:
            self.baseline_phq9 = total
        self.phq9_history.append([day, float(total)])
        del self.phq9_history[:-_HISTORY]

    def remember_recent(self, stream: str, day: float, value: float) -> None:
        """Keep a wearable value for the 7-day composite rule."""
        window = self.recent.setdefault(stream, [])
        window.append([day, value])
        self.recent[stream] = [v for v in window if v[0] > day - _RECENT_DAYS]

    def note_fired(self, rule: str, day: float) -> None:
        """Record that alert ``rule`` fired on ``day`` (the latest day is kept)."""
        self.fired[rule] = max(day, self.fired.get(rule, day))

    def fired_since(self, day: float) -> list[str]:
        """The alert rules that fired on or after ``day``, sorted."""
        return sorted(rule for rule, last in self.fired.items() if last >= day)

    def _header(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "shape": list(self.particles.shape),
            "day": self.day,
            "clock": self.clock,
            "ema_clock_h": self.ema_clock_h,
            "last_seq": self.last_seq,
            "model_version": self.model_version,
            "prior_version": self.prior_version,
            "tracker": list(self.tracker.as_tuple()),
            "slots": self.slots,
            "prescribed_mg": self.prescribed_mg,
            "taken_today": self.taken_today,
            "care_setting": self.care_setting,
            "care_since": self.care_since,
            "contact_rate": self.contact_rate,
            "contacts_today": self.contacts_today,
            "record_start": self.record_start,
            "covariates": self.covariates,
            "chronic_llr": self.chronic_llr,
            "sessions_today": self.sessions_today,
            "cbti_today": self.cbti_today,
            "sleep_h": self.sleep_h,
            "doses_taken": self.doses_taken,
            "doses_logged": self.doses_logged,
            "consecutive_missed": self.consecutive_missed,
            "baselines": self.baselines,
            "wearable_reference_day": self.wearable_reference_day,
            "phq9_history": self.phq9_history,
            "baseline_phq9": self.baseline_phq9,
            "last_seen": self.last_seen,
            "recent": self.recent,
            "fired": self.fired,
        }

    def to_bytes(self) -> bytes:
        """Serialize to the wire format of the module docstring."""
        header = json.dumps(self._header(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        raw = header.encode()
        particles = np.ascontiguousarray(self.particles, dtype="<f4")
        weights = np.ascontiguousarray(self.log_weights, dtype="<f8")
        return b"".join(
            (_MAGIC, struct.pack("<I", len(raw)), raw, particles.tobytes(), weights.tobytes())
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TwinState:
        """Decode the wire format.

        Raises:
            StateCorruptError: The bytes are not a twin state.
            ModelVersionError: The state was written by another model version.
        """
        try:
            if data[:4] != _MAGIC:
                raise ValueError("bad magic")
            (length,) = struct.unpack_from("<I", data, 4)
            h = json.loads(data[8 : 8 + length])
            rows, n = h["shape"]
            start = 8 + length
            p_end = start + rows * n * 4
            if len(data) != p_end + n * 8:
                raise ValueError("length mismatch")
            particles = np.frombuffer(data, dtype="<f4", count=rows * n, offset=start)
            weights = np.frombuffer(data, dtype="<f8", count=n, offset=p_end)
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            raise errors.StateCorruptError(f"not a twin state: {exc}") from None
        if h["model_version"] != MODEL_VERSION:
            raise errors.ModelVersionError(h["model_version"], MODEL_VERSION)
        if h["care_setting"] not in (None, *care.PROFILES):
            raise errors.StateCorruptError("not a twin state: unknown care setting")
        return cls(
            key=h["key"],
            particles=particles.reshape(rows, n).astype(np.float32),
            log_weights=weights.astype(np.float64),
            day=h["day"],
            clock=h["clock"],
            ema_clock_h=h["ema_clock_h"],
            last_seq=h["last_seq"],
            model_version=h["model_version"],
            # Checkpoints written before prior sets existed used the built-in priors.
            prior_version=h.get("prior_version", BUILTIN_VERSION),
            tracker=InputTracker(*h["tracker"]),
            slots=h["slots"],
            prescribed_mg=h["prescribed_mg"],
            taken_today=h["taken_today"],
            care_setting=h["care_setting"],
            care_since=h["care_since"],
            contact_rate=h["contact_rate"],
            contacts_today=h["contacts_today"],
            record_start=h["record_start"],
            covariates=h["covariates"],
            chronic_llr=h["chronic_llr"],
            sessions_today=h["sessions_today"],
            cbti_today=h["cbti_today"],
            sleep_h=h["sleep_h"],
            doses_taken=h["doses_taken"],
            doses_logged=h["doses_logged"],
            consecutive_missed=h["consecutive_missed"],
            baselines=h["baselines"],
            wearable_reference_day=h["wearable_reference_day"],
            phq9_history=h["phq9_history"],
            baseline_phq9=h["baseline_phq9"],
            last_seen=h["last_seen"],
            recent=h["recent"],
            fired=h["fired"],
        )

    def equals(self, other: TwinState) -> bool:
        """Bit-for-bit equality (arrays compared as bytes)."""
        return self.to_bytes() == other.to_bytes()


def new_twin(
    patient_id: str,
    *,
    n_particles: int = DEFAULT_PARTICLES,
    params: PopulationParameters | None = None,
    prior_version: str = BUILTIN_VERSION,
    episode_weeks: float | None = CLINICAL_EPISODE_WEEKS,
) -> TwinState:
    """A new twin at day 0, particles drawn from the population prior.

    Args:
        patient_id: Opaque patient id (never stored; only its 64-bit key is).
        n_particles: Number of particles N (>= 10).
        params: Population parameters (those of ``prior_version``).
        prior_version: The prior set ``params`` come from, recorded in the twin.
        episode_weeks: The episode duration assumed until one is stated, weeks (default: the
            typical clinical duration); ``None``: a new episode's class shares.
    """
    if not isinstance(n_particles, int) or n_particles < 10:
        raise errors.ObservationRangeError("n_particles", n_particles, "integer >= 10")
    if episode_weeks is not None and not 0.0 <= episode_weeks <= 1040.0:
        raise errors.ObservationRangeError("episode_weeks", episode_weeks, "0..1040 weeks")
    p = params or PopulationParameters()
    key = patient_key(patient_id)
    generator = event_generator(key, 0)
    X = dynamics.sample_prior(p, (n_particles,), generator, p_episode=NEW_TWIN_P_EPISODE)
    # A patient who comes to care has usually been in the episode for a while: the course class
    # starts from its posterior after the typical clinical duration, held as an assumed
    # covariate that a stated duration replaces (twin.model.covariates).
    assumed = {} if episode_weeks is None else {"episode_weeks": episode_weeks}
    llr = float(covariates.chronic_log_likelihood_ratio(p, episode_weeks=episode_weeks))
    X[dynamics.Row.CHRONIC] = generator.random(n_particles) < covariates.chronic_probability(p, llr)
    log_w = np.full(n_particles, -math.log(n_particles))
    return TwinState(
        key=key, particles=X, log_weights=log_w, prior_version=prior_version,
        covariates=assumed, chronic_llr=llr,
    )  # fmt: skip
