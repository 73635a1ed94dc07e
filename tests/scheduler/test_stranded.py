"""A job whose own runner ran another job is still queued on the forge: it keeps a spare.

Webhook mode, where nothing re-reports a queued job until the next reconcile poll: the
spare runner already registered is what can still run it, so it must not be retired.
"""

from __future__ import annotations

import trio
import trio.testing

from ephemerd.capabilities import JobEvent, JobState, PollConfig
from ephemerd.testing import MemoryProvider

from .conftest import Env, settle, submit_all, wait_state


class WebhookOnlyProvider(MemoryProvider):
    """A forge reporting jobs only through deliveries (the test's ``submit_nowait``)."""

    async def poll(self, config: PollConfig, events: trio.MemorySendChannel[JobEvent]) -> None:
        async with events:
            await trio.sleep_forever()


async def test_a_stranded_job_keeps_the_spare_that_can_still_run_it(
    env: Env, autojump_clock: trio.testing.MockClock
) -> None:
    provider = WebhookOnlyProvider("gh", webhook_secret="s3cret")
    scheduler = env.scheduler([provider])
    async with env.running(scheduler):
        a = provider.queue_job("A", script=("sleep", "infinity"))
        b = provider.queue_job("B", script=("sleep", "infinity"))
        submit_all(scheduler, [a, b])
        await wait_state(scheduler, a.key, JobState.RUNNING)
        await wait_state(scheduler, b.key, JobState.RUNNING)
        ra = scheduler.job(a.key).runner_name
        rb = scheduler.job(b.key).runner_name
        # The forge gives A to B's runner, which finishes it: B's record ends, but B is
        # still queued on the forge, and A's idle runner is the one that can take it.
        scheduler.submit_nowait(provider.start_job("A", rb))
        scheduler.submit_nowait(provider.complete_job("A", rb))
        await scheduler.wait_job_finished(b.key)
        await settle()
        assert set(env.sandbox.sandboxes) == {ra}
        scheduler.submit_nowait(provider.start_job("B", ra))
        scheduler.submit_nowait(provider.complete_job("B", ra))
        await scheduler.wait_job_finished(a.key)
        await settle()
        assert env.sandbox.sandboxes == {}
    assert scheduler.job(a.key).state is JobState.SUCCEEDED  # its runner ran B
    assert provider.active_runners == set()
