"""Twin-changed notifications (pub/sub) and a summary cache on Redis.

Why redis-py's asyncio client: the maintained official client, with a connection pool and
per-call timeouts. Keys and messages carry no patient id in clear: both use a SHA-256 digest of
the opaque id; cached values arrive already sealed by the host. Every failure raises
:class:`twin.errors.StorageUnavailableError` quickly (``socket_timeout``), and callers treat the
feed as best effort: Redis being down means cache misses and notifications recovered from the
event log, never a failed ingest.

After a failure the feed does not call Redis again for :data:`RETRY_S` seconds (it raises at
once): a Redis that hangs would otherwise cost every host flush and every cached read a whole
socket timeout, and clinical writes would wait on derived data.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from redis import exceptions as redis_errors

from twin import errors

__all__ = ["CHANNEL", "RETRY_S", "RedisChangeFeed", "patient_digest"]

CHANNEL = "novamind:twin-changed"
#: After a failure, seconds before Redis is called again (until then each call fails at once).
RETRY_S = 5.0


def patient_digest(patient_id: str) -> str:
    """Stable pseudonymous token of a patient id for keys and messages."""
    return hashlib.sha256(patient_id.encode()).hexdigest()[:32]


class RedisChangeFeed:
    """A :class:`twin.ports.ChangeFeed` on Redis.

    Args:
        client: A ``redis.asyncio.Redis`` (configure ``socket_timeout`` to bound outages).
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(self, client: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = client
        self._clock = clock
        self._retry_at = 0.0  # clock() from which Redis is called again

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._clock() < self._retry_at:
            raise errors.StorageUnavailableError("Redis unavailable (failed moments ago)")
        try:
            return await getattr(self._redis, method)(*args, **kwargs)
        except (redis_errors.RedisError, OSError) as exc:
            self._retry_at = self._clock() + RETRY_S
            raise errors.StorageUnavailableError(
                f"Redis unavailable ({type(exc).__name__})"
            ) from None

    async def publish(self, patient_id: str, last_seq: int) -> None:
        """Publish ``<digest>:<last_seq>`` on :data:`CHANNEL`."""
        await self._call("publish", CHANNEL, f"{patient_digest(patient_id)}:{last_seq}")

    async def cache_summary(self, patient_id: str, data: bytes, *, ttl_s: int) -> None:
        """Cache an (already sealed) summary for ``ttl_s`` seconds."""
        await self._call("set", f"novamind:summary:{patient_digest(patient_id)}", data, ex=ttl_s)

    async def cached_summary(self, patient_id: str) -> bytes | None:
        """The cached summary, or ``None``."""
        value = await self._call("get", f"novamind:summary:{patient_digest(patient_id)}")
        return None if value is None else bytes(value)

    async def forget(self, patient_id: str) -> None:
        """Drop the cached summary."""
        await self._call("delete", f"novamind:summary:{patient_digest(patient_id)}")
