from __future__ import annotations

import random

from ephemerd._errors import ForgeRateLimited, ForgeUnavailable
from ephemerd._retry import Backoff, RetryPolicy
from ephemerd.capabilities import RateLimitHint
from ephemerd.scheduler._ladder import rate_limit_wait, retry_delay
from ephemerd.testing import MemoryProvider

NOW = 1_000.0


def test_error_wins_over_hint():
    hint = RateLimitHint(remaining=0, reset_at=NOW + 500, observed_at=NOW)
    err = ForgeRateLimited("x", retry_after=7)
    assert rate_limit_wait(err, hint, wall_now=NOW, hint_max_age=300) == 7
    err = ForgeRateLimited("x", reset_at=NOW + 20)
    assert rate_limit_wait(err, None, wall_now=NOW, hint_max_age=300) == 20


def test_hint_must_be_fresh_exhausted_and_future():
    err = ForgeUnavailable("x")
    fresh = RateLimitHint(remaining=0, reset_at=NOW + 60, observed_at=NOW - 10)
    assert rate_limit_wait(err, fresh, wall_now=NOW, hint_max_age=300) == 60
    stale = RateLimitHint(remaining=0, reset_at=NOW + 60, observed_at=NOW - 301)
    assert rate_limit_wait(err, stale, wall_now=NOW, hint_max_age=300) is None
    left = RateLimitHint(remaining=5, reset_at=NOW + 60, observed_at=NOW)
    assert rate_limit_wait(err, left, wall_now=NOW, hint_max_age=300) is None
    past = RateLimitHint(remaining=0, reset_at=NOW - 1, observed_at=NOW)
    assert rate_limit_wait(err, past, wall_now=NOW, hint_max_age=300) is None


def test_retry_delay_keeps_the_budget_when_rate_limited():
    provider = MemoryProvider()
    backoff = Backoff(RetryPolicy(schedule=(30.0,), jitter=0.0, max_attempts=1, max_age=None))
    kwargs = {"now": 0.0, "wall_now": NOW, "margin": 5.0, "jitter": 20.0, "hint_max_age": 300.0}
    err = ForgeRateLimited("x", retry_after=100)
    rng = random.Random(1)
    delay = retry_delay(backoff, err, provider, rng=rng, **kwargs)
    assert delay is not None and 105 <= delay <= 125
    assert retry_delay(backoff, err, provider, rng=rng, **kwargs) is None
