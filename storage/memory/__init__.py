"""In-process adapters for the embedded default."""

from __future__ import annotations

import asyncio

__all__ = ["InProcessChangeFeed"]


class InProcessChangeFeed:
    """An in-process :class:`~twin.ports.ChangeFeed`: notifications and cached summaries.

    The embedded default: one process, so subscribers are queues and the summary cache a dict
    (``published`` and ``cache`` are kept for inspection).
    """

    def __init__(self) -> None:
        self.published: list[tuple[str, int]] = []
        self.cache: dict[str, bytes] = {}
        self._subscribers: list[asyncio.Queue[tuple[str, int]]] = []

    def subscribe(self) -> asyncio.Queue[tuple[str, int]]:
        """A queue receiving every later (patient_id, last_seq) notification."""
        queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._subscribers.append(queue)
        return queue

    async def publish(self, patient_id: str, last_seq: int) -> None:
        """Tell every subscriber the patient's log now ends at ``last_seq``."""
        self.published.append((patient_id, last_seq))
        for queue in self._subscribers:
            queue.put_nowait((patient_id, last_seq))

    async def cache_summary(self, patient_id: str, data: bytes, *, ttl_s: int) -> None:
        """Keep the patient's summary (one process: kept until replaced or forgotten)."""
        self.cache[patient_id] = data

    async def cached_summary(self, patient_id: str) -> bytes | None:
        """The patient's cached summary, or ``None``."""
        return self.cache.get(patient_id)

    async def forget(self, patient_id: str) -> None:
        """Drop the patient's cached summary (erasure)."""
        self.cache.pop(patient_id, None)
