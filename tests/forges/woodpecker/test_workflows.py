"""End to end: the real scheduler, a memory sandbox, the provider and the fake server."""

from __future__ import annotations

from ephemerd.capabilities import JobKey, JobState
from tests.fakes.woodpecker import FakeWoodpecker

from .conftest import SECRET, Rig, payload, step


async def test_two_step_workflow_succeeds_with_logs_in_order(
    rig: Rig, fake: FakeWoodpecker
) -> None:
    state = fake.state
    async with rig.running() as (scheduler, _provider):
        state.enqueue(
            "11",
            payload(
                step("build", entrypoint=["exit", "0"]), step("test", entrypoint=["exit", "0"])
            ),
        )
        done = await state.wait_done("11")
        await scheduler.wait_job_finished(JobKey("wp", "11"))
        view = scheduler.job(JobKey("wp", "11"))
    assert (done.error, done.canceled) == ("", False)
    assert done.started > 0 and done.finished >= done.started
    assert view.state is JobState.SUCCEEDED
    assert [call.argv for call in rig.sandbox.execs] == [("exit", "0"), ("exit", "0")]
    assert [wid for wid, _ in state.inits] == ["11"]
    steps = [(s.step_uuid, s.exited, s.exit_code) for _, s in state.updates]
    assert steps == [
        ("uuid-build", False, 0),
        ("uuid-build", True, 0),
        ("uuid-test", False, 0),
        ("uuid-test", True, 0),
    ]
    assert [(e.step_uuid, e.line, e.data) for e in state.logs] == [
        ("uuid-build", 0, b"exit 0"),
        ("uuid-test", 0, b"exit 0"),
    ]
    # one sandbox, in the workflow's image, destroyed afterwards
    assert [spec.image for spec in rig.sandbox.created] == ["registry.test/ci/alpine:3"]
    assert rig.sandbox.sandboxes == {}


async def test_failing_step_fails_the_workflow_and_skips_the_rest(
    rig: Rig, fake: FakeWoodpecker
) -> None:
    state = fake.state
    async with rig.running() as (scheduler, _provider):
        state.enqueue(
            "12",
            payload(
                step("build", entrypoint=["exit", "3"]),
                step("test", entrypoint=["exit", "0"]),
                step("notify", entrypoint=["exit", "0"], on_failure=True, on_success=False),
            ),
        )
        done = await state.wait_done("12")
        await scheduler.wait_job_finished(JobKey("wp", "12"))
        view = scheduler.job(JobKey("wp", "12"))
    assert done.error and not done.canceled
    assert view.state is JobState.FAILED
    assert [call.argv for call in rig.sandbox.execs] == [("exit", "3"), ("exit", "0")]
    finals = {s.step_uuid: s for _, s in state.updates if s.exited or s.skipped}
    assert finals["uuid-build"].exit_code == 3
    assert finals["uuid-test"].skipped
    assert finals["uuid-notify"].exited and finals["uuid-notify"].exit_code == 0


async def test_ignored_failure_does_not_fail_the_workflow(rig: Rig, fake: FakeWoodpecker) -> None:
    state = fake.state
    async with rig.running() as (scheduler, _provider):
        state.enqueue(
            "13",
            payload(
                step("lint", entrypoint=["exit", "1"], failure="ignore"),
                step("test", entrypoint=["exit", "0"]),
            ),
        )
        done = await state.wait_done("13")
        await scheduler.wait_job_finished(JobKey("wp", "13"))
        assert scheduler.job(JobKey("wp", "13")).state is JobState.SUCCEEDED
    assert done.error == ""
    assert len(rig.sandbox.execs) == 2


async def test_cancel_from_the_server_kills_the_step_and_reports_canceled(
    rig: Rig, fake: FakeWoodpecker
) -> None:
    state = fake.state
    async with rig.running() as (scheduler, _provider):
        state.enqueue(
            "14",
            payload(
                step("long", entrypoint=["sleep", "infinity"]),
                step("after", entrypoint=["exit", "0"]),
            ),
        )
        await state.wait_step_started("uuid-long")
        state.cancel("14")
        done = await state.wait_done("14")
        await scheduler.wait_job_finished(JobKey("wp", "14"))
        view = scheduler.job(JobKey("wp", "14"))
    assert done.canceled and done.error == "canceled"
    assert view.state is JobState.CANCELLED
    assert [call.argv for call in rig.sandbox.execs] == [("sleep", "infinity")]
    last = [s for _, s in state.updates if s.step_uuid == "uuid-long"][-1]
    assert last.canceled and last.exited
    assert rig.sandbox.sandboxes == {}


async def test_the_agent_secret_never_enters_a_sandbox(rig: Rig, fake: FakeWoodpecker) -> None:
    state = fake.state
    async with rig.running() as (scheduler, _provider):
        state.enqueue("15", payload(step("build", entrypoint=["exit", "0"])))
        await state.wait_done("15")
        await scheduler.wait_job_finished(JobKey("wp", "15"))
    for spec in rig.sandbox.created:
        assert SECRET not in repr(spec.env) + repr(spec.argv) + repr(spec.files)
        assert not spec.files
    for call in rig.sandbox.execs:
        assert SECRET not in repr(call.env) + repr(call.argv)
