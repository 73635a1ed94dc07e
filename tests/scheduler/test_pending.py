"""Pending jobs: shown while the forge has them waiting, never claimed from a pending event."""

from __future__ import annotations

import msgspec
import pytest
import trio
from trio.testing import MockClock

from ephemerd._errors import JobNotFound
from ephemerd.capabilities import JobAction, JobEvent, JobKey, JobState
from ephemerd.scheduler import Scheduler
from ephemerd.testing import MemoryProvider

from .conftest import Env, settle, wait_state


@pytest.fixture
def gl() -> MemoryProvider:
    # Like GitLab: in_progress/completed do not drive teardown by runner name.
    return MemoryProvider("gl", kind="gitlab", reports_runner_names=False)


def pending(provider: MemoryProvider, job_id: str, **kw: object) -> JobEvent:
    """The hook's view of a waiting job; the fake forge knows it but never polls it."""
    if job_id not in provider.jobs:
        provider.queue_job(job_id, repo="acme/tools/app", job_name="build", script=("sleep", "1"))
        provider.jobs[job_id].state = "pending"  # only a prepare announces it queued
    event = provider.event(job_id, JobAction.PENDING)
    return msgspec.structs.replace(event, **kw) if kw else event


def moved(provider: MemoryProvider, job_id: str, action: JobAction, runner: str = "") -> JobEvent:
    event = provider.event(job_id, action)
    conclusion = "success" if action is JobAction.COMPLETED else ""
    return msgspec.structs.replace(event, runner_name=runner, conclusion=conclusion)


async def test_pending_takes_no_slot_and_claims_nothing(
    env: Env, gl: MemoryProvider, autojump_clock: MockClock
):
    scheduler = env.scheduler([gl], max_concurrent=1)
    async with env.running(scheduler):
        a = pending(gl, "A")
        scheduler.submit_nowait(a)
        await settle()
        [view] = scheduler.jobs()
        assert (view.key, view.state, view.repo, view.job_name) == (
            a.key,
            JobState.PENDING,
            "acme/tools/app",
            "build",
        )
        assert view.runner_name == "" and view.sandbox == ""
        status = scheduler.status()
        assert (status.active_jobs, status.parked_jobs) == (0, 0)
        assert scheduler.providers()[0].active_jobs == 0
        assert gl.claim_calls == [] and env.sandbox.sandboxes == {}
        assert env.journal.runners() == [] and env.journal.sandboxes() == []
        # the one slot is free: another job runs at once
        b = gl.queue_job("B", script=("sleep", "infinity"))
        scheduler.submit_nowait(b)
        await wait_state(scheduler, b.key, JobState.RUNNING)
        assert scheduler.job(a.key).state is JobState.PENDING
        with pytest.raises(JobNotFound, match="only pending"):
            await scheduler.kill_job(a.key)
        with pytest.raises(JobNotFound, match="only pending"):
            await scheduler.wait_job_finished(a.key)


async def test_queued_after_pending_admits_once(
    env: Env, gl: MemoryProvider, autojump_clock: MockClock
):
    scheduler = env.scheduler([gl])
    async with env.running(scheduler):
        a = pending(gl, "A")
        async with scheduler.watch() as changes:
            assert [c.job.state for c in await changes.receive()] == []
            scheduler.submit_nowait(a)
            [shown] = await changes.receive()
            assert shown.job.state is JobState.PENDING
            queued = gl.event("A")
            scheduler.submit_nowait(queued)
            scheduler.submit_nowait(queued)  # a duplicate: deduplicated as usual
            scheduler.submit_nowait(a)  # a late pending delivery changes nothing
            await scheduler.wait_job_finished(a.key)
        assert len(gl.claims) == 1
        view = scheduler.job(a.key)
        assert view.state is JobState.SUCCEEDED and view.runner_name
        assert [j.key for j in scheduler.jobs()] == [a.key]
        scheduler.submit_nowait(a)  # after the job ended here: still nothing
        assert scheduler.job(a.key).state is JobState.SUCCEEDED


async def test_picked_up_or_completed_elsewhere_ends_it(
    env: Env, gl: MemoryProvider, autojump_clock: MockClock
):
    scheduler = env.scheduler([gl], finished_retention=60.0)
    async with env.running(scheduler):
        for job_id in ("A", "B", "C"):
            scheduler.submit_nowait(pending(gl, job_id))
        key = JobKey("gl", "A")
        # in_progress naming no runner may be ours: still pending
        scheduler.submit_nowait(moved(gl, "A", JobAction.IN_PROGRESS))
        view = scheduler.job(key)
        assert (view.state, view.detail) == (JobState.PENDING, "picked up by a runner")
        scheduler.submit_nowait(moved(gl, "A", JobAction.IN_PROGRESS, "shared-runner-7"))
        view = scheduler.job(key)
        assert (view.state, view.runner_name, view.detail) == (
            JobState.ELSEWHERE,
            "shared-runner-7",
            "picked up by shared-runner-7",
        )
        assert view.finished_at > 0
        scheduler.submit_nowait(moved(gl, "B", JobAction.COMPLETED))
        view = scheduler.job(JobKey("gl", "B"))
        assert (view.state, view.detail) == (JobState.ELSEWHERE, "success, not run here")
        # C ran elsewhere, but our runner was wrongly thought foreign: its prepare still runs it
        scheduler.submit_nowait(moved(gl, "C", JobAction.IN_PROGRESS, "us-maybe"))
        scheduler.submit_nowait(gl.event("C"))
        await scheduler.wait_job_finished(JobKey("gl", "C"))
        assert scheduler.job(JobKey("gl", "C")).state is JobState.SUCCEEDED
        assert len(gl.claims) == 1 and scheduler.status().active_jobs == 0
        # finished-elsewhere records are pruned like other finished jobs
        await trio.sleep(120.0)
        assert {j.key.job_id for j in scheduler.jobs()} == set()


async def test_pending_records_expire_and_are_bounded(
    env: Env, gl: MemoryProvider, autojump_clock: MockClock
):
    scheduler = env.scheduler([gl], pending_retention=300.0, pending_keep=2)
    async with env.running(scheduler), scheduler.watch() as changes:
        await changes.receive()
        for job_id in ("A", "B", "C"):
            scheduler.submit_nowait(pending(gl, job_id))
            await trio.sleep(1.0)
        # the oldest is forgotten beyond pending_keep, and watchers are told
        assert sorted(j.key.job_id for j in scheduler.jobs()) == ["B", "C"]
        last: dict[str, bool] = {}
        while True:
            await settle()
            try:
                batch = changes.receive_nowait()
            except trio.WouldBlock:
                break
            last.update((c.job.key.job_id, c.removed) for c in batch)
        assert last == {"A": True, "B": False, "C": False}
        await trio.sleep(200.0)
        scheduler.submit_nowait(pending(gl, "C"))  # C is seen again: kept
        await trio.sleep(200.0)
        assert [j.key.job_id for j in scheduler.jobs()] == ["C"]
        await trio.sleep(400.0)
        assert scheduler.jobs() == []


async def test_labels_cordon_and_drain(env: Env, gl: MemoryProvider, autojump_clock: MockClock):
    scheduler = env.scheduler([gl])
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        # a job asking for labels this host lacks is not ours: not shown
        scheduler.submit_nowait(pending(gl, "A", labels=("windows",)))
        assert scheduler.jobs() == []
        # cordon stops claiming, not the view of the forge
        scheduler.cordon()
        scheduler.submit_nowait(pending(gl, "B"))
        assert [j.state for j in scheduler.jobs()] == [JobState.PENDING]
        with trio.fail_after(1.0):  # pending jobs hold no work: drain ends at once
            await scheduler.drain(grace=600.0)
    assert gl.claim_calls == []


def test_pending_is_not_finished() -> None:
    assert not JobState.PENDING.finished and JobState.ELSEWHERE.finished


async def test_observed_scheduler_keeps_working_with_many_pending(
    env: Env, gl: MemoryProvider, autojump_clock: MockClock
):
    scheduler: Scheduler = env.scheduler([gl], max_concurrent=1)
    async with env.running(scheduler):
        for i in range(50):
            scheduler.submit_nowait(pending(gl, f"P{i}"))
        a = gl.queue_job("X", script=("exit", "0"))
        scheduler.submit_nowait(a)
        await scheduler.wait_job_finished(a.key)
        assert scheduler.job(a.key).state is JobState.SUCCEEDED
        assert sum(1 for j in scheduler.jobs() if j.state is JobState.PENDING) == 50
