"""Per-caller rate limits (OWASP API4): a moving window per token subject.

Why the ``limits`` library: maintained moving-window and fixed-window limiters over memory,
Redis and other storages with one API; none of it is hand-written here. With Redis every API
replica shares one budget per caller; embedded, the budget is per process.

A Redis outage must not stop clinical ingest: the limiter then falls back to an in-process
window (fails *open* to a local budget, security-reliability.md §2.3) and counts the fallback.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from twin import errors

__all__ = ["RateLimiter"]

_LOG = logging.getLogger("novamind.limits")


class RateLimiter:
    """Allows ``per_minute`` requests per caller in any 60-second window.

    Args:
        per_minute: Budget per caller.
        storage: A ``limits.aio`` storage (Redis for shared budgets); memory when ``None``.
    """

    def __init__(self, per_minute: int, storage: Storage | None = None) -> None:
        self._item = RateLimitItemPerMinute(per_minute)
        self._shared = MovingWindowRateLimiter(storage) if storage is not None else None
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self.fallbacks = 0

    async def _hit(self, limiter: MovingWindowRateLimiter, key: str) -> None:
        if not await limiter.hit(self._item, "novamind", key):
            stats = await limiter.get_window_stats(self._item, "novamind", key)
            raise errors.RateLimitedError(max(1, math.ceil(stats.reset_time - time.time())))

    async def check(self, caller: str) -> None:
        """Count one request of ``caller``.

        Raises:
            RateLimitedError: The caller's budget is spent (with the seconds to wait).
        """
        if self._shared is not None:
            try:
                await self._hit(self._shared, caller)
                return
            except errors.RateLimitedError:
                raise
            except Exception as exc:  # the shared storage is down: keep serving on a local budget
                self.fallbacks += 1
                _LOG.warning(
                    "rate-limit storage unavailable (%s); local budget", type(exc).__name__
                )
        await self._hit(self._local, caller)
