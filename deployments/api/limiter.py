"""Per-caller rate limits (OWASP API4): a moving window per token subject.

Why the ``limits`` library: maintained moving-window and fixed-window limiters over memory,
Redis and other storages with one API; none of it is hand-written here. With Redis every API
replica shares one budget per caller; embedded, the budget is per process.

A Redis outage must not stop clinical ingest: the limiter then falls back to an in-process
window (fails *open* to a local budget, security-reliability.md §2.3) and counts the fallback
(``fallbacks``, and the ``novamind_rate_limit_fallbacks`` metric through ``on_fallback``). After
a failure it keeps to the local budget for :data:`SHARED_RETRY_S` before trying Redis again: a
Redis that hangs rather than refuses would otherwise add its socket timeout (1 s) to every
request, where now it costs one request per replica and interval.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from twin import errors

__all__ = ["SHARED_RETRY_S", "RateLimiter"]

_LOG = logging.getLogger("novamind.limits")

#: After the shared storage failed, seconds on the local budget before it is tried again.
SHARED_RETRY_S = 5.0


class RateLimiter:
    """Allows ``per_minute`` requests per caller in any 60-second window.

    It also keeps a second budget, of failed authentications per source (client address):
    once a source has failed ``failures_per_minute`` times in a window, its further failures
    are refused with 429 (:meth:`count_failure`), so guessing tokens or flooding the audit trail
    with refused attempts costs the source, not the service; a valid token is never refused
    for them.

    Args:
        per_minute: Budget per caller.
        storage: A ``limits.aio`` storage (Redis for shared budgets); memory when ``None``.
        failures_per_minute: Failed authentications a source may make per window.
        on_fallback: Called for each request counted locally because ``storage`` failed (a
            metric).

    Attributes:
        fallbacks: Requests counted locally because ``storage`` failed, since start.
    """

    def __init__(
        self,
        per_minute: int,
        storage: Storage | None = None,
        *,
        failures_per_minute: int = 30,
        on_fallback: Callable[[], None] | None = None,
    ) -> None:
        self._failures = RateLimitItemPerMinute(failures_per_minute)
        self._item = RateLimitItemPerMinute(per_minute)
        self._shared = MovingWindowRateLimiter(storage) if storage is not None else None
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._on_fallback = on_fallback
        # 0 while the shared storage works; after a failure, the time.monotonic() from which
        # it is tried again.
        self._shared_retry_at = 0.0
        self._probing = False
        self.fallbacks = 0

    async def _hit(
        self, limiter: MovingWindowRateLimiter, item: RateLimitItemPerMinute, key: str
    ) -> None:
        if not await limiter.hit(item, "novamind", key):
            stats = await limiter.get_window_stats(item, "novamind", key)
            raise errors.RateLimitedError(max(1, math.ceil(stats.reset_time - time.time())))

    def _try_shared(self) -> bool:
        """Whether this request goes to the shared storage.

        Always while it works. Once it failed, none until :data:`SHARED_RETRY_S` have passed,
        then one request at a time (a probe) until one succeeds: requests arriving while a
        probe waits on a hung server are counted locally instead of waiting too.
        """
        if not self._shared_retry_at:
            return True
        if self._probing or time.monotonic() < self._shared_retry_at:
            return False
        self._probing = True
        return True

    async def _apply(self, item: RateLimitItemPerMinute, key: str) -> None:
        if self._shared is not None:
            probe = bool(self._shared_retry_at)  # a request after a failure probes
            if self._try_shared():
                try:
                    await self._hit(self._shared, item, key)
                    self._shared_retry_at = 0.0
                    return
                except errors.RateLimitedError:
                    self._shared_retry_at = 0.0  # the storage answered
                    raise
                except Exception as exc:  # the shared storage is down: serve on a local budget
                    self._shared_retry_at = time.monotonic() + SHARED_RETRY_S
                    _LOG.warning(
                        "rate-limit storage unavailable (%s); local budget for %.0f s",
                        type(exc).__name__,
                        SHARED_RETRY_S,
                    )
                finally:
                    if probe:
                        self._probing = False
            self.fallbacks += 1
            if self._on_fallback is not None:
                self._on_fallback()
        await self._hit(self._local, item, key)

    async def check(self, caller: str) -> None:
        """Count one request of ``caller``.

        Raises:
            RateLimitedError: The caller's budget is spent (with the seconds to wait).
        """
        await self._apply(self._item, caller)

    async def count_failure(self, source: str) -> None:
        """Count one failed authentication of ``source``.

        Raises:
            RateLimitedError: This failure spent the source's budget.
        """
        await self._apply(self._failures, f"auth-failure:{source}")
