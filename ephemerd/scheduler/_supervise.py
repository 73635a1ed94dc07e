"""Poll supervision: one task per polling provider, restarted with backoff when it crashes.

A poll that raises (a bug, an expired token, a forge outage) is logged and started again
after a growing delay; it never takes the daemon down. Each provider's health is kept
for ``ProviderView``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ephemerd._errors import EphemerdError
from ephemerd._retry import Backoff, RetryPolicy
from ephemerd.capabilities import (
    JobEvent,
    Poll,
    PollConfig,
    Provider,
    ProviderState,
    ProviderView,
    Webhook,
)

__all__ = ["ProviderTracker", "supervise_poll"]

log = logging.getLogger("ephemerd.scheduler")

# A poll that ran this long before failing counts as having recovered: the ladder restarts.
_HEALTHY_RUN = 60.0


class ProviderTracker:
    """One provider's health, as ``ProviderView`` shows it."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.state = ProviderState.STARTING
        self.last_error = ""
        self.last_ok_at = 0.0

    def ok(self, wall_now: float) -> None:
        self.state = ProviderState.OK
        self.last_ok_at = wall_now

    def failed(self, error: str) -> None:
        self.state = ProviderState.BACKING_OFF
        self.last_error = error

    def view(self, *, active_jobs: int) -> ProviderView:
        return ProviderView(
            instance=self.provider.name,
            kind=self.provider.kind,
            state=self.state,
            webhook=isinstance(self.provider, Webhook),
            last_error=self.last_error,
            last_ok_at=self.last_ok_at,
            active_jobs=active_jobs,
        )


async def supervise_poll(
    provider: Poll,
    tracker: ProviderTracker,
    config: PollConfig,
    events: trio.MemorySendChannel[JobEvent],
    *,
    policy: RetryPolicy,
    wall_clock: Callable[[], float],
    on_error: Callable[[str], None] | None = None,
) -> None:
    """Run ``provider.poll`` forever, restarting it after a crash on *policy*'s ladder.

    Cancellation: the poll is cancelled with it; *events* is closed on the way out.
    """
    backoff = Backoff(policy)
    name = tracker.provider.name
    async with events:
        while True:
            began = trio.current_time()
            tracker.ok(wall_clock())
            try:
                await provider.poll(config, events.clone())
                error = "poll returned"
            except Exception as exc:  # any crash: the daemon lives on
                error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                # A known failure is one line; only an unexpected crash gets its traceback.
                trace = None if isinstance(exc, EphemerdError) else exc
                log.warning("%s: poll failed: %s", name, error, exc_info=trace)
            if trio.current_time() - began >= _HEALTHY_RUN:
                backoff.reset()
            delay = backoff.next_delay(trio.current_time()) or policy.schedule[-1]
            tracker.failed(error)
            if on_error is not None:
                on_error(name)
            log.info("%s: restarting poll in %.1fs", name, delay)
            await trio.sleep(delay)
