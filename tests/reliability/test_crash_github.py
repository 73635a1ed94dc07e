"""The daemon killed with jobs running, against the fake GitHub: the forge side is cleaned up.

A real ``ephemerd serve`` registers a JIT runner per job on the fake GitHub and starts it
in a containerd sandbox whose ``run.sh`` only sleeps: the runner never connects, so on
GitHub's side the jobs stay queued with a live runner each. After ``kill -9`` and a
restart on the same data dir, the start-up sweep must delete every runner the dead daemon
registered (and destroy its sandboxes), and the jobs GitHub still considers queued must be
picked up again, with new runners.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ephemerd.sandbox import ImageStore, build_host_image, open_containerd
from tests.e2e.harness import containerd_leftovers
from tests.fakes.github import open_fake_github

from .helpers import config_text, free_port, open_daemon_async, unmount_files, wait_running

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("containerd") is None or shutil.which("runc") is None,
    reason="needs root, containerd and runc",
)

IMAGE = "ephemerd.local/sleepy-runner:latest"
TOKEN = "ghp_crash0000000000000000000000000000000"
HOOK_SECRET = "crash-webhook-secret"
REPO = "acme/app"
JOBS = 8


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("crashgh")

    async def build() -> None:
        async with open_containerd(data_dir=path) as client:
            await build_host_image(
                ImageStore(client),
                IMAGE,
                work_dir=path / "tmp",
                files={"/home/runner/run.sh": b"#!/bin/sh\nexec sleep 300\n"},
            )

    trio.run(build)
    yield path
    unmount_files(path)


async def test_sigkill_mid_jobs_releases_forge_runners_and_picks_queued_jobs_up_again(
    data_dir: Path,
) -> None:
    async with open_fake_github() as gh:
        gh.world.tokens.add(TOKEN)
        gh.world.add_repo(REPO)
        port = free_port()
        gh.world.create_hook(
            f"repos/{REPO}", f"http://127.0.0.1:{port}/webhook/gh", HOOK_SECRET, ["workflow_job"]
        )
        github = f"""
[[github]]
name = "gh"
owner = "acme"
repos = ["app"]
token = "{TOKEN}"
api_url = "{gh.url}"
webhook_secret = "{HOOK_SECRET}"
default_image = "{IMAGE}"
poll_interval = "2s"
"""
        (data_dir / "config.toml").write_text(
            config_text(
                port=port,
                network_name="ephrelg",
                subnet="10.98.0.0/24",
                max_concurrent=JOBS,
                memory=False,
                extra=github,
            ).replace('shutdown_timeout = "60s"', 'shutdown_timeout = "1s"')
        )
        async with open_daemon_async(data_dir) as daemon:
            with trio.fail_after(120):
                run = await gh.queue(
                    REPO, [(f"j{n}", ["self-hosted", "linux"]) for n in range(JOBS)]
                )
                await gh.app.wait_until(lambda: len(gh.world.live_runners()) == JOBS)
                await wait_running(data_dir, JOBS)
            daemon.process.send_signal(signal.SIGKILL)
            await daemon.process.wait()
        first_runners = {r.name for r in gh.world.live_runners()}
        assert len(first_runners) == JOBS
        assert all(job.status == "queued" for job in run.jobs)

        async with open_daemon_async(data_dir) as daemon:
            with trio.fail_after(120):
                await daemon.wait_for_log("sweep: released leftover runner", count=JOBS)
                released = daemon.seen_at("sweep: released leftover runner", count=JOBS)
                first_line = daemon.seen_at("")
                # the dead daemon's runners are gone from GitHub ...
                assert not first_runners & {r.name for r in gh.world.live_runners()}
                # ... and the jobs GitHub still has queued get new ones
                await gh.app.wait_until(
                    lambda: (
                        len(gh.world.live_runners()) == JOBS
                        and not first_runners & {r.name for r in gh.world.live_runners()}
                    )
                )
                await wait_running(data_dir, JOBS)
        log = daemon.log()
        print(f"forge runners released {released - first_line:.2f}s after the first log line")
        assert released - first_line < 5.0, log
        assert daemon.process.returncode == 0, log
        # the drain cancelled the sleeping runners and deleted their registrations
        assert gh.world.live_runners() == [], log
    # and containerd (started again to look) holds nothing of ours
    assert await containerd_leftovers(data_dir, running=False) == ([], [])
