"""Rebuilding a twin from storage: its newest usable checkpoint, then the log after it.

The host activates twins this way, and batch jobs (cohort what-if runs) read twins the same way
without activating them. The only write is the prior-set assignment of a patient that has none
(:meth:`twin.ports.PriorRegistry.for_patient`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from twin import errors, ports
from twin.assimilation import kernel
from twin.assimilation.state import TwinState, new_twin
from twin.domain import events
from twin.model.parameters import MODEL_VERSION
from twin.service import tracing
from twin.service.priors import PriorParameters

__all__ = ["apply_by_prior", "current_states", "from_checkpoint", "load_twin"]


async def load_twin(
    checkpoints: ports.CheckpointStore,
    sealer: ports.Sealer,
    patient_id: str,
    *,
    particles: int,
    priors: PriorParameters,
) -> tuple[TwinState, bool]:
    """The newest usable checkpoint's state, or a new twin; the caller replays the log after it.

    A twin without a usable checkpoint starts from the prior set recorded for the patient (the
    registry's active set for a new patient) and records that version.

    Returns:
        The state, and whether a stored checkpoint had to be rejected.
    """
    state, rejected = await from_checkpoint(checkpoints, sealer, patient_id)
    if state is None:
        version, params = await priors.for_new_twin(patient_id)
        state = new_twin(patient_id, n_particles=particles, params=params, prior_version=version)
    return state, rejected


async def from_checkpoint(
    checkpoints: ports.CheckpointStore, sealer: ports.Sealer, patient_id: str
) -> tuple[TwinState | None, bool]:
    """The newest usable checkpoint's state, or ``None``.

    A damaged or foreign checkpoint is not used and counts as rejected, and so does one the
    store fails to read for a reason that does not pass by retrying (an ``OSError``); one of
    another model version is skipped (expected after an upgrade). Either way the log is the
    truth.

    Returns:
        The state (or ``None``), and whether a stored checkpoint had to be rejected.
    """
    try:
        stored = await checkpoints.latest(patient_id)
    except (errors.CheckpointCorruptError, OSError):
        stored = None
        rejected = True
    else:
        rejected = False
    if stored is not None and stored.model_version == MODEL_VERSION:
        try:
            plain = await sealer.open(
                patient_id, kind="checkpoint", version=stored.seq, sealed=stored.data
            )
            state = TwinState.from_bytes(plain)
            if state.last_seq == stored.seq:
                return state, False
        except (errors.CheckpointCorruptError, errors.StateCorruptError, errors.ModelVersionError):
            pass  # rejected below; the log rebuilds the twin
        rejected = True
    return None, rejected


async def apply_by_prior(
    states: Sequence[TwinState],
    pending: Sequence[Sequence[events.Event]],
    priors: PriorParameters,
    *,
    in_thread: bool = False,
) -> list[list[kernel.EventResult]]:
    """Apply pending events, one kernel call per prior version (each twin keeps its own).

    Args:
        states: Twins, updated in place.
        pending: Per twin, its events in sequence order.
        priors: Resolves each twin's prior version to its parameters.
        in_thread: Run the kernel in a worker thread (keeps an event loop responsive).
    """
    groups: dict[str, list[int]] = {}
    for i, state in enumerate(states):
        groups.setdefault(state.prior_version, []).append(i)
    results: list[list[kernel.EventResult]] = [[] for _ in states]
    for version, members in groups.items():
        params = await priors.of(version)
        part_states = [states[i] for i in members]
        part_pending = [pending[i] for i in members]
        size = {"novamind.twins": len(members), "novamind.events": sum(map(len, part_pending))}
        with tracing.span("twin.kernel", attributes=size):
            if in_thread and any(part_pending):
                done = await asyncio.to_thread(
                    kernel.apply_events, part_states, part_pending, params=params
                )
            else:
                done = kernel.apply_events(part_states, part_pending, params=params)
        for i, result in zip(members, done, strict=True):
            results[i] = result
    return results


async def current_states(
    stores: tuple[ports.EventStore, ports.CheckpointStore, ports.Sealer],
    patient_ids: Sequence[str],
    *,
    particles: int,
    priors: PriorParameters,
) -> list[TwinState]:
    """The twins of ``patient_ids`` caught up with their logs (one kernel call per prior set).

    Raises:
        TwinError: A patient's log or key cannot be read (unknown or erased patient).
    """
    events_store, checkpoints, sealer = stores
    states: list[TwinState] = []
    pending = []
    for pid in patient_ids:
        state, _ = await load_twin(checkpoints, sealer, pid, particles=particles, priors=priors)
        states.append(state)
        pending.append(await events_store.read(pid, after_seq=state.last_seq))
    await apply_by_prior(states, pending, priors)
    return states
