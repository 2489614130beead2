"""``TwinRuntime``: the facade the API and batch jobs use to reach twins on Ray.

Every call goes to the patient's host (see :mod:`actors.directory`). When a host dies mid-call,
Ray restarts it; the runtime retries until ``retry_for_s`` has passed and then raises
:class:`twin.errors.HostUnavailableError` (retryable). Retrying an ingest is safe: the event
store's idempotency keys make the second append a no-op that returns the original sequence
numbers, so nothing acknowledged is lost and nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ray import exceptions as ray_errors

from actors.directory import RayTwinDirectory
from twin import errors, ports
from twin.forecast.scenario import Scenario
from twin.forecast.summary import Contrast, Forecast
from twin.service.host import IngestResult, TwinSummary

__all__ = ["TwinRuntime"]

T = TypeVar("T")
_RETRYABLE = (ray_errors.RayActorError, ray_errors.ActorUnavailableError)


class TwinRuntime:
    """Ingest, read, forecast and manage twins wherever they live.

    Args:
        directory: Maps patients to host actors.
        retry_for_s: How long to keep retrying a call whose host died.
    """

    def __init__(self, directory: RayTwinDirectory, *, retry_for_s: float = 30.0) -> None:
        self._directory = directory
        self._retry_for_s = retry_for_s

    async def _call(self, patient_id: str, method: Callable[[Any], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self._retry_for_s
        delay = 0.05
        while True:
            _, handle = self._directory.host_for(patient_id)
            try:
                return await method(handle)
            except _RETRYABLE:
                if time.monotonic() >= deadline:
                    raise errors.HostUnavailableError(
                        f"the twin's host did not recover within {self._retry_for_s:g} s"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def ingest(
        self, patient_id: str, batch: Sequence[ports.NewEvent], *, wait: bool = True
    ) -> IngestResult:
        """Append durably and apply (``wait=False``: apply in the background).

        Safe to retry with the same idempotency keys.
        """
        items = list(batch)
        return await self._call(patient_id, lambda h: h.ingest.remote(patient_id, items, wait))

    async def state_bytes(self, patient_id: str) -> bytes:
        """The twin's serialized state, caught up with the log."""
        return await self._call(patient_id, lambda h: h.state_bytes.remote(patient_id))

    async def summary(self, patient_id: str) -> TwinSummary:
        """Posterior summary of the twin."""
        return await self._call(patient_id, lambda h: h.summary.remote(patient_id))

    async def forecast(
        self, patient_id: str, scenarios: Sequence[Scenario], *, weeks: int = 12
    ) -> list[Forecast]:
        """Forecast under each scenario (common random numbers)."""
        items = list(scenarios)
        return await self._call(patient_id, lambda h: h.forecast.remote(patient_id, items, weeks))

    async def compare(
        self, patient_id: str, scenarios: Sequence[Scenario], *, weeks: int = 12
    ) -> tuple[list[Forecast], list[Contrast]]:
        """Forecasts under each scenario and contrasts against the first (common random numbers)."""
        items = list(scenarios)
        return await self._call(patient_id, lambda h: h.compare.remote(patient_id, items, weeks))

    async def passivate(self, patient_id: str) -> bool:
        """Checkpoint and drop the twin from memory."""
        return await self._call(patient_id, lambda h: h.passivate.remote(patient_id))

    async def erase(self, patient_id: str) -> None:
        """Crypto-shred the patient."""
        await self._call(patient_id, lambda h: h.erase.remote(patient_id))

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
