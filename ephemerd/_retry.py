"""The one retry helper: a ladder of delays with jitter, used by every retrying loop.

The scheduler's claim retries, the poll supervisors and the forge clients all back off
through ``Backoff``, each with its own ``RetryPolicy`` (so budgets are never shared).
"""

from __future__ import annotations

import random

import msgspec

__all__ = ["Backoff", "RetryPolicy"]

_JITTER = random.Random()  # one per Backoff would reseed from os.urandom for every job


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How to space out retries.

    Attributes:
        schedule: delays in seconds, one per attempt; the last repeats forever.
        jitter: each delay is scaled by a random factor in ``[1 - jitter, 1 + jitter]``.
        max_age: give up when this many seconds passed since the first failure
            (``None``: never).
        max_attempts: give up after this many failures (``None``: never).
    """

    schedule: tuple[float, ...] = (30.0, 60.0, 120.0, 300.0, 600.0)
    jitter: float = 0.2
    max_age: float | None = 5400.0
    max_attempts: int | None = None

    @classmethod
    def exponential(
        cls, *, first: float = 1.0, cap: float = 60.0, jitter: float = 0.2
    ) -> RetryPolicy:
        """Doubling delays from *first* up to *cap*, with no age or attempt limit."""
        steps: list[float] = []
        delay = first
        while delay < cap:
            steps.append(delay)
            delay *= 2
        steps.append(cap)
        return cls(schedule=tuple(steps), jitter=jitter, max_age=None)


class Backoff:
    """Walks a ``RetryPolicy``'s ladder for one thing being retried.

    Times are whatever clock the caller uses (``trio.current_time()`` under Trio, so
    tests can run it on a MockClock).
    """

    def __init__(self, policy: RetryPolicy, *, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.failures = 0
        self.first_failure_at: float | None = None
        self._rng = rng or _JITTER

    def next_delay(self, now: float) -> float | None:
        """Record a failure at *now*; return the delay until the next try, ``None`` to give up."""
        if self.first_failure_at is None:
            self.first_failure_at = now
        self.failures += 1
        policy = self.policy
        if policy.max_attempts is not None and self.failures > policy.max_attempts:
            return None
        if policy.max_age is not None and now - self.first_failure_at > policy.max_age:
            return None
        base = policy.schedule[min(self.failures - 1, len(policy.schedule) - 1)]
        if policy.jitter:
            base *= self._rng.uniform(1 - policy.jitter, 1 + policy.jitter)
        return max(base, 0.0)

    def reset(self) -> None:
        """Forget past failures after a success."""
        self.failures = 0
        self.first_failure_at = None
