"""A twin rebuilt from its event log alone, and how a held twin differs from it.

A twin is a pure function of its event log: checkpoint + replay of the events after it must give
exactly what replaying the whole log from its first event gives. The chaos check compares the
twins the runtime holds with such rebuilds, and ``novamind dr-drill`` the twins of a restored
backup (checkpoints restored with the log) with theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twin import ports
from twin.service.host import HostPorts, TwinHost
from twin.settings import HostSettings

__all__ = ["differences", "rebuilt_from_log"]

#: Summary fields that are not the twin's own: ``as_of`` is where the API places the twin's
#: day on the patient's enrolment axis (the registry's, not the twin's).
_NOT_THE_TWINS = frozenset({"as_of"})


class _NoCheckpoints:
    """A :class:`twin.ports.CheckpointStore` that holds nothing and keeps nothing."""

    async def put(self, checkpoint: ports.Checkpoint) -> bool:
        return False

    async def latest(self, patient_id: str) -> ports.Checkpoint | None:
        return None

    async def delete_all(self, patient_id: str) -> int:
        return 0


async def rebuilt_from_log(
    stores: HostPorts, settings: HostSettings, patient_id: str
) -> tuple[dict[str, Any], bytes]:
    """The patient's twin replayed from its first event: its summary and its whole state.

    The same event log, keys and priors as ``stores``, but no checkpoint is read or written,
    and no index or change feed is touched.

    Args:
        stores: The host ports whose event log, sealer and priors are used.
        settings: The host's tuning (particles: it must be the one the twin was built with).
        patient_id: The patient.

    Returns:
        The summary as a dict (:class:`twin.schemas.TwinOut` fields) and the serialized state.
    """
    alone = HostPorts(stores.events, _NoCheckpoints(), stores.sealer, priors=stores.priors)
    host = TwinHost(alone, settings=settings)
    return (await host.summary(patient_id)).model_dump(), await host.state_bytes(patient_id)


def differences(
    held: Mapping[str, Any], held_state: bytes, rebuilt: tuple[Mapping[str, Any], bytes]
) -> tuple[str, ...]:
    """The summary fields (and ``"state"``, for the whole state) where a held twin differs.

    Args:
        held: The held twin's summary, as served (``as_of`` is not compared).
        held_state: Its serialized state.
        rebuilt: What :func:`rebuilt_from_log` returned for the same patient.

    Returns:
        The differing field names, in the summary's order; empty when the twin is its rebuild.
    """
    summary, state = rebuilt
    fields = [k for k in held if k not in _NOT_THE_TWINS and held[k] != summary.get(k)]
    if held_state != state:
        fields.append("state")
    return tuple(fields)
