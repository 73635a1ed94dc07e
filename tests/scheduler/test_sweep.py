"""Start-up sweep of what a crashed (even SIGKILLed) run left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import trio

from ephemerd.capabilities import Claim
from ephemerd.scheduler import Journal
from ephemerd.testing import MemoryProvider, MemorySandbox

from .conftest import Env

CHILD = textwrap.dedent(
    """
    import sys, trio
    from pathlib import Path
    from ephemerd.scheduler import HostLabels, Journal, Scheduler, SchedulerOptions
    from ephemerd.capabilities import JobState
    from ephemerd.testing import MemoryProvider, MemorySandbox

    async def main():
        tmp = Path(sys.argv[1])
        provider = MemoryProvider("gh")
        scheduler = Scheduler(
            providers=[provider],
            sandbox=MemorySandbox(log_dir=tmp / "logs"),
            journal=Journal(tmp / "journal.sqlite"),
            options=SchedulerOptions(labels=HostLabels(arch="x86_64")),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            event = provider.queue_job("9", script=("sleep", "infinity"))
            scheduler.submit_nowait(event)
            async with scheduler.watch() as changes:
                async for batch in changes:
                    if any(c.job.state is JobState.RUNNING for c in batch):
                        break
            view = scheduler.job(event.key)
            print(view.runner_name, provider.claims[0].runner_id, flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


def _run_and_sigkill(tmp_path: Path) -> tuple[str, str]:
    """Run a scheduler in a child process until its job runs, then SIGKILL it."""
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            runner, runner_id = child.stdout.readline().split()
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return runner, runner_id


async def test_sweep_after_sigkill(tmp_path: Path, autojump_clock):
    runner, runner_id = await trio.to_thread.run_sync(_run_and_sigkill, tmp_path)

    # containerd would still hold the sandbox; the forge still holds the runner.
    sandbox = MemorySandbox(log_dir=tmp_path / "logs2")
    sandbox.adopt(runner)
    sandbox.adopt("ephemerd-gh-stray-00000000")  # not in the journal, but ours
    provider = MemoryProvider("gh")
    env = Env(tmp_path)
    env.sandbox = sandbox
    try:
        scheduler = env.scheduler([provider])
        async with env.running(scheduler):
            pass
        report = scheduler.last_sweep
        assert report is not None
        assert (report.sandboxes_destroyed, report.runners_released, report.left) == (2, 1, 0)
        assert sorted(sandbox.destroyed) == sorted([runner, "ephemerd-gh-stray-00000000"])
        (released,) = provider.releases
        assert (released.runner_name, released.runner_id) == (runner, runner_id)
        assert released.files[0].content == b""  # credentials never hit the journal
        assert env.journal.runners() == [] and env.journal.sandboxes() == []
    finally:
        env.journal.close()


async def test_sweep_releases_by_name_and_keeps_unknown_provider(tmp_path: Path, autojump_clock):
    path = tmp_path / "journal.sqlite"
    with Journal(path) as journal:
        journal.record_runner("gh", "1", "ephemerd-gh-app-aaaa")  # died mid-claim
        journal.record_runner("gone", "2", "ephemerd-gone-app-bbbb")
        journal.record_runner("gh", "3", "ephemerd-gh-app-cccc")
        journal.record_claim("gh", Claim(runner_id="r-7", runner_name="ephemerd-gh-app-cccc"))
        journal.record_sandbox("ephemerd-gh-app-cccc", "gh", "3")
    provider = MemoryProvider("gh")
    env = Env(tmp_path)
    try:
        scheduler = env.scheduler([provider])
        async with env.running(scheduler):
            pass
        assert [(c.runner_id, c.runner_name) for c in provider.releases] == [
            ("", "ephemerd-gh-app-aaaa"),
            ("r-7", "ephemerd-gh-app-cccc"),
        ]
        assert [r.runner_name for r in env.journal.runners()] == ["ephemerd-gone-app-bbbb"]
        assert env.journal.sandboxes() == []
        assert scheduler.last_sweep is not None and scheduler.last_sweep.left == 1
    finally:
        env.journal.close()


async def test_sweep_failure_keeps_rows(tmp_path: Path, autojump_clock):
    env = Env(tmp_path)
    env.journal.record_runner("gh", "1", "ephemerd-gh-app-aaaa")
    provider = MemoryProvider("gh")
    provider.release_gate = trio.Event()  # the forge never answers
    try:
        scheduler = env.scheduler([provider], teardown_timeout=5.0)
        async with env.running(scheduler):
            assert trio.current_time() >= 5.0
        assert [r.runner_name for r in env.journal.runners()] == ["ephemerd-gh-app-aaaa"]
    finally:
        env.journal.close()
