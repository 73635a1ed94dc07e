"""GitHub end to end: the fake GitHub, a real ``ephemerd serve``, real containerd sandboxes.

Nothing of ephemerd is replaced: the daemon subprocess loads a config naming the fake as
``api_url``, receives signed ``workflow_job`` deliveries on its intake, registers JIT
runners on the fake, and starts each one in a containerd sandbox from the stand-in image
(see ``harness``). The stand-in decodes its JIT config, connects to the fake (through the
allow-listed gateway port), takes whichever queued job the fake hands it (fungibility:
often not the one it was registered for), completes it and exits; the fake delivers
in_progress and completed webhooks naming the runner, as GitHub does.

The daemon uses the default job network (bridge ``ephemerd0``, nft table ``inet
ephemerd``, 10.88.0.0/16), which is one per host: another ephemerd daemon running at the
same time on this host replaces its bridge and firewall rules and breaks this test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import trio

from ephemerd.capabilities import JobState, JobView
from ephemerd.control import open_control_client
from tests.fakes.github import FakeGitHub, open_fake_github

from .harness import (
    GATEWAY,
    INSTANCE,
    SECRET,
    TOKEN,
    DaemonProcess,
    build_standin_image,
    containerd_leftovers,
    free_port,
    open_daemon,
    write_config,
)

pytestmark = [
    pytest.mark.containerd,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("containerd") is None or shutil.which("runc") is None,
        reason="needs root, containerd and runc",
    ),
]

REPO = "acme/app"
LABELS = ["self-hosted", "linux"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One data dir per module, holding the stand-in image in its embedded containerd."""
    path = tmp_path_factory.mktemp("e2e-github")
    build_standin_image(path)
    yield path
    subprocess.run(["umount", "-l", str(path / "run" / "files")], check=False, capture_output=True)


def _prepare(gh: FakeGitHub, data_dir: Path, *, max_concurrent: int) -> None:
    gh.world.tokens.add(TOKEN)
    gh.world.add_repo(REPO)
    api_port = int(gh.url.rsplit(":", 1)[1])
    gh.world.runner_url = f"http://{GATEWAY}:{api_port}"
    webhook_port = free_port()
    hook_url = f"http://127.0.0.1:{webhook_port}/webhook/{INSTANCE}"
    gh.world.create_hook(f"repos/{REPO}", hook_url, SECRET, ["workflow_job"])
    write_config(
        data_dir, api_port=api_port, webhook_port=webhook_port, max_concurrent=max_concurrent
    )


async def _wait_all_finished(daemon: DaemonProcess, expected: int) -> list[JobView]:
    """Watch the daemon until *expected* jobs are known, all finished, nothing active."""
    views: dict[str, JobView] = {}
    async with (
        open_control_client(daemon.data_dir / "ephemerd.sock") as client,
        client.watch_jobs() as updates,
    ):
        async for update in updates:
            for change in update.changes:
                views[str(change.job.key)] = change.job
            status = update.status
            if (
                len(views) >= expected
                and all(v.state.finished for v in views.values())
                and status.active_jobs == 0
                and status.parked_jobs == 0
            ):
                return list(views.values())
    raise AssertionError("the watch stream ended early")


async def _ephemerd_jobs(data_dir: Path) -> list[JobView]:
    result = await trio.run_process(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "jobs", "--json"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return msgspec.json.decode(result.stdout, type=list[JobView])


async def test_twenty_jobs_each_run_once_in_their_own_sandbox_and_nothing_is_left(
    data_dir: Path,
) -> None:
    async with open_fake_github() as gh:
        _prepare(gh, data_dir, max_concurrent=4)
        async with open_daemon(data_dir) as daemon:
            try:
                with trio.fail_after(120):
                    runs = [
                        await gh.queue(REPO, [(f"build-{r}-{j}", LABELS) for j in range(5)])
                        for r in range(4)
                    ]
                    jobs = [job for run in runs for job in run.jobs]
                    await gh.app.wait_until(
                        lambda: (
                            all(j.status == "completed" for j in jobs)
                            and not gh.world.live_runners()
                        )
                    )
                    views = await _wait_all_finished(daemon, len(jobs))
                    listed = await _ephemerd_jobs(data_dir)
                    containers, tasks = await containerd_leftovers(data_dir, running=True)
            except BaseException:
                print(daemon.log())
                raise

        # every job ran exactly once, and succeeded
        taken = Counter(job_id for _, job_id in gh.world.acquisitions)
        assert {j.id: taken[j.id] for j in jobs} == {j.id: 1 for j in jobs}
        assert len(gh.world.acquisitions) == len(jobs)
        assert all(j.conclusion == "success" for j in jobs)

        # the daemon knows every job, each finished; no sandbox is left in containerd
        assert {v.key.job_id for v in views} >= {str(j.id) for j in jobs}
        assert all(v.state is not JobState.FAILED for v in listed), listed
        assert {v.key.job_id for v in listed} >= {str(j.id) for j in jobs}
        assert all(v.state.finished for v in listed)
        assert (containers, tasks) == ([], [])

        # a completed job tore down the sandbox of the runner that ran it, not its own
        ran_on = {str(j.id): j.runner_name for j in jobs}
        torn = re.findall(r"job \S+/(\d+) completed on (\S+); tearing it down", daemon.log())
        assert torn, daemon.log()
        assert all(ran_on[job_id] == runner for job_id, runner in torn), torn

        # every runner registered was deleted: by GitHub on completion, or by ephemerd
        assert gh.world.live_runners() == []
        assert len(gh.world.runners) >= len(jobs)
        assert daemon.process.returncode == 0, daemon.log()
        swapped = sum(1 for line in daemon.lines if "picked up a different job" in line)
        print(
            f"{len(jobs)} jobs, {len(gh.world.runners)} runners registered, {swapped} ran a "
            f"job other than their own, {len(torn)} torn down on the completed event"
        )

    # after the daemon stopped: containerd (started again) holds nothing of ours
    assert await containerd_leftovers(data_dir, running=False) == ([], [])
