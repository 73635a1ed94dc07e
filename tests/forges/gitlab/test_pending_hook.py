"""Job Hook deliveries on a real daemon: waiting jobs are shown pending, never claimed.

The daemon is a real ``ephemerd serve`` (memory sandboxes) whose ``[[gitlab]]`` section has a
``webhook_token``; the fake GitLab verifies the runner token (so the daemon knows its own
runner id) and emits the Job Hook deliveries; ``RunnerDriver`` plays gitlab-runner.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ephemerd.capabilities import JobKey, JobState, JobView
from ephemerd.control import open_control_client
from tests.e2e.harness import free_port, open_daemon
from tests.fakes.gitlab import FakeGitLab, FakeJob, open_fake_gitlab

from .executor_daemon import INSTANCE, TOKEN, ephemerd_async, variables, write_config
from .runner_driver import RunnerDriver

HOOK_TOKEN = "gitlab-hook-token-7c1e"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


async def _jobs(data_dir: Path) -> dict[str, JobView]:
    async with open_control_client(data_dir / "ephemerd.sock") as client:
        return {view.key.job_id: view for view in await client.jobs()}


def _pick_up(job: FakeJob, runner_id: int, description: str) -> None:
    job.status = "running"
    job.runner = {"id": runner_id, "description": description, "is_shared": False}


async def _hook(gitlab: FakeGitLab, url: str, job: FakeJob, token: str = HOOK_TOKEN) -> int:
    return (await gitlab.emit(url, job, token)).status_code


async def test_hooked_jobs_are_pending_until_the_executor_prepares_them(
    tmp_path: Path, data_dir: Path
) -> None:
    port = free_port()
    async with open_fake_gitlab() as gitlab:
        ours = gitlab.app.add_runner(TOKEN)
        write_config(
            data_dir,
            instance_url=gitlab.url,
            webhook_token=HOOK_TOKEN,
            extra=f'[webhook]\nlisten = "127.0.0.1:{port}"\n',
        )
        url = f"http://127.0.0.1:{port}/webhook/{INSTANCE}"
        job = gitlab.new_job("acme/tools/app", "build", tags=["docker"])
        job.status = "pending"
        async with open_daemon(data_dir) as daemon:
            await daemon.wait_for_log("verified with")
            # a forged delivery is refused and shows nothing
            assert await _hook(gitlab, url, job, token="not-the-token") == 403
            assert await _jobs(data_dir) == {}

            assert await _hook(gitlab, url, job) == 200
            view = (await _jobs(data_dir))[str(job.id)]
            assert (view.state, view.repo, view.job_name, view.kind) == (
                JobState.PENDING,
                "acme/tools/app",
                "build",
                "gitlab",
            )
            listed = await ephemerd_async(data_dir, "jobs")
            assert listed.returncode == 0, listed.stderr
            [row] = [line for line in listed.stdout.splitlines() if str(job.id) in line]
            assert row.split()[1:4] == ["pending", "acme/tools/app", "build"]

            # our runner picks it up (GitLab says so before the executor's prepare)
            _pick_up(job, ours.id, "this host")
            assert await _hook(gitlab, url, job) == 200
            assert (await _jobs(data_dir))[str(job.id)].state is JobState.PENDING

            driver = RunnerDriver(data_dir, tmp_path / "runner")
            more = {"CI_PROJECT_PATH": "acme/tools/app", "CI_JOB_NAME": "build"}
            run = await driver.run_job(str(job.id), variables(str(job.id), **more), {})
            assert run.outcome == "success", run
            job.status = "success"
            assert await _hook(gitlab, url, job) == 200
            view = (await _jobs(data_dir))[str(job.id)]
            assert (view.state, view.sandbox != "") == (JobState.SUCCEEDED, True)

            # another job goes to a runner elsewhere: shown as such, never claimed here
            other = gitlab.new_job("acme/web", "lint")
            other.status = "pending"
            assert await _hook(gitlab, url, other) == 200
            _pick_up(other, 7, "shared-runner-7")
            assert await _hook(gitlab, url, other) == 200
            elsewhere = (await _jobs(data_dir))[str(other.id)]
            assert (elsewhere.state, elsewhere.runner_name) == (
                JobState.ELSEWHERE,
                "shared-runner-7",
            )
            async with open_control_client(data_dir / "ephemerd.sock") as client:
                assert (await client.status()).active_jobs == 0
                assert (await client.job(JobKey(INSTANCE, str(other.id)))).sandbox == ""
            log = daemon.log()
        assert HOOK_TOKEN not in log and TOKEN not in log
        assert "bad token refused" in log
