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

Every count returns what is left of the budget (:class:`Quota`, from the window's own
statistics), which the API sends as the ``RateLimit`` and ``RateLimit-Policy`` headers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from twin import errors

__all__ = ["SHARED_RETRY_S", "WINDOW_S", "Policy", "Quota", "RateLimiter"]

_LOG = logging.getLogger("novamind.limits")

#: After the shared storage failed, seconds on the local budget before it is tried again.
SHARED_RETRY_S = 5.0
#: Seconds of every budget's moving window.
WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class Policy:
    """A budget: at most ``quota`` counted in any ``window_s`` seconds; ``name`` tells which."""

    name: str
    quota: int
    window_s: int = WINDOW_S


@dataclass(frozen=True, slots=True)
class Quota:
    """What is left of a budget once a request was counted.

    Attributes:
        policy: The budget.
        remaining: Requests it still allows now (0 once spent).
        reset_s: Seconds until the oldest request in the window leaves it, giving one back
            (the ``Retry-After`` of a refusal).
    """

    policy: Policy
    remaining: int
    reset_s: int


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
        requests: The budget of each caller.
        failures: The budget of failed authentications of each source.
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
        self.requests = Policy("requests", per_minute)
        self.failures = Policy("auth-failures", failures_per_minute)
        self._shared = MovingWindowRateLimiter(storage) if storage is not None else None
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._on_fallback = on_fallback
        # 0 while the shared storage works; after a failure, the time.monotonic() from which
        # it is tried again.
        self._shared_retry_at = 0.0
        self._probing = False
        self.fallbacks = 0

    async def _hit(
        self,
        limiter: MovingWindowRateLimiter,
        item: RateLimitItemPerMinute,
        key: str,
        policy: Policy,
    ) -> Quota:
        allowed = await limiter.hit(item, "novamind", key)
        stats = await limiter.get_window_stats(item, "novamind", key)
        reset_s = min(max(0, math.ceil(stats.reset_time - time.time())), policy.window_s)
        if not allowed:
            raise errors.RateLimitedError(max(1, reset_s))
        return Quota(policy, max(0, stats.remaining), reset_s)

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

    async def _apply(self, item: RateLimitItemPerMinute, key: str, policy: Policy) -> Quota:
        if self._shared is not None:
            probe = bool(self._shared_retry_at)  # a request after a failure probes
            if self._try_shared():
                try:
                    quota = await self._hit(self._shared, item, key, policy)
                    self._shared_retry_at = 0.0
                    return quota
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
        return await self._hit(self._local, item, key, policy)

    async def check(self, caller: str) -> Quota:
        """Count one request of ``caller``; returns what is left of its budget.

        Raises:
            RateLimitedError: The caller's budget is spent (with the seconds to wait).
        """
        return await self._apply(self._item, caller, self.requests)

    async def count_failure(self, source: str) -> Quota:
        """Count one failed authentication of ``source``; returns what is left of its budget.

        Raises:
            RateLimitedError: This failure spent the source's budget.
        """
        return await self._apply(self._failures, f"auth-failure:{source}", self.failures)
