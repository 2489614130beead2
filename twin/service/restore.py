"""Rebuilding a twin from storage: its newest usable checkpoint, then the log after it.

The host activates twins this way, and batch jobs (cohort what-if runs) read twins the same way
without activating them: nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from twin import errors, ports
from twin.assimilation import kernel
from twin.assimilation.state import TwinState, new_twin
from twin.model.parameters import MODEL_VERSION, PopulationParameters

__all__ = ["current_states", "from_checkpoint"]


async def from_checkpoint(
    checkpoints: ports.CheckpointStore,
    sealer: ports.Sealer,
    patient_id: str,
    *,
    particles: int,
    params: PopulationParameters,
) -> tuple[TwinState, bool]:
    """The newest usable checkpoint's state, or a new twin; the caller replays the log after it.

    A damaged or foreign checkpoint is not used and counts as rejected; one of another model
    version is skipped (expected after an upgrade). Either way the log is the truth.

    Returns:
        The state, and whether a stored checkpoint had to be rejected.
    """
    try:
        stored = await checkpoints.latest(patient_id)
    except errors.CheckpointCorruptError:
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
    return new_twin(patient_id, n_particles=particles, params=params), rejected


async def current_states(
    stores: tuple[ports.EventStore, ports.CheckpointStore, ports.Sealer],
    patient_ids: Sequence[str],
    *,
    particles: int,
    params: PopulationParameters,
) -> list[TwinState]:
    """The twins of ``patient_ids`` caught up with their logs (one kernel call for all).

    Raises:
        TwinError: A patient's log or key cannot be read (unknown or erased patient).
    """
    events, checkpoints, sealer = stores
    states: list[TwinState] = []
    pending = []
    for pid in patient_ids:
        state, _ = await from_checkpoint(
            checkpoints, sealer, pid, particles=particles, params=params
        )
        states.append(state)
        pending.append(await events.read(pid, after_seq=state.last_seq))
    kernel.apply_events(states, pending, params=params)
    return states
