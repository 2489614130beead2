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

Calls are coalesced: the calls for one host that a process makes in one turn of its event
loop travel as one Ray actor call (``TwinHostActor.call_many``), each with its own outcome. A
Ray actor call costs both processes a fixed amount of CPU (submission, serialization, the
actor's task dispatch), which under load was a large share of an API read; the host runs the
calls of a batch concurrently, as it would have run them one by one, so they also join the
same flush of its twins. A lone call goes alone, after the callbacks already queued on the
loop (no timer, no added wait).
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
#: Longest pause between two tries of a call whose host is down (seconds), for the first
#: :data:`_RETRY_FAST_FOR_S` seconds: a host restarts within about a second, and a longer pause
#: would be time the restarted host sits unused. Then up to :data:`_RETRY_DELAY_SLOW_S`: a host
#: down for longer (its node lost, its start failing) is not hammered by every waiting caller.
_RETRY_DELAY_FAST_S = 0.1
_RETRY_FAST_FOR_S = 3.0
_RETRY_DELAY_SLOW_S = 1.0
#: One forwarded call: (operation, patient id, positional arguments, keyword arguments).
#: One forwarded operation: name, patient, arguments, and its caller's trace context.
Call = tuple[str, str, tuple[Any, ...], dict[str, Any], dict[str, str] | None]
_BatchKey = tuple[asyncio.AbstractEventLoop, str]


class TwinRuntime(Forwarding):
    """Every twin operation, wherever the twin lives; plus the hosts' own controls.

    Args:
        directory: Maps patients to host actors.
        retry_for_s: How long to keep retrying a call whose host died.
    """

    def __init__(self, directory: RayTwinDirectory, *, retry_for_s: float = 30.0) -> None:
        self._directory = directory
        self._retry_for_s = retry_for_s
        # Per event loop and host name: the host's handle and the calls waiting for this turn
        # of that loop (a batch never mixes the futures of two loops).
        self._batches: dict[_BatchKey, tuple[Any, list[tuple[Call, asyncio.Future[Any]]]]] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def _call(
        self,
        patient_id: str,
        method: Callable[[str, Any], Awaitable[T]],
        *,
        traced: bool = False,
    ) -> T:
        started = time.monotonic()
        delay = 0.05
        attempt = 0
        while True:
            attempt += 1
            name: str | None = None
            try:
                # Finding a forgotten host again asks the GCS, which may fail too (retried).
                name, handle = self._directory.host_for(patient_id)
                if traced:  # the current span is the forwarded call's own
                    tracing.annotate(
                        {"novamind.host": host_label(name), "novamind.attempts": attempt}
                    )
                return await method(name, handle)
            except (*_RETRYABLE, ray_errors.RaySystemError, ray_errors.GetTimeoutError) as exc:
                if name is not None and isinstance(exc, ray_errors.ActorDiedError):
                    # Dead for good (ended by an operator, or its start failed): the next try
                    # finds the host again by name, or starts a new one.
                    self._directory.forget(name)
                waited = time.monotonic() - started
                if waited >= self._retry_for_s:
                    raise errors.HostUnavailableError(
                        f"the twin's host did not recover within {self._retry_for_s:g} s"
                    ) from None
                # Not jittered: the callers a host's death stopped together retry in the same
                # turn of the loop, so their tries travel as one actor call per host.
                await asyncio.sleep(delay)
                longest = _RETRY_DELAY_FAST_S if waited < _RETRY_FAST_FOR_S else _RETRY_DELAY_SLOW_S
                delay = min(delay * 2, longest)

    async def forward(
        self, operation: str, patient_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Deliver one twin operation to the patient's host (retried while it restarts)."""
        with tracing.span(
            f"TwinHost/{operation}",
            kind=tracing.SpanKind.CLIENT,
            attributes={"rpc.system": "ray", "rpc.service": "TwinHost", "rpc.method": operation},
        ):
            call: Call = (operation, patient_id, args, kwargs, tracing.carrier())
            return await self._call(
                patient_id, lambda name, h: self._coalesced(name, h, call), traced=True
            )

    def _coalesced(self, name: str, handle: Any, call: Call) -> asyncio.Future[Any]:
        """Queue ``call`` for host ``name``; the batch leaves after this turn of the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        key = (loop, name)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = (handle, [])
            loop.call_soon(self._send, key)
        batch[1].append((call, future))
        return future

    def _send(self, key: _BatchKey) -> None:
        handle, calls = self._batches.pop(key)
        task = asyncio.ensure_future(self._deliver(handle, calls))
        self._sending.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._sending.discard)

    @staticmethod
    async def _deliver(handle: Any, calls: list[tuple[Call, asyncio.Future[Any]]]) -> None:
        """One actor call for the batch; each caller gets its own outcome."""
        try:
            outcomes = await handle.call_many.remote([call for call, _ in calls])
        except asyncio.CancelledError:
            for _, future in calls:
                future.cancel()
            raise
        except Exception as exc:  # the actor call itself failed: every caller sees it (retries)
            for _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), (ok, value) in zip(calls, outcomes, strict=True):
            if future.done():  # the caller went away
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

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
        return await self._call(patient_id, lambda _, h: h.pid.remote())
