"""The provider under the scheduler's controls: kill, drain, cordon."""

from __future__ import annotations

from pathlib import Path

import trio

from ephemerd.capabilities import JobKey, JobState
from tests.fakes.woodpecker import FakeWoodpecker, open_fake_woodpecker

from .conftest import SECRET, Rig, payload, step


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
