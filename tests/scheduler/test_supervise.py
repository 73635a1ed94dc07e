"""Poll supervision: a crashing poll is restarted with backoff and never stops the daemon."""

from __future__ import annotations

import pytest
import trio

from ephemerd._errors import ForgeUnavailable
from ephemerd._retry import RetryPolicy
from ephemerd.capabilities import JobEvent, JobState, PollConfig, ProviderState
from ephemerd.testing import MemoryProvider

from .conftest import Env, settle, wait_state


class CrashingProvider(MemoryProvider):
    """Fails its first *crashes* polls, then polls normally."""

    def __init__(self, crashes: int) -> None:
        super().__init__("flaky")
        self.crashes = crashes
        self.starts: list[float] = []

    async def poll(self, config: PollConfig, events: trio.MemorySendChannel[JobEvent]) -> None:
        self.starts.append(trio.current_time())
        if len(self.starts) <= self.crashes:
            await events.aclose()
            raise ForgeUnavailable(f"HTTP 502 (crash {len(self.starts)})")
        await super().poll(config, events)


async def test_crashing_poll_restarts_with_backoff(env: Env, autojump_clock):
    provider = CrashingProvider(crashes=3)
    healthy = MemoryProvider("healthy")
    policy = RetryPolicy(schedule=(1.0, 2.0, 4.0), jitter=0.0, max_age=None)
    scheduler = env.scheduler([provider, healthy], poll_restart=policy)
    async with env.running(scheduler):
        await trio.sleep(0.5)
        view = {v.instance: v for v in scheduler.providers()}
        assert view["flaky"].state is ProviderState.BACKING_OFF
        assert view["flaky"].last_error == "HTTP 502 (crash 1)"
        assert view["healthy"].state is ProviderState.OK
        event = provider.queue_job("1")
        await wait_state(scheduler, event.key, JobState.SUCCEEDED)
        assert provider.starts == pytest.approx([0.0, 1.0, 3.0, 7.0])
        assert {v.instance: v.state for v in scheduler.providers()}["flaky"] is ProviderState.OK
        # the healthy provider kept working all along
        other = healthy.queue_job("2")
        await wait_state(scheduler, other.key, JobState.SUCCEEDED)


async def test_poll_bug_does_not_take_the_daemon_down(env: Env, autojump_clock):
    class Buggy(MemoryProvider):
        async def poll(self, config, events):  # type: ignore[override]
            async with events:
                raise ZeroDivisionError("oops")

    provider = Buggy("buggy")
    scheduler = env.scheduler([provider])
    async with env.running(scheduler):
        await trio.sleep(100)
        await settle()
        view = scheduler.providers()[0]
        assert view.state is ProviderState.BACKING_OFF and view.last_error == "oops"
        scheduler.submit_nowait(provider.queue_job("1"))  # webhook deliveries still work
        await scheduler.wait_job_finished(provider.event("1").key)
