"""A twin host: many twins as virtual actors over the ports (Orleans' model, without Ray).

Each twin is addressed by its patient id, is *active* (a :class:`TwinState` in memory) or
*passive* (its newest checkpoint plus the event log), and is activated on first use:

1. load the newest checkpoint, open it with the patient's data key, check the model version
   (a damaged or foreign checkpoint is counted and ignored: the log is the truth);
2. replay the events after it.

Ingest is *append, then apply*: the event store's commit is the acknowledgement; the host then
applies the new events. Work pending for different twins is micro-batched: concurrent callers
join one flush, which runs the batched kernel once for all their twins. Flushes run one at a
time, so every twin has a single writer and applies its events strictly in sequence order.

Checkpoints are written every ``checkpoint_every_events`` events or ``checkpoint_every_s``
seconds, before passivation (idle time, or least recently used beyond
``max_active_twins``), and for every twin behind its checkpoint when the host is about to
stop (:meth:`TwinHost.checkpoint_active`). A checkpoint is derived from the log, so one that
cannot be written (a full disk, an unreachable bucket) fails no ingest and keeps no twin in
memory: it is counted (``checkpoint_failures``) and tried again at the twin's first flush
after :data:`CHECKPOINT_RETRY_S` (and at its passivation), and a twin passivated without it is
rebuilt from its previous checkpoint and the log. Activations are rate-limited
(``max_concurrent_activations``) so a restarted host brings twins back lazily, never as a
stampede.

It implements :class:`twin.service.operations.TwinOperations`. A Ray actor (``actors/``) wraps
this class and forwards those operations to it; everything here runs and is tested without Ray.

Spans (:mod:`twin.service.tracing`, no-ops unless the process traces): one per operation
(``twin.ingest``, ``twin.summary``, ...), and per flush ``twin.flush`` with ``twin.activate``
for each twin brought back and ``twin.kernel`` for the assimilation update. A flush belongs to
the trace of the call that opened it and links every other call it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field

from twin import errors, ports
from twin.assimilation import kernel
from twin.assimilation.alerts import Alert
from twin.assimilation.state import TwinState
from twin.domain import events
from twin.domain.specs import Scenario
from twin.forecast.summary import Contrast, Forecast, compare_many, forecast
from twin.model.dynamics import Row
from twin.model.parameters import PopulationParameters
from twin.schemas import TwinOut as TwinSummary
from twin.service import restore, tracing
from twin.service.priors import PriorParameters
from twin.service.results import IngestResult
from twin.settings import HostSettings

__all__ = [
    "CHECKPOINT_RETRY_S",
    "HostPorts",
    "HostSettings",
    "IngestResult",
    "TwinHost",
    "TwinSummary",
]

_LOG = logging.getLogger("novamind.host")

#: Alerts fired within this many days are flags in the twin index.
ALERT_FLAG_DAYS = 28.0
#: PHQ-9 severity counted as moderately severe or worse (where ``p_severe`` counts from).
SEVERE_PHQ9 = kernel.SEVERE_PHQ9
#: Lifetime of a cached (sealed) twin summary, seconds.
SUMMARY_TTL_S = 3600
#: Background application waits this long so bulk appends coalesce into one kernel call.
BACKGROUND_DELAY_S = 0.05
#: Seconds before a checkpoint that could not be written is tried again by a flush: a full disk
#: or an unreachable bucket is not over in a moment, and each try costs a whole write (or a
#: store's timeout) in a flush that other twins wait for.
CHECKPOINT_RETRY_S = 30.0
#: Callers a flush span links at most (the SDK's own default limit of links per span).
MAX_FLUSH_LINKS = 128


@dataclass(frozen=True, slots=True)
class HostPorts:
    """The stores a host needs, and how to release them."""

    events: ports.EventStore
    checkpoints: ports.CheckpointStore
    sealer: ports.Sealer
    index: ports.TwinIndex | None = None
    feed: ports.ChangeFeed | None = None
    priors: ports.PriorRegistry | None = None
    close: Callable[[], Awaitable[None]] | None = None

    async def aclose(self) -> None:
        """Release connections (idempotent where the adapters are)."""
        if self.close is not None:
            await self.close()


@dataclass
class _Active:
    state: TwinState
    checkpoint_seq: int
    checkpoint_at: float
    used_at: float
    alerts: dict[int, tuple[Alert, ...]] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    #: Monotonic time before which a flush does not try a failed checkpoint again.
    checkpoint_retry_at: float = 0.0


@dataclass
class HostStats:
    """Counters of what the host has done."""

    activations: int = 0
    replayed_events: int = 0
    applied_events: int = 0
    flushes: int = 0
    checkpoints_written: int = 0
    checkpoints_rejected: int = 0
    checkpoint_failures: int = 0
    passivations: int = 0
    derived_update_failures: int = 0
    rejected_events: int = 0


class TwinHost:
    """Hosts many twins; see the module docstring.

    Args:
        stores: Event store, checkpoint store and sealer.
        settings: Tuning.
        params: Model parameters.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        stores: HostPorts,
        *,
        settings: HostSettings | None = None,
        params: PopulationParameters | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ports = stores
        self._settings = settings or HostSettings()
        self._params = params or PopulationParameters()
        # Each twin keeps the prior set it was created with; new twins take the active one.
        self._priors = PriorParameters(stores.priors, self._params)
        self._clock = clock
        self._active: OrderedDict[str, _Active] = OrderedDict()
        self._flush_lock = asyncio.Lock()
        self._activation_slots = asyncio.Semaphore(self._settings.max_concurrent_activations)
        self._dirty: set[str] = set()
        #: The spans of the calls waiting for the next flush (its span links them).
        self._waiting_spans: list[tracing.SpanContext] = []
        self._round: asyncio.Future[dict[str, BaseException]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = HostStats()

    # -- activation and passivation -------------------------------------------------------

    async def _load(self, patient_id: str) -> TwinState:
        """Newest usable checkpoint, or a new twin; the caller replays the log after it."""
        async with self._activation_slots:
            with tracing.span("twin.activate"):
                state, rejected = await restore.load_twin(
                    self._ports.checkpoints,
                    self._ports.sealer,
                    patient_id,
                    particles=self._settings.particles,
                    priors=self._priors,
                )
            self.stats.checkpoints_rejected += rejected
            return state

    async def _activate(self, patient_id: str) -> _Active:
        active = self._active.get(patient_id)
        if active is None:
            state = await self._load(patient_id)
            now = self._clock()
            active = _Active(state, state.last_seq, now, now)
            self._active[patient_id] = active
            self.stats.activations += 1
        self._active.move_to_end(patient_id)
        active.used_at = self._clock()
        return active

    async def _checkpoint(self, patient_id: str, active: _Active) -> None:
        """Write the twin's checkpoint unless it has one of its state; best effort.

        The checkpoint store holds derived data only: its failure (a full disk, a hung bucket,
        a patient erased meanwhile) never becomes the caller's, nor that of the other twins of
        the flush, whose events are already acknowledged and applied. It is counted, and no
        checkpoint of the twin is tried again for :data:`CHECKPOINT_RETRY_S` (not even at
        passivation: a twin dropped without one is rebuilt from its previous checkpoint and the
        log), so a store that hangs costs each twin one timeout, not one per flush.
        """
        state = active.state
        if state.last_seq == active.checkpoint_seq or self._clock() < active.checkpoint_retry_at:
            return
        try:
            with tracing.span("twin.checkpoint"):
                sealed = await self._ports.sealer.seal(
                    patient_id,
                    kind="checkpoint",
                    version=state.last_seq,
                    plaintext=state.to_bytes(),
                )
                await self._ports.checkpoints.put(
                    ports.Checkpoint(patient_id, state.last_seq, state.model_version, sealed)
                )
        except Exception as exc:  # derived data: counted, never raised into an ingest
            self.stats.checkpoint_failures += 1
            active.checkpoint_retry_at = self._clock() + CHECKPOINT_RETRY_S
            _LOG.warning("checkpoint not written (%s); retried later", type(exc).__name__)
            return
        active.checkpoint_seq = state.last_seq
        active.checkpoint_at = self._clock()
        self.stats.checkpoints_written += 1

    @tracing.traced("twin.passivate")
    async def passivate(self, patient_id: str) -> bool:
        """Checkpoint and drop an active twin; False when it was not active."""
        async with self._flush_lock:
            active = self._active.get(patient_id)
            if active is None:
                return False
            await self._checkpoint(patient_id, active)
            del self._active[patient_id]
            self.stats.passivations += 1
            return True

    async def checkpoint_active(self) -> int:
        """Checkpoint every active twin whose state is ahead of its checkpoint; best effort.

        For a host about to stop: twins with the most events since their checkpoint go
        first, since those cost the most replay at their next activation. A twin that is
        not checkpointed (a failing store, or the host stopped first) loses nothing: it is
        rebuilt from its previous checkpoint and the event log.

        Returns:
            Checkpoints written.
        """
        async with self._flush_lock:  # no flush changes a twin while it is serialized
            written = self.stats.checkpoints_written
            behind = sorted(
                self._active.items(),
                key=lambda item: item[1].checkpoint_seq - item[1].state.last_seq,
            )
            for patient_id, active in behind:
                await self._checkpoint(patient_id, active)
            return self.stats.checkpoints_written - written

    async def passivate_idle(self) -> int:
        """Passivate twins idle for longer than ``idle_passivate_s``; returns how many."""
        cutoff = self._clock() - self._settings.idle_passivate_s
        idle = [pid for pid, a in self._active.items() if a.used_at < cutoff]
        return sum([await self.passivate(pid) for pid in idle])

    async def _enforce_budget(self) -> None:
        while len(self._active) > self._settings.max_active_twins:
            patient_id, active = next(iter(self._active.items()))
            await self._checkpoint(patient_id, active)
            del self._active[patient_id]
            self.stats.passivations += 1

    # -- applying events ------------------------------------------------------------------

    async def _prepare(self, patient_id: str) -> tuple[_Active, list[events.Event]]:
        fresh = patient_id not in self._active
        active = await self._activate(patient_id)
        new = await self._ports.events.read(patient_id, after_seq=active.state.last_seq)
        if fresh:
            # Events between the checkpoint and the log's head: the activation's replay.
            self.stats.replayed_events += len(new)
        return active, new

    async def _flush(self, patients: set[str]) -> dict[str, BaseException]:
        """Catch the given twins up with the log: one kernel call for all of them.

        The caller holds the flush lock.

        Returns:
            The error of each twin that could not be caught up (the others proceed).
        """
        failed: dict[str, BaseException] = {}
        ids: list[str] = []
        actives: list[_Active] = []
        pending: list[list[events.Event]] = []
        ordered = sorted(patients)
        # Activations and log reads overlap (bounded by the activation semaphore).
        prepared = await asyncio.gather(
            *(self._prepare(pid) for pid in ordered), return_exceptions=True
        )
        for pid, outcome in zip(ordered, prepared, strict=True):
            if isinstance(outcome, errors.TwinError):
                failed[pid] = outcome
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            ids.append(pid)
            actives.append(outcome[0])
            pending.append(outcome[1])
        # The kernel runs in a worker thread (NumPy releases the GIL in its loops), so appends
        # keep flowing on the event loop meanwhile. Twin states are only touched under the
        # flush lock, which this coroutine holds.
        states = [a.state for a in actives]
        results = await restore.apply_by_prior(states, pending, self._priors, in_thread=True)
        now = self._clock()
        for pid, active, applied in zip(ids, actives, results, strict=True):
            for r in applied:
                if r.rejected is None:
                    self.stats.applied_events += 1
                else:
                    self.stats.rejected_events += 1
                if r.alerts:
                    active.alerts[r.seq] = r.alerts
                if r.rejected is not None:
                    active.rejected[r.seq] = r.rejected
            due = (
                active.state.last_seq - active.checkpoint_seq
                >= self._settings.checkpoint_every_events
                or now - active.checkpoint_at >= self._settings.checkpoint_every_s
            )
            if due:
                await self._checkpoint(pid, active)
            if applied:
                await self._publish(pid, active)
        self.stats.flushes += 1
        await self._enforce_budget()
        return failed

    @staticmethod
    def _summarize(patient_id: str, active: _Active) -> TwinSummary:
        """Posterior summary with the alert flags of the last :data:`ALERT_FLAG_DAYS` days."""
        s = active.state
        # From the state, not from this host's memory of the alerts it raised: a twin
        # activated from a checkpoint reports the flags its earlier events raised.
        flags = s.fired_since(s.clock - ALERT_FLAG_DAYS)
        return TwinSummary(
            patient_id=patient_id,
            last_seq=s.last_seq,
            day=s.day,
            severity_mean=kernel.posterior_mean(s, Row.S),
            severity_sd=kernel.posterior_sd(s, Row.S),
            anxiety_mean=kernel.posterior_mean(s, Row.G),
            p_episode=kernel.posterior_probability(s, s.particles[Row.R] > 0.5),
            p_severe=kernel.posterior_probability(s, s.particles[Row.S] >= SEVERE_PHQ9),
            alert_flags=flags,
            model_version=s.model_version,
        )

    def _index_entry(self, patient_id: str, active: _Active) -> ports.IndexEntry:
        summary = self._summarize(patient_id, active)
        return ports.IndexEntry(
            patient_id=patient_id,
            last_seq=summary.last_seq,
            day=summary.day,
            severity_mean=summary.severity_mean,
            severity_sd=summary.severity_sd,
            p_episode=summary.p_episode,
            p_severe=summary.p_severe,
            alert_flags=tuple(summary.alert_flags),
            updated_at=time.time(),
            record_start=(
                None if (start := active.state.record_start) is None else math.floor(start)
            ),
        )

    async def _publish(self, patient_id: str, active: _Active) -> None:
        """Update the index, the summary cache and the change feed.

        Best effort: all three are derived from the log, so a failure is counted and repaired
        by the twin's next update, never raised into an ingest.
        """
        entry = self._index_entry(patient_id, active)
        try:
            if self._ports.index is not None:
                await self._ports.index.upsert(entry)
            if self._ports.feed is not None:
                plain = json.dumps(asdict(entry), sort_keys=True).encode()
                sealed = await self._ports.sealer.seal(
                    patient_id, kind="summary", version=0, plaintext=plain
                )
                await self._ports.feed.cache_summary(patient_id, sealed, ttl_s=SUMMARY_TTL_S)
                await self._ports.feed.publish(patient_id, active.state.last_seq)
        except errors.TwinError:
            self.stats.derived_update_failures += 1

    def _schedule(
        self, patient_id: str, *, delay_s: float = 0.0
    ) -> asyncio.Future[dict[str, BaseException]]:
        """Put a twin into the next flush (starting one, after ``delay_s``, if none is pending)."""
        self._dirty.add(patient_id)
        caller = tracing.current_span_context()
        if caller.is_valid and len(self._waiting_spans) < MAX_FLUSH_LINKS:
            self._waiting_spans.append(caller)
        round_ = self._round
        if round_ is None:
            loop = asyncio.get_running_loop()
            round_ = self._round = loop.create_future()
            # Nobody may await a background round: reading its outcome keeps asyncio quiet.
            round_.add_done_callback(lambda f: f.cancelled() or f.exception())
            task = loop.create_task(self._run_round(round_, delay_s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return round_

    async def _catch_up(self, patient_id: str) -> None:
        """Join (or start) the next flush, wait for it, and raise this twin's error if any."""
        failed = await asyncio.shield(self._schedule(patient_id))
        if patient_id in failed:
            raise failed[patient_id]

    async def _run_round(
        self, round_: asyncio.Future[dict[str, BaseException]], delay_s: float
    ) -> None:
        # Group commit: the round closes only once the previous flush has finished (and, for
        # background work, after a short delay), so every caller that arrives meanwhile joins
        # this one batch.
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        async with self._flush_lock:
            await asyncio.sleep(0)
            batch, self._dirty, self._round = self._dirty, set(), None
            # The round's task carries the context of the call that opened it (its parent);
            # every other call it serves is linked.
            opener = tracing.current_span_context()
            served = [c for c in self._waiting_spans if c != opener]
            self._waiting_spans = []
            try:
                with tracing.span(
                    "twin.flush", attributes={"novamind.twins": len(batch)}, links=served
                ):
                    outcome = await self._flush(batch)
                round_.set_result(outcome)
            except BaseException as exc:  # a whole-round failure reaches every waiting caller
                round_.set_exception(exc)

    # -- the host's API -------------------------------------------------------------------

    @tracing.traced("twin.ingest")
    async def ingest(
        self, patient_id: str, batch: Sequence[ports.NewEvent], *, wait: bool = True
    ) -> IngestResult:
        """Append durably (the acknowledgement), then apply; returns sequence numbers and alerts.

        With ``wait=False`` the call returns right after the durable append and the twin
        catches up in the background (bulk ingest); alerts then arrive through the change feed
        and the index rather than in the result. A retry with the same idempotency keys
        returns the original sequence numbers and the alerts those events raised (while the
        twin stays active).
        """
        tracing.annotate({"novamind.events": len(batch), "novamind.wait": wait})
        appended = await self._ports.events.append(patient_id, batch)
        if not wait:
            self._schedule(patient_id, delay_s=BACKGROUND_DELAY_S)
            return IngestResult(tuple(appended), (), max((r.seq for r in appended), default=0))
        await self._catch_up(patient_id)
        active = self._active.get(patient_id)
        alerts: list[Alert] = []
        rejected: dict[int, str] = {}
        if active is not None:
            for r in appended:
                alerts.extend(active.alerts.get(r.seq, ()))
                if r.seq in active.rejected:
                    rejected[r.seq] = active.rejected[r.seq]
            oldest = active.state.last_seq - 1000
            for kept in (active.alerts, active.rejected):
                for seq in [s for s in kept if s < oldest]:
                    del kept[seq]  # bounded memory
        last = active.state.last_seq if active is not None else max(r.seq for r in appended)
        return IngestResult(tuple(appended), tuple(alerts), last, rejected)

    @tracing.traced("twin.state")
    async def state(self, patient_id: str) -> TwinState:
        """The twin's state, caught up with the log (a copy: callers cannot change the twin)."""
        await self._catch_up(patient_id)
        return TwinState.from_bytes(self._active[patient_id].state.to_bytes())

    @tracing.traced("twin.state")
    async def state_bytes(self, patient_id: str) -> bytes:
        """The caught-up twin's state, serialized (:meth:`TwinState.to_bytes`)."""
        await self._catch_up(patient_id)
        return self._active[patient_id].state.to_bytes()

    @tracing.traced("twin.summary")
    async def summary(self, patient_id: str) -> TwinSummary:
        """Posterior summary of the caught-up twin."""
        await self._catch_up(patient_id)
        return self._summarize(patient_id, self._active[patient_id])

    @tracing.traced("twin.forecast")
    async def forecast(
        self, patient_id: str, scenarios: Sequence[Scenario], *, weeks: int = 12
    ) -> list[Forecast]:
        """Forecast the caught-up twin under each scenario (common random numbers)."""
        tracing.annotate({"novamind.scenarios": len(scenarios), "novamind.weeks": weeks})
        await self._catch_up(patient_id)
        state = self._active[patient_id].state
        params = await self._priors.of(state.prior_version)
        return [forecast(state, sc, weeks=weeks, params=params) for sc in scenarios]

    @tracing.traced("twin.compare")
    async def compare(
        self, patient_id: str, scenarios: Sequence[Scenario], *, weeks: int = 12
    ) -> tuple[list[Forecast], list[Contrast]]:
        """Forecast scenarios on one posterior (common random numbers); contrast with the first."""
        tracing.annotate({"novamind.scenarios": len(scenarios), "novamind.weeks": weeks})
        await self._catch_up(patient_id)
        state = self._active[patient_id].state
        params = await self._priors.of(state.prior_version)
        return compare_many(state, list(scenarios), weeks=weeks, params=params)

    @tracing.traced("twin.erase")
    async def erase(self, patient_id: str) -> None:
        """Crypto-shred the patient: drop the twin, destroy the data key, delete checkpoints.

        The twin's index entry (its severity, risk and alert flags, kept in plain text for
        search) and its cached summary go too.
        """
        async with self._flush_lock:
            self._active.pop(patient_id, None)
            await self._ports.checkpoints.delete_all(patient_id)
            if self._ports.index is not None:
                await self._ports.index.delete(patient_id)
            if self._ports.feed is not None:
                # Best effort: the summary is sealed and expires within the hour.
                with contextlib.suppress(errors.TwinError):
                    await self._ports.feed.forget(patient_id)
            await self._ports.sealer.shred(patient_id)

    def active_count(self) -> int:
        """Twins currently in memory."""
        return len(self._active)
