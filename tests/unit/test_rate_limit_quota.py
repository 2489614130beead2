"""What the limiter reports of a budget: the numbers behind the RateLimit headers."""

from __future__ import annotations

import pytest

from deployments.api.headers import rate_limit_headers
from deployments.api.limiter import Policy, Quota, RateLimiter
from twin import errors


async def test_each_count_reports_what_is_left_of_the_callers_window():
    limiter = RateLimiter(3, failures_per_minute=2)
    quotas = [await limiter.check("clinician:dr-a") for _ in range(3)]
    assert [q.remaining for q in quotas] == [2, 1, 0]
    assert all(q.policy == Policy("requests", 3, 60) and 0 < q.reset_s <= 60 for q in quotas)
    with pytest.raises(errors.RateLimitedError) as refused:
        await limiter.check("clinician:dr-a")
    assert 1 <= refused.value.retry_after_s <= 60
    other = await limiter.check("clinician:dr-b")  # each caller has a window of its own
    assert other.remaining == 2
    failed = await limiter.count_failure("10.0.0.9")
    assert failed.policy == Policy("auth-failures", 2, 60) and failed.remaining == 1


def test_the_headers_are_the_drafts_structured_fields():
    quota = Quota(Policy("requests", 600, 60), 599, 42)
    assert rate_limit_headers(quota) == {
        "RateLimit-Policy": '"requests";q=600;w=60',
        "RateLimit": '"requests";r=599;t=42',
    }
