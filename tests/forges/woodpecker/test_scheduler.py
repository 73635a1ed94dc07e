"""The provider under the scheduler's controls: kill, drain, cordon, shared slots."""

from __future__ import annotations

import random
from pathlib import Path

import trio
import trio.testing

from ephemerd.capabilities import JobKey, JobState
from ephemerd.forges.woodpecker import open_woodpecker_provider
from ephemerd.scheduler import HostLabels, Journal, Scheduler, SchedulerOptions
from ephemerd.testing import MemoryProvider, MemorySandbox
from tests.fakes.woodpecker import FakeWoodpecker, open_fake_woodpecker

from .conftest import SECRET, Rig, options, payload, step


async def test_killing_a_job_reports_the_workflow_canceled(rig: Rig, fake: FakeWoodpecker) -> None:
    state = fake.state
    async with rig.running() as (scheduler, provider):
        state.enqueue("71", payload(step("long", entrypoint=["sleep", "infinity"])))
        await state.wait_step_started("uuid-long")
        view = await scheduler.kill_job(JobKey("wp", "71"))
        assert view.state is JobState.CANCELLED
        done = await state.wait_done("71")
        assert provider.statistics()["held"] == 0
    assert done.canceled and done.error == "canceled"
    last = [s for _, s in state.updates if s.step_uuid == "uuid-long"][-1]
    assert last.canceled
    assert rig.sandbox.sandboxes == {}


async def test_a_drain_stops_next_and_lets_the_running_workflow_finish(
    rig: Rig, fake: FakeWoodpecker
) -> None:
    state = fake.state
    async with rig.running() as (scheduler, _provider):
        state.enqueue("72", payload(step("slow", entrypoint=["sleep", "0.3"])))
        await state.wait_step_started("uuid-slow")
        async with trio.open_nursery() as nursery:
            await state.wait_polling(1)  # the second slot's long poll
            nursery.start_soon(scheduler.drain)
            await state.wait_polling(0)  # cancelled on the server side too
            state.enqueue("73", payload(step("late", entrypoint=["exit", "0"])))
            done = await state.wait_done("72")
        assert scheduler.job(JobKey("wp", "72")).state is JobState.SUCCEEDED
    assert done.error == ""
    assert [w.id for w in state.queue] == ["73"]  # nobody asked for it: Next stopped
    assert state.running("73") is None


async def test_a_cordoned_daemon_stops_asking_for_workflows_until_uncordoned(
    tmp_path: Path,
) -> None:
    async with open_fake_woodpecker(agent_secret=SECRET, lease=0.3) as fake:
        state = fake.state
        rig = Rig(tmp_path, fake)
        try:
            async with rig.running(max_concurrent=2, claim_timeout=0.3) as (scheduler, _p):
                await state.wait_polling(2)
                scheduler.cordon()
                with trio.fail_after(10):
                    await state.wait_polling(0)  # the long polls are withdrawn at once
                state.enqueue("74", payload(step("a", entrypoint=["exit", "0"])))
                assert [w.id for w in state.queue] == ["74"]
                scheduler.uncordon()
                await state.wait_done("74")
                await scheduler.wait_job_finished(JobKey("wp", "74"))
                assert scheduler.job(JobKey("wp", "74")).state is JobState.SUCCEEDED
        finally:
            rig.journal.close()
    assert state.requeued == []  # taken once, after the uncordon, and run


async def test_no_next_while_another_forges_jobs_hold_every_slot(
    tmp_path: Path, fake: FakeWoodpecker
) -> None:
    state = fake.state
    github = MemoryProvider("gh")
    sandbox = MemorySandbox(log_dir=tmp_path / "logs")
    journal = Journal(tmp_path / "journal.sqlite")
    opts = options(fake, tmp_path / "state", max_concurrent=2)
    try:
        async with open_woodpecker_provider(opts) as provider:
            scheduler = Scheduler(
                providers=[github, provider],
                sandbox=sandbox,
                journal=journal,
                options=SchedulerOptions(
                    max_concurrent=2, labels=HostLabels(arch="x86_64"), poll_interval=5.0
                ),
                rng=random.Random(7),
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(scheduler.run)
                with trio.fail_after(10):
                    await state.wait_polling(2)  # idle: one long poll per free slot
                    for job in ("g1", "g2"):
                        github.queue_job(job, script=["sleep", "infinity"])
                    # both slots are GitHub's: the long polls are withdrawn
                    await state.wait_polling(0)
                    state.enqueue("81", payload(step("a", entrypoint=["exit", "0"])))
                    await trio.testing.wait_all_tasks_blocked()
                    # the server keeps the workflow for an agent that can run it now
                    assert [w.id for w in state.queue] == ["81"]
                    assert provider.statistics()["held"] == 0
                    await scheduler.kill_job(JobKey("gh", "g1"))  # a slot frees up
                    await state.wait_done("81")
                    await scheduler.wait_job_finished(JobKey("wp", "81"))
                assert scheduler.job(JobKey("wp", "81")).state is JobState.SUCCEEDED
                nursery.cancel_scope.cancel()
    finally:
        journal.close()
    assert state.requeued == []
