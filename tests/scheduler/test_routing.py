"""Forge events and fungible runners: teardown follows the runner the forge names."""

from __future__ import annotations

import pytest
import trio

from ephemerd._errors import ForgeUnavailable
from ephemerd._retry import RetryPolicy
from ephemerd.capabilities import JobState
from ephemerd.scheduler import Scheduler
from ephemerd.testing import MemoryProvider

from .conftest import Env, settle, submit_all, wait_state


async def _run_two(env: Env, provider: MemoryProvider, scheduler: Scheduler):
    a = provider.queue_job("A", script=("sleep", "infinity"))
    b = provider.queue_job("B", script=("sleep", "infinity"))
    submit_all(scheduler, [a, b])
    await wait_state(scheduler, a.key, JobState.RUNNING)
    await wait_state(scheduler, b.key, JobState.RUNNING)
    return a, b, scheduler.job(a.key).runner_name, scheduler.job(b.key).runner_name


async def test_swapped_runners_are_torn_down_by_reported_name(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider])
    async with env.running(scheduler):
        a, b, ra, rb = await _run_two(env, provider, scheduler)
        # The forge gives A to B's runner and B to A's runner.
        scheduler.submit_nowait(provider.start_job("A", rb))
        scheduler.submit_nowait(provider.start_job("B", ra))
        await settle()
        assert scheduler.job(a.key).runner_name == rb
        assert scheduler.job(b.key).runner_name == ra
        scheduler.submit_nowait(provider.complete_job("A", rb))
        await settle()
        assert rb not in env.sandbox.sandboxes
        assert ra in env.sandbox.sandboxes
        assert scheduler.job(b.key).state is JobState.SUCCEEDED  # its runner ran A
        scheduler.submit_nowait(provider.complete_job("B", ra, conclusion="failure"))
        await settle()
        assert env.sandbox.sandboxes == {}
    assert scheduler.job(a.key).state is JobState.FAILED  # A's runner ran B, which failed
    assert provider.active_runners == set()


async def test_completed_without_runner_tears_down_unbound_intent(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider])
    async with env.running(scheduler):
        a, _, _ra, rb = await _run_two(env, provider, scheduler)
        scheduler.submit_nowait(provider.complete_job("A", "", conclusion="cancelled"))
        await scheduler.wait_job_finished(a.key)
        assert scheduler.job(a.key).state is JobState.CANCELLED
        assert set(env.sandbox.sandboxes) == {rb}


async def test_completed_without_runner_spares_intent_bound_elsewhere(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider])
    async with env.running(scheduler):
        _a, _b, ra, rb = await _run_two(env, provider, scheduler)
        scheduler.submit_nowait(provider.start_job("B", ra))  # A's runner runs B
        scheduler.submit_nowait(provider.complete_job("A", ""))
        await settle()
        assert ra in env.sandbox.sandboxes  # it runs B: left alone
        # B's own runner is now a spare no queued job needs: retired.
        assert rb not in env.sandbox.sandboxes


async def test_completed_on_foreign_runner_destroys_nothing(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider])
    async with env.running(scheduler):
        _, _, _ra, rb = await _run_two(env, provider, scheduler)
        scheduler.submit_nowait(provider.complete_job("A", "someone-elses-runner"))
        await settle()
        # A ran elsewhere: its own runner is now a spare, but B still waits for a runner
        # only if it is not covered; here B's own runner covers it, so A's is retired.
        assert set(env.sandbox.sandboxes) == {rb}


async def test_unknown_job_is_a_no_op(env: Env, provider: MemoryProvider, autojump_clock):
    scheduler = env.scheduler([provider])
    async with env.running(scheduler):
        _, _, ra, rb = await _run_two(env, provider, scheduler)
        provider.queue_job("Z")
        provider.jobs["Z"].state = "completed"  # never reported queued to us
        scheduler.submit_nowait(provider.complete_job("Z", ""))
        scheduler.submit_nowait(provider.start_job("Z", "foreign"))
        await settle()
        assert set(env.sandbox.sandboxes) == {ra, rb}


async def test_spare_runner_kept_while_a_queued_job_can_use_it(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider], max_concurrent=2)
    async with env.running(scheduler):
        _a, _b, ra, rb = await _run_two(env, provider, scheduler)
        c = provider.queue_job("C", script=("sleep", "infinity"))
        scheduler.submit_nowait(c)
        await settle()
        assert scheduler.job(c.key).state is JobState.PARKED
        scheduler.submit_nowait(provider.start_job("A", "foreign"))
        await settle()
        assert ra in env.sandbox.sandboxes  # C may still land on it
        scheduler.submit_nowait(provider.start_job("C", ra))
        await settle()
        assert ra in env.sandbox.sandboxes
        view = scheduler.job(c.key)
        assert view.runner_name == ra
        assert view.state is JobState.CANCELLED  # dispatch abandoned: picked up elsewhere
        assert len(provider.claim_calls) == 2  # C never registered a runner
        scheduler.submit_nowait(provider.complete_job("C", ra))
        await settle()
        assert set(env.sandbox.sandboxes) == {rb}


async def test_spare_runner_retired_when_no_job_can_use_it(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider])
    async with env.running(scheduler):
        a, _, ra, rb = await _run_two(env, provider, scheduler)
        scheduler.submit_nowait(provider.start_job("A", "foreign"))
        await scheduler.wait_job_finished(a.key)
        view = scheduler.job(a.key)
        assert view.state is JobState.CANCELLED and "spare runner retired" in view.detail
        assert set(env.sandbox.sandboxes) == {rb}
        assert ra not in provider.active_runners


async def test_in_progress_drops_pending_retry(env: Env, provider: MemoryProvider, autojump_clock):
    provider.fail_next_claims(1, ForgeUnavailable("down"))
    policy = RetryPolicy(schedule=(300.0,), jitter=0.0, max_age=None)
    scheduler = env.scheduler([provider], claim_retry=policy)
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await wait_state(scheduler, event.key, JobState.RETRYING)
        scheduler.submit_nowait(provider.start_job("1", "peer-runner"))
        await scheduler.wait_job_finished(event.key)
        await trio.sleep(600)
    assert len(provider.claim_calls) == 1
    assert "picked up by another runner" in scheduler.job(event.key).detail


@pytest.mark.parametrize("action", ["in_progress", "completed"])
async def test_non_reporting_provider_uses_intent(env: Env, action: str, autojump_clock):
    provider = MemoryProvider("fj", reports_runner_names=False)
    scheduler = env.scheduler([provider])
    async with env.running(scheduler):
        a, _b, ra, rb = await _run_two(env, provider, scheduler)
        if action == "completed":
            scheduler.submit_nowait(provider.complete_job("A", "whatever"))
            await scheduler.wait_job_finished(a.key)
            assert set(env.sandbox.sandboxes) == {rb}
        else:
            scheduler.submit_nowait(provider.start_job("A", "whatever"))
            await settle()
            assert set(env.sandbox.sandboxes) == {ra, rb}  # no spare logic without names


async def test_in_progress_without_runner_name_makes_no_spare(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider])
    async with env.running(scheduler):
        _, _, ra, rb = await _run_two(env, provider, scheduler)
        scheduler.submit_nowait(provider.start_job("A", ""))
        await settle()
        assert set(env.sandbox.sandboxes) == {ra, rb}


async def test_completed_while_claiming_releases_the_runner(
    env: Env, provider: MemoryProvider, autojump_clock
):
    provider.claim_gate = trio.Event()
    scheduler = env.scheduler([provider])
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await wait_state(scheduler, event.key, JobState.CLAIMING)
        scheduler.submit_nowait(provider.complete_job("1", "", conclusion="cancelled"))
        await scheduler.wait_job_finished(event.key)
    assert scheduler.job(event.key).state is JobState.CANCELLED
    assert [c.runner_name for c in provider.releases] == provider.claim_calls
    assert env.sandbox.created == [] and env.journal.runners() == []


async def test_job_whose_runner_ran_another_is_readmitted(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider])
    async with env.running(scheduler):
        a, _b, ra, rb = await _run_two(env, provider, scheduler)
        scheduler.submit_nowait(provider.start_job("B", ra))
        await settle()
        assert rb in env.sandbox.sandboxes  # spare kept: A may still land on it
        scheduler.submit_nowait(provider.complete_job("B", ra))
        await scheduler.wait_job_finished(a.key)
        assert scheduler.job(a.key).runner_name == ""  # A itself never ran on ra
        scheduler.submit_nowait(provider.event("A"))  # A is still queued on the forge
        await settle()
        assert scheduler.job(a.key).state is JobState.RUNNING
        assert len(provider.claim_calls) == 3
