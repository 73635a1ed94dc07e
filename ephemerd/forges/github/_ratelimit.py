"""GitHub's rate limits: read on every response, and a gate that stops request storms.

GitHub has two limits. The primary one is a quota per hour, reported on every response in
``x-ratelimit-*``; exceeding it gives 403 or 429 with ``x-ratelimit-remaining: 0``, and the
only cure is to wait for ``x-ratelimit-reset``. The secondary one guards against bursts; it
answers 403 or 429 with a message and often ``retry-after``; without one, wait at least a
minute and back off exponentially. A 403 with neither marker is a permission error.

Once a limit is hit, the gate closes until the wait is over: every request made meanwhile
fails at once with ``ForgeRateLimited`` instead of reaching GitHub (which would extend the
penalty). Gate times are on Trio's clock, so tests can run them on a MockClock; reset times
are wall-clock Unix seconds because that is what GitHub sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import trio

from ephemerd._errors import ForgeRateLimited
from ephemerd._retry import Backoff, RetryPolicy
from ephemerd.capabilities import RateLimitHint

__all__ = ["SECONDARY_POLICY", "RateLimitGate"]

SECONDARY_POLICY = RetryPolicy.exponential(first=60.0, cap=960.0, jitter=0.1)
"""Secondary limit without ``retry-after``: at least a minute, doubling (GitHub's advice)."""

_SECONDARY_MARKERS = ("secondary rate limit", "abuse")


def _number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


class RateLimitGate:
    """Tracks one client's quota and refuses to send while GitHub asked us to wait.

    Args:
        wall_clock: Unix time source (injectable so tests can pin it).
    """

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock
        self._hint: RateLimitHint | None = None
        self._closed_until = 0.0  # trio.current_time()
        self._reset_at: float | None = None
        self._secondary = Backoff(SECONDARY_POLICY)

    @property
    def hint(self) -> RateLimitHint | None:
        return self._hint

    def check(self) -> None:
        """Raise instead of sending while the gate is closed.

        Raises:
            ForgeRateLimited: GitHub asked us to wait and the wait is not over.
        """
        wait = self._closed_until - trio.current_time()
        if wait > 0:
            reset_at = self._reset_at
            if reset_at is not None and reset_at <= self._wall_clock():
                reset_at = None  # a past window's reset says nothing about this wait
            raise ForgeRateLimited(
                f"GitHub rate limit: waiting {wait:.0f}s before the next request",
                retry_after=wait,
                reset_at=reset_at,
            )

    def observe(self, headers: Mapping[str, str]) -> None:
        """Record the quota headers of any response (httpx headers are case-insensitive)."""
        remaining = _number(headers, "x-ratelimit-remaining")
        reset = _number(headers, "x-ratelimit-reset")
        if remaining is None or reset is None:
            return
        now = self._wall_clock()
        self._hint = RateLimitHint(remaining=int(remaining), reset_at=reset, observed_at=now)
        if remaining <= 0 and reset > now:
            # the quota is spent: the next request would only earn a 403, so wait first
            wait = reset - now + 1.0
            self._closed_until = max(self._closed_until, trio.current_time() + wait)
            self._reset_at = reset

    def succeeded(self) -> None:
        """A request went through: forget the secondary backoff."""
        self._secondary.reset()

    def limited(
        self, status: int, headers: Mapping[str, str], message: str
    ) -> ForgeRateLimited | None:
        """Classify a 403/429: the rate-limit error to raise (gate now closed), or ``None``.

        ``None`` means the answer is not about rate limits (a 403 is then a permission error).
        """
        if status not in (403, 429):
            return None
        retry_after = _number(headers, "retry-after")
        remaining = _number(headers, "x-ratelimit-remaining")
        reset = _number(headers, "x-ratelimit-reset")
        lowered = message.lower()
        secondary = any(marker in lowered for marker in _SECONDARY_MARKERS)
        reset_at: float | None = None
        if retry_after is not None:
            wait = max(retry_after, 0.0)
            kind = "secondary"
        elif remaining == 0 and reset is not None:
            # one second past the reset, so the first request lands in the new window
            wait = max(reset - self._wall_clock(), 0.0) + 1.0
            reset_at = reset
            kind = "primary"
        elif secondary or status == 429:
            wait = self._secondary.next_delay(trio.current_time()) or SECONDARY_POLICY.schedule[-1]
            kind = "secondary"
        else:
            return None
        now = trio.current_time()
        self._closed_until = max(self._closed_until, now + wait)
        wait = self._closed_until - now  # what the gate really waits, if it already was closed
        self._reset_at = reset_at or self._reset_at
        return ForgeRateLimited(
            f"GitHub {kind} rate limit: retry in {wait:.0f}s",
            retry_after=wait,
            reset_at=reset_at,
        )
