"""``TwinRuntime``: the twin operations, forwarded to each patient's host on Ray.

The operations themselves (ingest, summary, forecast, ...) are defined once, in
:class:`twin.service.operations.TwinOperations`; this runtime only knows how to deliver one
(see :mod:`actors.directory` for which host a patient lives on). When a host dies mid-call,
Ray restarts it; the runtime retries until ``retry_for_s`` has passed and then raises
:class:`twin.errors.HostUnavailableError` (retryable). Retrying an ingest is safe: the event
store's idempotency keys make the second append a no-op that returns the original sequence
numbers, so nothing acknowledged is lost and nothing is applied twice.

Each forwarded operation is a CLIENT span ``TwinHost/<operation>`` whose W3C ``traceparent``
travels with the call (a plain dict argument, :func:`twin.service.tracing.carrier`): the host
actor continues the trace in its own process (:class:`actors.host_actor.TwinHostActor`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ray import exceptions as ray_errors

from actors.directory import RayTwinDirectory
from actors.host_metrics import host_label
from twin import errors
from twin.service import tracing
from twin.service.operations import Forwarding

__all__ = ["TwinRuntime"]

T = TypeVar("T")
_RETRYABLE = (ray_errors.RayActorError, ray_errors.ActorUnavailableError)


class TwinRuntime(Forwarding):
    """Every twin operation, wherever the twin lives; plus the hosts' own controls.

    Args:
        directory: Maps patients to host actors.
        retry_for_s: How long to keep retrying a call whose host died.
    """

    def __init__(self, directory: RayTwinDirectory, *, retry_for_s: float = 30.0) -> None:
        self._directory = directory
        self._retry_for_s = retry_for_s

    async def _call(
        self, patient_id: str, method: Callable[[Any], Awaitable[T]], *, traced: bool = False
    ) -> T:
        deadline = time.monotonic() + self._retry_for_s
        delay = 0.05
        attempt = 0
        while True:
            name, handle = self._directory.host_for(patient_id)
            attempt += 1
            if traced:  # the current span is the forwarded call's own
                tracing.annotate({"novamind.host": host_label(name), "novamind.attempts": attempt})
            try:
                return await method(handle)
            except _RETRYABLE:
                if time.monotonic() >= deadline:
                    raise errors.HostUnavailableError(
                        f"the twin's host did not recover within {self._retry_for_s:g} s"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def forward(
        self, operation: str, patient_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Deliver one twin operation to the patient's host (retried while it restarts)."""
        with tracing.span(
            f"TwinHost/{operation}",
            kind=tracing.SpanKind.CLIENT,
            attributes={"rpc.system": "ray", "rpc.service": "TwinHost", "rpc.method": operation},
        ):
            context = tracing.carrier()
            return await self._call(
                patient_id,
                lambda h: h.call.remote(operation, patient_id, args, kwargs, context),
                traced=True,
            )

    def dedicate(self, patient_id: str) -> str:
        """Give the patient its own host actor; returns the host's name."""
        return self._directory.dedicate(patient_id)

    async def hosts(self) -> dict[str, dict[str, int]]:
        """Every host with its counters and active twin count."""
        handles = self._directory.hosts()
        stats = await asyncio.gather(*(h.stats.remote() for h in handles.values()))
        return dict(zip(handles, stats, strict=True))

    async def host_pid(self, patient_id: str) -> int:
        """OS process id of the patient's host (operators, fault injection)."""
        return await self._call(patient_id, lambda h: h.pid.remote())
