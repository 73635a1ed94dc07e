"""One job's life: claim, sandbox spec, retries, timeouts, and cancellation at each state."""

from __future__ import annotations

import re

import pytest
import trio

from ephemerd._errors import (
    ForgeAuthError,
    ForgeConflict,
    ForgeRateLimited,
    ForgeUnavailable,
    SandboxError,
)
from ephemerd._retry import RetryPolicy
from ephemerd.capabilities import JobState, RateLimitHint, ResourceLimits
from ephemerd.testing import MemoryDrivingProvider, MemoryProvider

from .conftest import Env, settle, wait_state

LADDER = RetryPolicy(schedule=(30.0, 60.0), jitter=0.0, max_age=None)
VALID_ID = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")


async def test_sandbox_spec_from_claim(env: Env, provider: MemoryProvider, autojump_clock):
    limits = ResourceLimits(memory_bytes=2**30, cpus=2.0, pids=512)
    scheduler = env.scheduler([provider], limits=limits)
    event = provider.queue_job("42", repo="owner/.github", script=("exit", "0"))
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    (spec,) = env.sandbox.created
    (claim,) = provider.claims
    assert spec.name == claim.runner_name
    assert VALID_ID.match(spec.name) and len(spec.name) <= 76
    assert spec.name.startswith("ephemerd-gh-github-")
    assert spec.hostname == spec.name
    assert spec.image == "memory/runner:latest"
    assert spec.argv == ("exit", "0")
    assert spec.env["EPHEMERD_JOB_ID"] == "42"
    assert spec.env["EPHEMERD_LABELS"] == "self-hosted,linux,x64,big"
    assert spec.files == claim.files
    assert spec.limits == limits
    assert spec.labels["ephemerd.instance"] == "gh"
    assert spec.labels["ephemerd.job-id"] == "42"


@pytest.mark.parametrize(
    ("job_image", "provider_image", "config_image", "expected"),
    [
        ("node:20", "runner:1", "cfg:1", "node:20"),
        (None, "runner:1", "cfg:1", "runner:1"),
        (None, "", "cfg:1", "cfg:1"),
    ],
)
async def test_image_resolution(
    env: Env, job_image, provider_image, config_image, expected, autojump_clock
):
    provider = MemoryProvider("gh", default_image=provider_image)
    scheduler = env.scheduler([provider], default_image=config_image)
    event = provider.queue_job("1", image=job_image)
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    assert env.sandbox.created[0].image == expected


async def test_no_image_anywhere_fails_clearly(env: Env, autojump_clock):
    provider = MemoryProvider("gh", default_image="")
    scheduler = env.scheduler([provider])
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    view = scheduler.job(event.key)
    assert view.state is JobState.FAILED and "no image" in view.detail
    assert provider.active_runners == set() and env.journal.runners() == []


async def test_claim_retries_on_ladder(env: Env, provider: MemoryProvider, autojump_clock):
    provider.fail_next_claims(2, ForgeUnavailable("HTTP 503"))
    scheduler = env.scheduler([provider], claim_retry=LADDER)
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await wait_state(scheduler, event.key, JobState.RETRYING)
        assert "HTTP 503" in scheduler.job(event.key).detail
        await scheduler.wait_job_finished(event.key)
    assert scheduler.job(event.key).state is JobState.SUCCEEDED
    assert len(provider.claim_calls) == 3
    assert trio.current_time() == pytest.approx(90, abs=0.5)
    stats = scheduler.statistics()
    assert (stats.retries, stats.claim_failures) == (2, 2)
    assert env.journal.runners() == []


async def test_retry_budget_gives_up(env: Env, provider: MemoryProvider, autojump_clock):
    provider.fail_next_claims(10, ForgeUnavailable("down"))
    policy = RetryPolicy(schedule=(30.0,), jitter=0.0, max_attempts=3, max_age=None)
    scheduler = env.scheduler([provider], claim_retry=policy)
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    view = scheduler.job(event.key)
    assert view.state is JobState.FAILED
    assert view.detail.startswith("giving up after 4 failed claims")
    assert len(provider.claim_calls) == 4


async def test_non_retryable_claim_is_dropped(env: Env, provider: MemoryProvider, autojump_clock):
    provider.fail_next_claims(1, ForgeAuthError("HTTP 401: bad credentials"))
    scheduler = env.scheduler([provider], claim_retry=LADDER)
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
        scheduler.submit_nowait(event)  # within the dedup window: not hammered again
        await settle()
    view = scheduler.job(event.key)
    assert view.state is JobState.FAILED
    assert view.detail == "claim refused: HTTP 401: bad credentials"
    assert len(provider.claim_calls) == 1


async def test_conflict_retries_with_new_names(env: Env, provider: MemoryProvider, autojump_clock):
    provider.fail_next_claims(2, ForgeConflict("name taken"))
    scheduler = env.scheduler([provider], claim_retry=LADDER)
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    assert trio.current_time() < 1  # no ladder wait
    assert len(set(provider.claim_calls)) == 3
    assert scheduler.job(event.key).runner_name == provider.claim_calls[-1]


async def test_conflict_three_times_goes_on_the_ladder(
    env: Env, provider: MemoryProvider, autojump_clock
):
    provider.fail_next_claims(3, ForgeConflict("name taken"))
    scheduler = env.scheduler([provider], claim_retry=LADDER)
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    assert len(provider.claim_calls) == 4
    assert trio.current_time() == pytest.approx(30, abs=0.5)


async def test_rate_limited_waits_for_reset(env: Env, provider: MemoryProvider, autojump_clock):
    provider.fail_next_claims(1, ForgeRateLimited("slow down", retry_after=100.0))
    scheduler = env.scheduler([provider], claim_retry=LADDER)
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    assert 105 <= trio.current_time() <= 125


async def test_fresh_rate_hint_waits_for_reset(env: Env, provider: MemoryProvider, autojump_clock):
    provider.rate_hint = RateLimitHint(remaining=0, reset_at=env.wall + 300, observed_at=env.wall)
    provider.fail_next_claims(1, ForgeUnavailable("HTTP 403 rate limit"))
    scheduler = env.scheduler([provider], claim_retry=LADDER)
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    assert 305 <= trio.current_time() <= 325


async def test_stale_rate_hint_is_ignored(env: Env, provider: MemoryProvider, autojump_clock):
    provider.rate_hint = RateLimitHint(
        remaining=0, reset_at=env.wall + 300, observed_at=env.wall - 600
    )
    provider.fail_next_claims(1, ForgeUnavailable("down"))
    scheduler = env.scheduler([provider], claim_retry=LADDER)
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    assert trio.current_time() == pytest.approx(30, abs=0.5)


async def test_start_failure_releases_and_retries(
    env: Env, provider: MemoryProvider, autojump_clock
):
    env.sandbox.fail_next_starts(1)
    env.sandbox.fail_next_creates(1, SandboxError("image pull failed"))
    start_retry = RetryPolicy(schedule=(10.0,), jitter=0.0, max_age=None)
    scheduler = env.scheduler([provider], start_retry=start_retry)
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    assert scheduler.job(event.key).state is JobState.SUCCEEDED
    assert len(provider.claims) == 3  # each attempt claims afresh...
    assert provider.active_runners == set()  # ...and releases what it claimed
    assert trio.current_time() == pytest.approx(20, abs=0.5)
    assert env.sandbox.sandboxes == {}
    assert scheduler.statistics().start_failures == 2


async def test_job_timeout_kills_and_tears_down(env: Env, provider: MemoryProvider, autojump_clock):
    scheduler = env.scheduler([provider], job_timeout=100.0)
    event = provider.queue_job("1", script=("sleep", "infinity"))
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    view = scheduler.job(event.key)
    assert view.state is JobState.FAILED and view.detail == "job timeout after 100s"
    assert trio.current_time() == pytest.approx(100, abs=0.5)
    assert env.sandbox.sandboxes == {} and provider.active_runners == set()


@pytest.mark.parametrize(
    ("script", "state", "detail"),
    [
        (("exit", "3"), JobState.FAILED, "exit code 3"),
        (("oom",), JobState.FAILED, "killed: out of memory"),
        (("exit", "0"), JobState.SUCCEEDED, ""),
    ],
)
async def test_exit_outcomes(
    env: Env, provider: MemoryProvider, script, state, detail, autojump_clock
):
    scheduler = env.scheduler([provider])
    event = provider.queue_job("1", script=script)
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    view = scheduler.job(event.key)
    assert (view.state, view.detail) == (state, detail)


async def test_driving_provider_gets_keepalive_sandbox(env: Env, autojump_clock):
    provider = MemoryDrivingProvider("wp")
    scheduler = env.scheduler([provider], keepalive_argv=("sleep", "infinity"))
    event = provider.queue_job("1", script=("exit", "2"))
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    assert env.sandbox.created[0].argv == ("sleep", "infinity")
    assert [c.argv for c in env.sandbox.execs] == [("exit", "2")]
    assert provider.driven == provider.claims
    view = scheduler.job(event.key)
    assert (view.state, view.exit_code) == (JobState.FAILED, 2)
    assert env.sandbox.sandboxes == {}


def _assert_nothing_leaked(env: Env, provider: MemoryProvider) -> None:
    assert env.sandbox.sandboxes == {}
    assert provider.active_runners == set()
    assert env.journal.runners() == []
    assert env.journal.sandboxes() == []


@pytest.mark.parametrize("how", ["kill", "cancel"])
@pytest.mark.parametrize(
    "state",
    [JobState.PARKED, JobState.CLAIMING, JobState.STARTING, JobState.RUNNING, JobState.RETRYING],
)
async def test_cancel_at_each_state_leaks_nothing(
    env: Env, provider: MemoryProvider, state: JobState, how: str, autojump_clock
):
    scheduler = env.scheduler([provider], max_concurrent=1, claim_retry=LADDER)
    if state is JobState.PARKED:
        blocker = provider.queue_job("0", script=("sleep", "infinity"))
    event = provider.queue_job("1", script=("sleep", "infinity"))
    if state is JobState.CLAIMING:
        provider.claim_gate = trio.Event()
    elif state is JobState.STARTING:
        env.sandbox.create_gate = trio.Event()
    elif state is JobState.RETRYING:
        provider.fail_next_claims(1, ForgeUnavailable("down"))
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        if state is JobState.PARKED:
            scheduler.submit_nowait(blocker)
            await wait_state(scheduler, blocker.key, JobState.RUNNING)
        scheduler.submit_nowait(event)
        await wait_state(scheduler, event.key, state)
        if how == "kill":
            view = await scheduler.kill_job(event.key)
            assert view.state is JobState.CANCELLED
            if state is JobState.PARKED:
                await scheduler.kill_job(blocker.key)
            nursery.cancel_scope.cancel()
        else:
            nursery.cancel_scope.cancel()
    assert trio.current_time() < 5
    _assert_nothing_leaked(env, provider)


async def test_cancel_while_stopping_waits_for_teardown_deadline(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider], teardown_timeout=30.0)
    event = provider.queue_job("1", script=("sleep", "10"))
    provider.release_gate = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        scheduler.submit_nowait(event)
        await wait_state(scheduler, event.key, JobState.STOPPING)
        nursery.cancel_scope.cancel()
    # The sandbox went first; the release hit the deadline and stays for the next sweep.
    assert trio.current_time() == pytest.approx(40, abs=0.5)
    assert env.sandbox.sandboxes == {}
    assert [r.runner_name for r in env.journal.runners()] == [provider.claims[0].runner_name]


class _SlowForge(MemoryProvider):
    """Each forge call takes a round trip; records whether the two were ever in flight at once."""

    def __init__(self) -> None:
        super().__init__("gh")
        self.in_flight = 0
        self.overlapped = False

    async def _round_trip(self) -> None:
        self.in_flight += 1
        self.overlapped |= self.in_flight > 1
        await trio.sleep(0.1)
        self.in_flight -= 1

    async def claim_job(self, event, *, runner_name, labels):  # type: ignore[override]
        await self._round_trip()
        return await super().claim_job(event, runner_name=runner_name, labels=labels)

    async def fetch_job_image(self, event):  # type: ignore[override]
        await self._round_trip()
        return await super().fetch_job_image(event)


async def test_job_image_is_read_while_the_runner_registers(env: Env, autojump_clock):
    provider = _SlowForge()
    scheduler = env.scheduler([provider])
    event = provider.queue_job("1", image="node:20")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
    assert provider.overlapped
    assert env.sandbox.created[0].image == "node:20"
