"""The delay before retrying a failed claim or start: the policy's ladder, unless the
forge said when its rate limit resets, in which case the retry waits for the reset.
"""

from __future__ import annotations

import random

from ephemerd._errors import EphemerdError, ForgeRateLimited
from ephemerd._retry import Backoff
from ephemerd.capabilities import Provider, RateLimitHint, RateLimitReporter

__all__ = ["rate_limit_wait", "retry_delay"]


def rate_limit_wait(
    error: EphemerdError | None,
    hint: RateLimitHint | None,
    *,
    wall_now: float,
    hint_max_age: float,
) -> float | None:
    """Seconds until the forge's quota resets, or ``None`` if nothing says so.

    The error's own ``retry_after``/``reset_at`` wins; otherwise a fresh hint counts
    (remaining 0, reset in the future, observed less than *hint_max_age* ago).
    """
    if isinstance(error, ForgeRateLimited):
        if error.retry_after is not None:
            return max(error.retry_after, 0.0)
        if error.reset_at is not None:
            return max(error.reset_at - wall_now, 0.0)
    if (
        hint is not None
        and hint.remaining <= 0
        and hint.reset_at > wall_now
        and wall_now - hint.observed_at < hint_max_age
    ):
        return hint.reset_at - wall_now
    return None


def retry_delay(
    backoff: Backoff,
    error: EphemerdError,
    provider: Provider,
    *,
    now: float,
    wall_now: float,
    margin: float,
    jitter: float,
    hint_max_age: float,
    rng: random.Random,
) -> float | None:
    """Record a failure on *backoff*; return the delay before the next try, ``None`` to give up.

    The budget (attempts, max age) is always the backoff's; only the delay changes when
    the forge is rate limited: the reset, plus *margin*, plus up to *jitter* seconds.
    """
    delay = backoff.next_delay(now)
    if delay is None:
        return None
    hint = provider.rate_limit_hint() if isinstance(provider, RateLimitReporter) else None
    reset = rate_limit_wait(error, hint, wall_now=wall_now, hint_max_age=hint_max_age)
    if reset is None:
        return delay
    return reset + margin + rng.uniform(0.0, jitter)
