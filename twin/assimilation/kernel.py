"""The assimilation kernel: apply events to many twins in one vectorised pass.

:func:`apply_events` takes every pending event of a set of twins (as the actor runtime hands a
host's mailbox over) and processes them in rounds: round r applies the r-th pending event of
each twin. Within a round, the day steps of all twins that must advance, the likelihoods of all
twins observing the same stream and the weight updates run as single NumPy calls over a
``(rows, twins, particles)`` matrix; only resampling and Liu-West shrinkage, which need a
twin's own weight CDF and covariance, loop over twins.

Determinism: every random number of event ``seq`` comes from that event's own Philox generator
(:func:`twin.assimilation.state.event_generator`), drawn in a fixed order (day-step normals, day-
step uniforms, the EMA normal, the resampling uniform, the Liu-West normals), and every
reduction runs along the particle axis of one twin. The result per twin is therefore the same,
bit for bit, whether events arrive one by one or in batches, for one twin or many;
:func:`apply_events_reference` (one twin, one event at a time) is the reference the tests compare.

Per-particle bookkeeping of the particle filter (docs/model.md §7): bootstrap proposal (the
day step), weights × likelihood, systematic resampling when ESS < N/2, Liu-West (a = 0.98) on the
static parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin import errors
from twin.assimilation import alerts, resampling
from twin.assimilation.state import TwinState, event_generator
from twin.domain import events
from twin.domain.drugs import drug
from twin.model import care, covariates, dynamics, likelihood
from twin.model.dynamics import Row
from twin.model.parameters import PopulationParameters

__all__ = [
    "RUN_IN",
    "SEVERE_PHQ9",
    "EventResult",
    "apply_events",
    "apply_events_reference",
    "assign_slot",
    "day_inputs",
    "posterior_mean",
    "posterior_probability",
    "posterior_sd",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Usable values of a wearable stream that form the person baseline before it is assimilated.
RUN_IN = 14
#: PHQ-9 severity counted as moderately severe or worse (Kroenke et al. 2001): P(S >= this) is a
#: twin's ``p_severe``.
SEVERE_PHQ9 = 15.0
#: Static rows moved by Liu-West (ω is binary and is only resampled).
LW_ROWS = [Row.MU_EP, Row.MU_WELL, Row.PI, Row.LOG_ETA, Row.G0, Row.ALPHA, Row.Q0]
_LW_BOUNDS = {
    Row.MU_EP: (0.0, 27.0),
    Row.MU_WELL: (0.0, 27.0),
    Row.PI: (0.0, 27.0),
    Row.G0: (0.0, 21.0),
}
_PHQ9_CUTS = likelihood.score_cuts(27)
_GAD7_CUTS = likelihood.score_cuts(21)


@dataclass(frozen=True, slots=True)
class EventResult:
    """What applying one event did.

    Attributes:
        seq: The event's sequence number.
        assimilated: Whether an observation re-weighted the particles.
        log_evidence: log p(y | past) of an assimilated observation, else ``None``.
        ess: Effective sample size after the update (before any resampling).
        resampled: Whether the particles were resampled.
        alerts: Alert rules that fired or lacked data on this update.
        rejected: Why the event could not be applied to this twin (a dose of a drug that is not
            prescribed, a third concurrent drug); it stays in the log and changed nothing but
            the twin's position in it. ``None`` when it was applied.
    """

    seq: int
    assimilated: bool
    log_evidence: float | None
    ess: float
    resampled: bool
    alerts: tuple[alerts.Alert, ...]
    rejected: str | None = None


def posterior_mean(state: TwinState, row: int) -> float:
    """Weighted posterior mean of one row of a twin's particle matrix."""
    return float(state.particles[row].astype(np.float64) @ state.weights)


def posterior_probability(state: TwinState, mask: npt.NDArray[np.bool_]) -> float:
    """Posterior probability of the particles in ``mask``, kept in [0, 1] against round-off."""
    return min(max(float(mask.astype(np.float64) @ state.weights), 0.0), 1.0)


def posterior_sd(state: TwinState, row: int) -> float:
    """Weighted posterior standard deviation of one row."""
    values = state.particles[row].astype(np.float64)
    mean = float(values @ state.weights)
    return math.sqrt(max(float(((values - mean) ** 2) @ state.weights), 0.0))


def _slot_for(state: TwinState, name: str, particles: F32 | None = None) -> int:
    """The slot ``name`` would take: its own, a free one, else the stopped drug with least exposure.

    Args:
        state: The twin.
        name: The drug.
        particles: The twin's current particles, ``(rows, n)`` (default ``state.particles``;
            inside a batch the current values are the batch's, not yet written back).

    Raises:
        UnknownDrugError: ``name`` is not in the drug table.
        InvalidInputError: Two other drugs are still prescribed.
    """
    drug(name)
    if name in state.slots:
        return state.slots.index(name)
    if None in state.slots:
        return state.slots.index(None)
    stopped = [k for k in range(dynamics.SLOTS) if state.prescribed_mg[k] == 0.0]
    if not stopped:
        raise errors.InvalidInputError(
            f"cannot start {name}: two other drugs are still prescribed; stop one first"
        )
    current = state.particles if particles is None else particles
    return min(stopped, key=lambda k: float(np.max(current[Row.C0 + k])))


def assign_slot(state: TwinState, name: str, particles: F32 | None = None) -> int:
    """Give ``name`` a drug slot (see :func:`_slot_for`) and return it.

    A reused slot keeps the stopped drug's residual exposure, which then decays at the new
    drug's rate: an approximation that avoids a spurious discontinuation step at the switch.
    """
    k = _slot_for(state, name, particles)
    state.slots[k] = name
    return k


def day_inputs(states: Sequence[TwinState], p: PopulationParameters) -> dynamics.DayInputs:
    """Known inputs of the current day of each twin, shaped ``(T, 1)`` / ``(SLOTS, T, 1)``."""

    def column(values: list[float]) -> F32:
        return np.array(values, dtype=np.float32)[:, None]

    dose = [[0.0] * len(states) for _ in range(dynamics.SLOTS)]
    taken = [[math.nan] * len(states) for _ in range(dynamics.SLOTS)]
    k_e = [[0.0] * len(states) for _ in range(dynamics.SLOTS)]
    for t, s in enumerate(states):
        for k, name in enumerate(s.slots):
            if name is None:
                continue
            d = drug(name)
            dose[k][t] = s.prescribed_mg[k] / d.min_dose_mg
            k_e[k][t] = d.k_e
            logged = s.taken_today[k]
            taken[k][t] = math.nan if logged is None else logged
    return dynamics.DayInputs(
        care=column([s.care_intensity() for s in states]),
        dose_rel=np.stack([column(d) for d in dose]),
        taken=np.stack([column(d) for d in taken]),
        p_adh=column([s.p_adherence for s in states]),
        k_e=np.stack([column(d) for d in k_e]),
        psi=column([s.tracker.psi(p) for s in states]),
        cbti=column([s.tracker.cbti(p) for s in states]),
        sleep_debt=column([s.tracker.sleep_debt for s in states]),
    )


def _end_day(s: TwinState, p: PopulationParameters) -> None:
    s.tracker.end_day(
        p, therapy_sessions=s.sessions_today, cbti_sessions=s.cbti_today, sleep_h=s.sleep_h
    )
    s.contact_rate = care.contact_rate_step(s.contact_rate, s.contacts_today)
    s.contacts_today = 0
    s.sessions_today = 0
    s.cbti_today = 0
    s.taken_today = [None] * dynamics.SLOTS
    s.day += 1


class _Batch:
    """Particles and log-weights of a set of twins stacked along a twin axis."""

    def __init__(self, states: Sequence[TwinState]) -> None:
        self.states = states
        self.X: F32 = np.stack([s.particles for s in states], axis=1)
        self.log_w: F64 = np.stack([s.log_weights for s in states])

    def take(self, idx: list[int]) -> F32:
        """Particles of twins ``idx``: a view for the whole batch in order, else a copy."""
        if len(idx) == len(self.states):
            return self.X
        return self.X[:, idx]

    def put(self, idx: list[int], sub: F32) -> None:
        if sub is not self.X:
            self.X[:, idx] = sub

    def write_back(self) -> None:
        for t, s in enumerate(self.states):
            s.particles = np.ascontiguousarray(self.X[:, t])
            s.log_weights = self.log_w[t].copy()


#: Days of random draws made at once when a twin advances (bounds the draws' memory to
#: 64 days x 6 float32 x particles: 3 MB for 2,000 particles).
DRAW_BLOCK_DAYS = 64


def _advance(
    batch: _Batch,
    idx: list[int],
    steps: dict[int, int],
    gens: dict[int, np.random.Generator],
    p: PopulationParameters,
) -> None:
    """Run each twin in ``idx`` forward ``steps[i]`` days, all twins of a day in one call.

    The day draws are made :data:`DRAW_BLOCK_DAYS` days at a time (normals, then uniforms, for
    each block), so memory stays bounded however far an event moves a twin.
    """
    n = batch.X.shape[-1]
    total = max((steps[i] for i in idx), default=0)
    for block in range(0, total, DRAW_BLOCK_DAYS):
        length = {i: min(steps[i] - block, DRAW_BLOCK_DAYS) for i in idx if steps[i] > block}
        normals = {
            i: gens[i].standard_normal((k, dynamics.N_NORMALS, n), dtype=np.float32)
            for i, k in length.items()
        }
        uniforms = {
            i: gens[i].random((k, dynamics.N_UNIFORMS, n), dtype=np.float32)
            for i, k in length.items()
        }
        for j in range(max(length.values())):
            part = [i for i in length if length[i] > j]
            sub = batch.take(part)
            dynamics.day_step(
                sub,
                day_inputs([batch.states[i] for i in part], p),
                p,
                normals=np.stack([normals[i][j] for i in part], axis=1),
                uniforms=np.stack([uniforms[i][j] for i in part], axis=1),
            )
            batch.put(part, sub)
            for i in part:
                _end_day(batch.states[i], p)


def _wearable_mean(
    stream: str, sub: F32, reference: F64, p: PopulationParameters
) -> tuple[F64, float]:
    """Per-particle predicted deviation of a wearable value from its run-in baseline, and SD.

    The run-in mean absorbed the person's level at that time, so the streams inform changes:
    steps, resting HR and ln RMSSD load on z_S - Z_REF; sleep on (Q - q0) - its run-in mean.
    """
    if stream == "sleep":
        dq = (sub[Row.Q] - sub[Row.Q0]).astype(np.float64) - reference
        return -p.sleep_loading_h * dq, p.sleep_sd_h
    dz = likelihood.severity_z(sub[Row.S], sub[Row.MU_WELL]) - sub[Row.Z_REF]
    if stream == "steps":
        return -p.steps_loading * dz, p.steps_sd
    if stream == "resting_hr":
        return p.hr_loading * dz, p.hr_sd
    return -p.rmssd_loading * dz, p.rmssd_sd


def _stream_value(payload: events.Observation) -> tuple[str, float] | None:
    """Wearable stream name and value on the model's scale, or ``None`` (not a wearable)."""
    if isinstance(payload, events.SleepDuration):
        return ("sleep", payload.hours) if payload.usable else None
    if isinstance(payload, events.Steps):
        return ("steps", math.log1p(payload.count)) if payload.usable else None
    if isinstance(payload, events.RestingHeartRate):
        return "resting_hr", payload.bpm
    if isinstance(payload, events.LnRmssd):
        return "ln_rmssd", payload.value
    return None


def _weigh(batch: _Batch, idx: list[int], loglik: F64, evidence: dict[int, float]) -> None:
    log_w, total = resampling.normalise(batch.log_w[idx] + loglik)
    batch.log_w[idx] = log_w
    for row, i in enumerate(idx):
        evidence[i] = float(total[row])


def _observe(
    batch: _Batch,
    obs: dict[int, events.Event],
    gens: dict[int, np.random.Generator],
    p: PopulationParameters,
    evidence: dict[int, float],
) -> None:
    """Weight the particles of every observing twin, one vectorised call per stream."""
    groups: dict[str, list[int]] = {}
    for i, ev in obs.items():
        groups.setdefault(type(ev.payload).__name__, []).append(i)
    for kind, idx in groups.items():
        if kind in ("Phq9", "Gad7"):
            row, sd, cuts = (
                (Row.M_S, p.phq9_sd, _PHQ9_CUTS)
                if kind == "Phq9"
                else (Row.M_G, p.gad7_sd, _GAD7_CUTS)
            )
            y = np.array([[obs[i].payload.total] for i in idx])  # type: ignore[union-attr]
            _weigh(
                batch, idx, likelihood.ordinal_log_prob(y, batch.take(idx)[row], sd, cuts), evidence
            )
        elif kind == "Phq9Item9":
            continue  # one item carries no evidence on severity (it only feeds the alert)
        elif kind == "Covariates":
            _observe_covariates(batch, [obs[i] for i in idx], idx, p, evidence)
        elif kind == "EmaAffect":
            n = batch.X.shape[-1]
            normal = np.stack([gens[i].standard_normal(n, dtype=np.float32) for i in idx])
            hours = np.array([[obs[i].day * 24.0 - batch.states[i].ema_clock_h] for i in idx])
            sub = batch.take(idx)
            dynamics.ema_advance(sub, hours, p, normal=normal)
            batch.put(idx, sub)
            for i in idx:
                batch.states[i].ema_clock_h = obs[i].day * 24.0
            y = np.array([[obs[i].payload.rating - 1] for i in idx])  # type: ignore[union-attr]
            _weigh(
                batch,
                idx,
                likelihood.ordinal_log_prob(y, sub[Row.A], p.ema_noise, p.ema_cuts),
                evidence,
            )
        else:
            _observe_wearables(batch, [obs[i] for i in idx], idx, p, evidence)


def _observe_covariates(
    batch: _Batch,
    evs: list[events.Event],
    idx: list[int],
    p: PopulationParameters,
    evidence: dict[int, float],
) -> None:
    """Patient covariates (:mod:`twin.model.covariates`).

    Prior episodes are known exactly: every particle's relapse offset is set from them. Episode
    duration and comorbid anxiety are evidence on the course class: each chronic particle's
    weight is multiplied by the likelihood ratio P(covariates | chronic) / P(covariates | acute).
    The twin keeps the latest value of each and the ratio it has applied, so a covariate stated
    again (or corrected) changes the weights only by the difference. A duration is the
    episode's as of the event's day; the days the twin has observed since its record started
    are the course's own evidence, so they are taken off (the duration before the record).
    """
    sub = batch.take(idx)
    loglik = np.zeros((len(idx), sub.shape[-1]))
    for k, ev in enumerate(evs):
        given = ev.payload
        assert isinstance(given, events.Covariates)
        state = batch.states[idx[k]]
        if given.prior_episodes is not None:
            sub[Row.LOG_RELAPSE, k] = covariates.relapse_offset(p, given.prior_episodes)
        known = dict(state.covariates)
        if given.episode_weeks is not None:
            start = ev.day if state.record_start is None else state.record_start
            observed_weeks = (ev.day - start) / 7.0
            known["episode_weeks"] = max(0.0, given.episode_weeks - observed_weeks)
        if given.anxiety_comorbid is not None:
            known["anxiety_comorbid"] = 1.0 if given.anxiety_comorbid else 0.0
        anxiety = known.get("anxiety_comorbid")
        total = float(
            covariates.chronic_log_likelihood_ratio(
                p,
                episode_weeks=known.get("episode_weeks"),
                anxiety_comorbid=None if anxiety is None else anxiety > 0.5,
            )
        )
        loglik[k] = np.where(sub[Row.CHRONIC, k] > 0.5, total - state.chronic_llr, 0.0)
        state.covariates, state.chronic_llr = known, total
    batch.put(idx, sub)
    _weigh(batch, idx, loglik, evidence)


def _observe_wearables(
    batch: _Batch,
    evs: list[events.Event],
    idx: list[int],
    p: PopulationParameters,
    evidence: dict[int, float],
) -> None:
    """Run-in (baseline learning) or Gaussian likelihood for one wearable kind."""
    live: list[int] = []
    values: list[float] = []
    refs: list[float] = []
    stream = ""
    for ev, i in zip(evs, idx, strict=True):
        parsed = _stream_value(ev.payload)  # type: ignore[arg-type]
        if parsed is None:
            continue
        stream, value = parsed
        s = batch.states[i]
        s.remember_recent(stream, ev.day, value)
        base = s.baselines.setdefault(stream, [0.0, 0.0, 0.0])
        if base[0] < RUN_IN:
            base[1] += (value - base[1]) / (base[0] + 1.0)
            base[0] += 1.0
            if base[0] == RUN_IN:
                _end_run_in(batch, i, stream, base, ev.day)
        else:
            live.append(i)
            values.append(value - base[1])
            refs.append(base[2])
    if live:
        offset, sd = _wearable_mean(stream, batch.take(live), np.array(refs)[:, None], p)
        y = np.array(values)[:, None]
        _weigh(batch, live, likelihood.gaussian_log_prob(0.0, offset - y, sd), evidence)


def _end_run_in(batch: _Batch, i: int, stream: str, base: list[float], day: float) -> None:
    """Fix the references a completed run-in is measured against."""
    s = batch.states[i]
    X = batch.X[:, i]
    weights = np.exp(batch.log_w[i])
    if stream == "sleep":
        base[2] = float((X[Row.Q] - X[Row.Q0]).astype(np.float64) @ weights)
    if s.wearable_reference_day is None:
        # Each particle's own recall-smoothed severity level over the run-in.
        X[Row.Z_REF] = (X[Row.M_S] - X[Row.MU_WELL]) / 5.0
        s.wearable_reference_day = day


def _resample(batch: _Batch, rows: list[int], gens: dict[int, np.random.Generator]) -> None:
    """Systematic resampling + Liu-West shrinkage of the twins ``rows``, together."""
    if not rows:
        return
    n = batch.X.shape[-1]
    u = np.array([gens[t].random() for t in rows])
    normals = np.stack(
        [gens[t].standard_normal((len(LW_ROWS), n), dtype=np.float32) for t in rows], axis=1
    )
    weights = np.exp(batch.log_w[rows])
    indices = resampling.systematic_indices(weights, u)
    sub = batch.take(rows)
    moved = resampling.liu_west(sub[LW_ROWS], weights, indices, normals)
    sub = resampling.gather(sub, indices)
    for k, row in enumerate(LW_ROWS):
        bounds = _LW_BOUNDS.get(row)
        sub[row] = moved[k] if bounds is None else np.clip(moved[k], *bounds)
    if len(rows) == len(batch.states):
        batch.X = sub
    else:
        batch.X[:, rows] = sub
    batch.log_w[rows] = -math.log(n)


def _apply_intervention(s: TwinState, ev: events.Event, particles: F32) -> None:
    payload = ev.payload
    if isinstance(payload, events.Prescription):
        k = assign_slot(s, payload.drug, particles)
        s.prescribed_mg[k] = payload.mg_per_day
    elif isinstance(payload, events.DoseTaken):
        s.taken_today[s.slots.index(payload.drug)] = 1.0 if payload.taken else 0.0
        s.doses_logged += 1
        s.doses_taken += int(payload.taken)
        s.consecutive_missed = 0 if payload.taken else s.consecutive_missed + 1
    elif isinstance(payload, events.TherapySession):
        if payload.kind == "cbti":
            s.cbti_today += 1
        else:
            s.sessions_today += 1
            s.contacts_today += 1
    elif isinstance(payload, events.CareStatus):
        setting = payload.setting if payload.active else "none"
        if setting != s.care_setting:
            s.care_setting = setting
            s.care_since = s.day


def _bookkeep_observation(s: TwinState, ev: events.Event) -> None:
    payload = ev.payload
    s.last_seen[type(payload).__name__] = ev.day
    if isinstance(payload, events.Phq9 | events.Gad7):
        s.contacts_today += 1  # an assessment is a clinical contact (counted once a day)
    if isinstance(payload, events.Phq9):
        s.remember_phq9(ev.day, payload.total)
    elif isinstance(payload, events.SleepDuration) and payload.usable:
        s.sleep_h = payload.hours


def _check_order(s: TwinState, ev: events.Event) -> int:
    if ev.seq <= s.last_seq:
        raise errors.InvalidInputError(
            f"event seq {ev.seq} is not after the last applied {s.last_seq}"
        )
    if ev.day < s.clock:
        raise errors.EventOrderError(ev.day, s.clock)
    return math.floor(ev.day) - s.day


def _refusal(state: TwinState, payload: events.Payload, particles: F32) -> str | None:
    """Why ``payload`` cannot be applied to ``state`` (``None``: it can)."""
    try:
        if isinstance(payload, events.Prescription):
            if payload.mg_per_day == 0.0 and payload.drug not in state.slots:
                return f"stop of {payload.drug}, which is not prescribed"
            _slot_for(state, payload.drug, particles)
        elif isinstance(payload, events.DoseTaken):
            drug(payload.drug)
            if payload.drug not in state.slots:
                return f"dose of {payload.drug} logged without a prescription"
    except errors.InvalidInputError as exc:
        return str(exc)
    return None


def apply_events(
    states: Sequence[TwinState],
    pending: Sequence[Sequence[events.Event]],
    *,
    params: PopulationParameters | None = None,
    chunk: int = 16,
) -> list[list[EventResult]]:
    """Apply each twin's pending events, all twins at once; states are updated in place.

    Args:
        states: Twins, all with the same number of particles.
        pending: Per twin, its events in sequence order.
        params: Population parameters.
        chunk: Twins vectorised together (groups are processed one after another; the result
            per twin does not depend on it).

    Returns:
        Per twin, one :class:`EventResult` per applied event.

    Events the twin cannot apply (a dose without a prescription, a third concurrent drug) are
    skipped and reported in their :attr:`EventResult.rejected`.

    Raises:
        InvalidInputError: Events out of sequence. Rounds before the offending one stand; the
            offending round is checked before anything of it is applied.
    """
    if len(states) != len(pending):
        raise errors.InvalidInputError("one list of events per twin is required")
    if not states:
        return []
    if len({s.n_particles for s in states}) != 1:
        raise errors.InvalidInputError("twins in one batch must have the same particle count")
    p = params or PopulationParameters()
    if len(states) > chunk:
        # Cache-sized groups: beyond a few MB per matrix the vectorised steps turn memory-bound.
        out: list[list[EventResult]] = []
        for start in range(0, len(states), chunk):
            part = slice(start, start + chunk)
            out.extend(apply_events(states[part], pending[part], params=p, chunk=chunk))
        return out
    batch = _Batch(states)
    results: list[list[EventResult]] = [[] for _ in states]
    try:
        for r in range(max(len(evs) for evs in pending)):
            round_events = {i: evs[r] for i, evs in enumerate(pending) if r < len(evs)}
            steps = {i: _check_order(states[i], ev) for i, ev in round_events.items()}
            # Checked before advancing: a rejected event leaves its twin untouched, and neither
            # stops this twin's later events nor the other twins of the batch (it is in the log
            # already; refusing it for ever would stop the twin for ever).
            refused = {
                i: why
                for i, ev in round_events.items()
                if (why := _refusal(states[i], ev.payload, batch.X[:, i])) is not None
            }
            if refused:
                ess_now = resampling.effective_sample_size(batch.log_w)
                for i, why in refused.items():
                    ev = round_events.pop(i)
                    del steps[i]
                    states[i].last_seq = ev.seq
                    if states[i].record_start is None:  # the record starts with it all the same
                        states[i].record_start = ev.day
                    results[i].append(
                        EventResult(ev.seq, False, None, float(ess_now[i]), False, (), why)
                    )
                if not round_events:
                    continue
            gens = {i: event_generator(states[i].key, ev.seq) for i, ev in round_events.items()}
            _advance(batch, list(round_events), steps, gens, p)
            obs = {
                i: ev
                for i, ev in round_events.items()
                if not isinstance(
                    ev.payload,
                    events.Prescription
                    | events.DoseTaken
                    | events.TherapySession
                    | events.CareStatus,
                )
            }
            evidence: dict[int, float] = {}
            _observe(batch, obs, gens, p, evidence)
            ess = resampling.effective_sample_size(batch.log_w)
            n = batch.X.shape[-1]
            low = [i for i in round_events if ess[i] < n / 2]
            _resample(batch, low, gens)
            for i, ev in round_events.items():
                s = states[i]
                if s.record_start is None:
                    s.record_start = ev.day
                if i in obs:
                    _bookkeep_observation(s, ev)
                else:
                    _apply_intervention(s, ev, batch.X[:, i])
                s.clock = ev.day
                s.last_seq = ev.seq
                raised = tuple(alerts.evaluate(s, ev))
                for alert in raised:
                    if alert.status == "fired":
                        s.note_fired(alert.rule, alert.day)
                results[i].append(
                    EventResult(
                        ev.seq, i in evidence, evidence.get(i), float(ess[i]), i in low, raised
                    )
                )
    finally:
        batch.write_back()
    return results


def apply_events_reference(
    state: TwinState, pending: Sequence[events.Event], *, params: PopulationParameters | None = None
) -> list[EventResult]:
    """The plain reference: one twin, one event at a time."""
    return [apply_events([state], [[ev]], params=params)[0][0] for ev in pending]
