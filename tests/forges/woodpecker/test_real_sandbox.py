# ruff: noqa: F811  (fixtures imported from containerd_fixture shadow their names)
"""End to end on a real containerd sandbox: the steps' shell scripts really run.

The scheduler creates a real sandbox (the busybox host image, no network) with a
keep-alive process; the provider execs each step's script in it and streams its output
to the fake server.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from ephemerd.capabilities import JobKey, JobState
from ephemerd.forges.woodpecker import open_woodpecker_provider
from ephemerd.sandbox import HOST_IMAGE, ContainerdSandbox
from ephemerd.scheduler import HostLabels, Journal, Scheduler, SchedulerOptions
from tests.fakes.woodpecker import FakeWoodpecker, open_fake_woodpecker
from tests.sandbox.containerd_fixture import (  # noqa: F401  (fixtures)
    backend,  # pyright: ignore[reportUnusedImport]
    cd_client,  # pyright: ignore[reportUnusedImport]
    containerd_session,  # pyright: ignore[reportUnusedImport]
    needs_containerd,
)

from .conftest import SECRET, options, payload, step

pytestmark = needs_containerd


@asynccontextmanager
async def running(
    tmp_path: Path, sandbox: ContainerdSandbox, server: FakeWoodpecker | None = None
) -> AsyncGenerator[tuple[Scheduler, FakeWoodpecker]]:
    # The fake is opened here, not as a fixture: pytest-trio fixtures share one context and
    # tear down side by side, and each asyncio bridge must close in the order it opened.
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        async with AsyncExitStack() as stack:
            fake = server or await stack.enter_async_context(
                open_fake_woodpecker(agent_secret=SECRET)
            )
            provider = await stack.enter_async_context(
                open_woodpecker_provider(options(fake, tmp_path / "state"))
            )
            scheduler = Scheduler(
                providers=[provider],
                sandbox=sandbox,
                journal=journal,
                options=SchedulerOptions(
                    max_concurrent=2,
                    labels=HostLabels(arch="x86_64"),
                    keepalive_argv=("sleep", "3600"),
                    network="none",
                ),
                rng=random.Random(7),
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(scheduler.run)
                yield scheduler, fake
                nursery.cancel_scope.cancel()
    finally:
        journal.close()


def sh_step(name: str, commands: list[str], **extra: Any) -> dict[str, Any]:
    return step(name, commands=commands, image=HOST_IMAGE, **extra)


async def test_two_steps_run_their_scripts_with_logs_in_order(
    tmp_path: Path, backend: ContainerdSandbox
) -> None:
    async with running(tmp_path, backend) as (scheduler, fake):
        state = fake.state
        state.enqueue(
            "81",
            payload(
                sh_step(
                    "build",
                    ["echo compiling > out.txt", "echo one", "echo two >&2"],
                    working_dir="/woodpecker/src",
                ),
                sh_step(
                    "test",
                    ["cat out.txt", "pwd", 'echo "repo=$CI_REPO"'],
                    working_dir="/woodpecker/src",
                ),
            ),
        )
        done = await state.wait_done("81")
        await scheduler.wait_job_finished(JobKey("wp", "81"))
        assert scheduler.job(JobKey("wp", "81")).state is JobState.SUCCEEDED
    assert done.error == ""
    build = [e.data.decode() for e in state.step_logs("uuid-build")]
    assert build == ["+ echo compiling > out.txt", "+ echo one", "one", "+ echo two >&2", "two"]
    assert [(e.line, e.type) for e in state.step_logs("uuid-build")] == [(i, 0) for i in range(5)]
    test = [e.data.decode() for e in state.step_logs("uuid-test")]
    # the steps share the sandbox, so the workspace: the second reads the first's file
    assert test == [
        "+ cat out.txt",
        "compiling",
        "+ pwd",
        "/woodpecker/src",
        '+ echo "repo=$CI_REPO"',
        "repo=acme/app",
    ]


async def test_a_failing_script_fails_the_workflow(
    tmp_path: Path, backend: ContainerdSandbox
) -> None:
    async with running(tmp_path, backend) as (scheduler, fake):
        state = fake.state
        state.enqueue(
            "82",
            payload(
                sh_step("build", ["echo before", "exit 5", "echo never"]), sh_step("t", ["true"])
            ),
        )
        done = await state.wait_done("82")
        await scheduler.wait_job_finished(JobKey("wp", "82"))
        assert scheduler.job(JobKey("wp", "82")).state is JobState.FAILED
    assert done.error
    finals = {s.step_uuid: s for _, s in state.updates if s.exited or s.skipped}
    assert finals["uuid-build"].exit_code == 5 and finals["uuid-t"].skipped
    assert "never" not in [e.data.decode() for e in state.logs]


async def test_a_cancel_from_the_server_kills_the_step(
    tmp_path: Path, backend: ContainerdSandbox
) -> None:
    async with running(tmp_path, backend) as (scheduler, fake):
        state = fake.state
        state.enqueue("83", payload(sh_step("long", ["echo started", "sleep 300"])))
        await state.wait_step_started("uuid-long")
        state.cancel("83")
        done = await state.wait_done("83")
        await scheduler.wait_job_finished(JobKey("wp", "83"))
        assert scheduler.job(JobKey("wp", "83")).state is JobState.CANCELLED
    assert done.canceled
    assert await backend.list_own() == []


async def test_the_server_going_away_mid_step_loses_no_result(
    tmp_path: Path, backend: ContainerdSandbox
) -> None:
    async with running(tmp_path, backend) as (scheduler, fake):
        state = fake.state
        state.enqueue("84", payload(sh_step("slow", ["sleep 1", "echo survived"])))
        await state.wait_step_started("uuid-slow")
        await fake.stop()
        await trio.sleep(0.5)  # the outage: the step keeps running in its sandbox
        await fake.start()
        done = await state.wait_done("84")
        await scheduler.wait_job_finished(JobKey("wp", "84"))
        assert scheduler.job(JobKey("wp", "84")).state is JobState.SUCCEEDED
    assert done.error == "" and not done.canceled
    assert "survived" in [e.data.decode() for e in state.step_logs("uuid-slow")]


async def test_a_restart_reuses_the_agent_id_and_runs_again(
    tmp_path: Path, backend: ContainerdSandbox
) -> None:
    async with open_fake_woodpecker(agent_secret=SECRET) as fake:
        for run, workflow in enumerate(("85", "86")):
            async with running(tmp_path, backend, server=fake) as (scheduler, _):
                fake.state.enqueue(workflow, payload(sh_step(f"s{run}", [f"echo run {run}"])))
                done = await fake.state.wait_done(workflow)
                await scheduler.wait_job_finished(JobKey("wp", workflow))
                assert done.error == ""
                assert scheduler.job(JobKey("wp", workflow)).state is JobState.SUCCEEDED
        # both runs registered as the one agent whose id the first run saved
        assert len([a for a in fake.state.agents.values() if a.system]) == 1
