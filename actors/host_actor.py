"""``TwinHostActor``: a plain class that :mod:`actors.directory` runs as an async Ray actor.

It wraps :class:`twin.service.host.TwinHost` and receives the twin operations
(:class:`twin.service.operations.TwinOperations`) generically, as ``call(operation, patient id,
arguments)``, or several at once as ``call_many`` (how :mod:`actors.runtime` sends them): the
operations are defined once, in ``twin.service.operations``. Its constructor
arguments pickle: the settings (without secrets, :meth:`twin.settings.TwinSettings.for_workers`)
and an importable coroutine function that opens the stores inside the actor process (so this
layer never imports ``storage`` or ``deployments``). Ray saves no actor state: a restarted actor
runs ``__init__`` again and its twins come back lazily from checkpoints and the log.

A call may carry its caller's W3C ``traceparent`` (``trace_context``): the operation then runs
in a SERVER span ``TwinHost/<operation>`` that continues the caller's trace in this process.
Tracing itself starts in this process when the stores are opened (the ports factory), so the
first call's span begins once they are open.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import ray

from actors.host_metrics import HostMetrics, host_label
from twin import errors
from twin.model import counter_random, day_kernel
from twin.service import tracing
from twin.service.host import HostPorts, TwinHost
from twin.service.operations import invoke
from twin.settings import HostSettings, TwinSettings

__all__ = ["PortsFactory", "TwinHostActor"]

#: Opens a host's stores from settings, inside the actor process.
PortsFactory = Callable[[TwinSettings], Awaitable[HostPorts]]


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it crosses a process boundary intact, else a plain stand-in with its text.

    The errors of ``twin.errors`` all pickle; anything else (a library's exception) is checked,
    so one unpicklable error cannot fail the other calls of its batch.
    """
    if isinstance(exc, errors.TwinError):
        return exc
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


#: Longest a new host waits for its first call to be answered before it loads the forecast's
#: kernels anyway (seconds).
FORECAST_KERNELS_AFTER_S = 5.0
#: The operations that step the forecast's kernels.
_FORECASTING = frozenset({"forecast", "compare"})


def _load_forecast_kernels(start: threading.Event, loaded: threading.Event) -> None:
    """The forecast's kernels, from numba's cache (or compiled): see ``TwinHostActor``.

    Loaded once ``start`` is set (the host has answered its first call, or a forecast is
    asked for), or after :data:`FORECAST_KERNELS_AFTER_S`: the load holds the interpreter for
    most of a second, which would otherwise lengthen the first writes a restarted host owes
    its callers. ``loaded`` is set when it is over, failed or not (a forecast then compiles
    what it needs itself).
    """
    try:
        start.wait(FORECAST_KERNELS_AFTER_S)
        day_kernel.load()
        counter_random.load()
    finally:
        loaded.set()


class TwinHostActor:
    """One host process with many twins."""

    def __init__(
        self,
        settings_values: dict[str, Any],
        open_ports: PortsFactory,
        host_settings: HostSettings,
    ) -> None:
        # Values without secrets (TwinSettings.for_workers): Ray keeps constructor arguments
        # in its GCS; what was withheld comes from this process's environment or secret files.
        self._settings = TwinSettings(**settings_values)
        self._open_ports = open_ports
        self._host_settings = host_settings
        self._host: TwinHost | None = None
        self._opening = asyncio.Lock()
        self._metrics: HostMetrics | None = None
        self._label: str | None = None
        # Compiled at actor start, not in a clinician's first forecast: the day step's two
        # variants take ~3-4 s each to compile cold, ~1 s for all to load from numba's cache.
        # Only what an ingest steps holds up the start (a restarted host's first write needs
        # it; ~0.3 s from the cache); the forecast's kernels load in a thread once the first
        # call is answered, off the path of a host's restart. A forecast asked for before
        # they are loaded starts their load and waits for it off the event loop.
        day_kernel.load(assimilation_only=True)
        self._served = threading.Event()
        self._forecast_kernels = threading.Event()
        self._forecast_waiter: asyncio.Future[bool] | None = None
        self.kernels_loading = threading.Thread(
            target=_load_forecast_kernels,
            args=(self._served, self._forecast_kernels),
            name="kernels",
            daemon=True,
        )
        self.kernels_loading.start()

    async def _forecast_kernels_loaded(self) -> None:
        """Start the forecast's kernels loading, if not yet, and wait until they are.

        Waited for off the event loop (loaded on it, the kernels would stop every other twin of
        the host, numba's compiler lock, for as long), by one thread however many forecasts
        wait: the loop's default pool also runs the stores' blocking calls.
        """
        self._served.set()
        if self._forecast_waiter is None:
            self._forecast_waiter = asyncio.ensure_future(
                asyncio.to_thread(self._forecast_kernels.wait)
            )
        await asyncio.shield(self._forecast_waiter)

    async def _ready(self) -> TwinHost:
        if self._host is None:
            async with self._opening:
                if self._host is None:
                    stores = await self._open_ports(self._settings)
                    self._host = TwinHost(stores, settings=self._host_settings)
                    if ray.is_initialized():  # metrics need a connected Ray worker
                        self._metrics = HostMetrics(self._name())
        return self._host

    def _name(self) -> str:
        """This host's name as metrics and spans show it (never a patient's digest)."""
        if self._label is None:
            name = ray.get_runtime_context().get_actor_name() if ray.is_initialized() else None
            self._label = host_label(name or "host")
        return self._label

    async def call(
        self,
        operation: str,
        patient_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        trace_context: dict[str, str] | None = None,
    ) -> Any:
        """Run one twin operation on this host (see :mod:`twin.service.operations`).

        Args:
            operation: One of :data:`twin.service.operations.OPERATIONS`.
            patient_id: The twin's patient.
            args: The operation's positional arguments after the patient id.
            kwargs: Its keyword arguments.
            trace_context: The caller's ``{"traceparent": ...}`` (absent: a trace of its own).
        """
        try:
            return await self._invoke(operation, patient_id, args, kwargs, trace_context)
        finally:
            self._served.set()

    async def _invoke(
        self,
        operation: str,
        patient_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        trace_context: dict[str, str] | None,
    ) -> Any:
        host = await self._ready()
        if operation in _FORECASTING and not self._forecast_kernels.is_set():
            await self._forecast_kernels_loaded()
        with tracing.span(
            f"TwinHost/{operation}",
            kind=tracing.SpanKind.SERVER,
            parent=tracing.context_from(trace_context),
            attributes={
                "rpc.system": "ray",
                "rpc.service": "TwinHost",
                "rpc.method": operation,
                "novamind.host": self._name(),
            },
        ):
            started = time.perf_counter()
            result = await invoke(host, operation, patient_id, args, kwargs)
            if self._metrics is not None and operation == "ingest":
                elapsed = time.perf_counter() - started
                self._metrics.observe(host.stats, host.active_count(), elapsed)
            return result

    async def call_many(
        self,
        calls: list[tuple[str, str, tuple[Any, ...], dict[str, Any], dict[str, str] | None]],
    ) -> list[tuple[bool, Any]]:
        """Run several twin operations at once (``actors.runtime`` coalesces them).

        Each call is :meth:`call`'s arguments, its caller's trace context last: one batch may
        carry the calls of several requests, each continuing its own trace.

        Returns:
            Per call, in order: ``(True, result)`` or ``(False, the error it raised)``; one
            call's error is its own (errors pickle, ``twin.errors``).
        """
        try:
            outcomes = await asyncio.gather(
                *(self._invoke(*c) for c in calls), return_exceptions=True
            )
        finally:
            self._served.set()
        return [
            (False, _portable(o)) if isinstance(o, BaseException) else (True, o) for o in outcomes
        ]

    async def passivate_idle(self) -> int:
        """Passivate idle twins."""
        return await (await self._ready()).passivate_idle()

    async def checkpoint_active(self) -> int:
        """Checkpoint the twins ahead of their checkpoints (before a stop); returns how many."""
        if self._host is None:  # never used: no twin to checkpoint, no store worth opening
            return 0
        return await self._host.checkpoint_active()

    async def stats(self) -> dict[str, int]:
        """Counters and the number of active twins."""
        host = await self._ready()
        return {**asdict(host.stats), "active_twins": host.active_count()}

    def pid(self) -> int:
        """The actor's OS process id (for operators and fault-injection tests)."""
        return os.getpid()
