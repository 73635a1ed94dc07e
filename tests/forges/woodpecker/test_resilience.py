"""Slots, leases and an unreliable server: nothing is lost, nothing is over-assigned."""

from __future__ import annotations

from pathlib import Path

import grpclib.const
import trio

from ephemerd.capabilities import JobAction, JobEvent, JobKey, JobState, PollConfig
from tests.fakes.woodpecker import FakeWoodpecker, open_fake_woodpecker

from .conftest import SECRET, Rig, payload, provider_for, step


async def test_a_slot_is_taken_before_next(rig: Rig, fake: FakeWoodpecker) -> None:
    state = fake.state
    async with rig.running(max_concurrent=1) as (scheduler, _provider):
        state.enqueue("21", payload(step("long", entrypoint=["sleep", "infinity"])))
        state.enqueue("22", payload(step("quick", entrypoint=["exit", "0"])))
        await state.wait_step_started("uuid-long")
        # one slot: the second workflow stays with the server while the first runs
        assert [w.id for w in state.queue] == ["22"]
        assert [name for name, _ in state.calls].count("Next") == 1
        state.cancel("21")
        await state.wait_done("22")
        await scheduler.wait_job_finished(JobKey("wp", "22"))
        assert scheduler.job(JobKey("wp", "22")).state is JobState.SUCCEEDED


async def test_the_lease_is_extended_while_a_workflow_runs(tmp_path: Path) -> None:
    async with open_fake_woodpecker(agent_secret=SECRET, lease=0.5) as fake:
        rig = Rig(tmp_path, fake)
        try:
            async with rig.running() as (scheduler, _provider):
                fake.state.enqueue("23", payload(step("slow", entrypoint=["sleep", "1.5"])))
                done = await fake.state.wait_done("23")
                await scheduler.wait_job_finished(JobKey("wp", "23"))
        finally:
            rig.journal.close()
    assert done.error == "" and fake.state.requeued == []
    assert [name for name, _ in fake.state.calls].count("Extend") >= 3


async def test_an_unclaimed_workflow_is_let_go_and_requeued(tmp_path: Path) -> None:
    async with open_fake_woodpecker(agent_secret=SECRET, lease=0.3) as fake:
        state = fake.state
        state.enqueue("24", payload(step("x", entrypoint=["exit", "0"])))
        async with provider_for(fake, tmp_path, max_concurrent=1, claim_timeout=0.3) as provider:
            send, receive = trio.open_memory_channel[JobEvent](10)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(provider.poll, PollConfig(), send)
                first = await receive.receive()
                assert (first.action, first.job_id, first.repo) == (
                    JobAction.QUEUED,
                    "24",
                    "acme/app",
                )
                # nobody claims it (a cordoned scheduler): extended a while, then let go
                await state.wait_requeued("24")
                assert ("Extend", provider.agent_id) in state.calls
                again = await receive.receive()  # after the pause, Next takes it again
                assert again.job_id == "24"
                nursery.cancel_scope.cancel()


async def test_the_server_going_away_and_back_loses_no_result(
    rig: Rig, fake: FakeWoodpecker
) -> None:
    state = fake.state
    async with rig.running() as (scheduler, _provider):
        state.enqueue(
            "25",
            payload(
                step("a", entrypoint=["sleep", "0.2", "exit", "0"]),
                step("b", entrypoint=["exit", "4"]),
            ),
        )
        await state.wait_step_started("uuid-a")
        await fake.stop()
        await trio.sleep(0.5)  # the outage: step "a" ends while the server is away
        await fake.start()
        done = await state.wait_done("25")
        await scheduler.wait_job_finished(JobKey("wp", "25"))
        view = scheduler.job(JobKey("wp", "25"))
    assert done.error and not done.canceled
    assert view.state is JobState.FAILED
    finals = {s.step_uuid: s.exit_code for _, s in state.updates if s.exited}
    assert finals == {"uuid-a": 0, "uuid-b": 4}
    assert [(e.step_uuid, e.line) for e in state.logs] == [("uuid-a", 0), ("uuid-b", 0)]
    assert state.requeued == []


async def test_dropped_streams_and_unavailable_replies_are_retried(
    rig: Rig, fake: FakeWoodpecker
) -> None:
    state = fake.state
    state.fail("Next", grpclib.const.Status.UNAVAILABLE)
    state.fail("Init", grpclib.const.Status.UNAVAILABLE)
    state.fail("Update", grpclib.const.Status.UNAVAILABLE, times=2)
    state.fail("Log", grpclib.const.Status.UNAVAILABLE)
    state.fail("Done", grpclib.const.Status.UNAVAILABLE)
    async with rig.running() as (scheduler, _provider):
        state.enqueue("26", payload(step("long", entrypoint=["sleep", "infinity"])))
        await state.wait_step_started("uuid-long")
        await fake.drop_connections()  # the Wait in flight ends as a dropped stream
        state.cancel("26")  # ...and a cancel still reaches the agent afterwards
        done = await state.wait_done("26")
        await scheduler.wait_job_finished(JobKey("wp", "26"))
        assert scheduler.job(JobKey("wp", "26")).state is JobState.CANCELLED
    assert done.canceled
    assert [wid for wid, _ in state.inits] == ["26"]
    assert state.failures == {k: [] for k in state.failures}  # every injected failure was hit


async def test_a_workflow_whose_init_is_refused_goes_back_to_the_server(tmp_path: Path) -> None:
    async with open_fake_woodpecker(agent_secret=SECRET, lease=0.3) as fake:
        state = fake.state
        state.fail("Init", grpclib.const.Status.PERMISSION_DENIED)
        rig = Rig(tmp_path, fake)
        try:
            async with rig.running(max_concurrent=1) as (scheduler, _provider):
                state.enqueue("27", payload(step("x", entrypoint=["exit", "0"])))
                await state.wait_requeued("27")
                await scheduler.wait_job_finished(JobKey("wp", "27"))
                assert scheduler.job(JobKey("wp", "27")).state is JobState.FAILED
        finally:
            rig.journal.close()
    assert rig.sandbox.execs == [] and state.dones == []
