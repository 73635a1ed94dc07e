"""A real ``ephemerd serve`` with one ``[[gitlab]]`` instance, for the executor tests.

The daemon is a subprocess (``tests/e2e/harness.open_daemon``); the sandbox backend is
the in-memory one or real containerd, chosen by config. ``RunnerDriver`` plays
gitlab-runner against it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

from ephemerd.capabilities import JobKey, JobState, JobView
from ephemerd.control import open_control_client

INSTANCE = "gitlab"
TOKEN = "glrt-executor-test-token-0000"


def write_config(
    data_dir: Path,
    *,
    backend: str = "memory",
    max_concurrent: int = 2,
    default_image: str = "busybox:latest",
    allowed_images: tuple[str, ...] = (),
    tags: tuple[str, ...] = ("docker",),
    instance_url: str = "http://127.0.0.1:9",
    token: str = TOKEN,
    webhook_token: str = "",
    extra: str = "",
) -> Path:
    """The daemon's config: one GitLab instance (gitlab-runner not supervised)."""
    hook = f'webhook_token = "{webhook_token}"' if webhook_token else ""
    sandbox = 'backend = "memory"' if backend == "memory" else ""
    allowed = ", ".join(f'"{p}"' for p in allowed_images)
    tag_list = ", ".join(f'"{t}"' for t in tags)
    path = data_dir / "config.toml"
    path.write_text(
        f"""
[sandbox]
{sandbox}

[[gitlab]]
name = "{INSTANCE}"
instance_url = "{instance_url}"
token = "{token}"
supervise = false
tags = [{tag_list}]
default_image = "{default_image}"
allowed_images = [{allowed}]
{hook}

[runner]
max_concurrent = {max_concurrent}
shutdown_timeout = "60s"
teardown_timeout = "20s"
{extra}
"""
    )
    path.chmod(0o600)
    return path


def variables(job_id: str, **more: str) -> dict[str, str]:
    """A job's variables as GitLab sets them (a subset)."""
    return {
        "CI_JOB_ID": job_id,
        "CI_JOB_NAME": f"test {job_id}",
        "CI_PROJECT_PATH": "acme/app",
        "CI_PIPELINE_ID": "900",
        "CI_RUNNER_TAGS": '["docker"]',
        "CI_SERVER_URL": "http://127.0.0.1:9",
        "CI_JOB_TOKEN": "glcbt-secret-job-token",
        **more,
    }


async def job_view(data_dir: Path, job_id: str) -> JobView:
    async with open_control_client(data_dir / "ephemerd.sock") as client:
        return await client.job(JobKey(INSTANCE, job_id))


async def wait_state(data_dir: Path, job_id: str, *states: JobState) -> JobView:
    """Follow the daemon's watch stream until the job is in one of *states*."""
    async with (
        open_control_client(data_dir / "ephemerd.sock") as client,
        client.watch_jobs() as updates,
    ):
        async for update in updates:
            for change in update.changes:
                view = change.job
                if view.key == JobKey(INSTANCE, job_id) and view.state in states:
                    return view
    raise AssertionError(f"the watch ended before job {job_id} reached {states}")


async def wait_log(data_dir: Path, job_id: str, text: bytes) -> None:
    """Follow the job's log (once it runs) until *text* appears in it."""
    await wait_state(data_dir, job_id, JobState.RUNNING)
    seen = b""
    async with (
        open_control_client(data_dir / "ephemerd.sock") as client,
        client.job_logs(JobKey(INSTANCE, job_id), follow=True) as chunks,
    ):
        async for chunk in chunks:
            seen += chunk
            if text in seen:
                return
    raise AssertionError(f"job {job_id}'s log ended without {text!r}: {seen!r}")


def ephemerd(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


async def ephemerd_async(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await trio.to_thread.run_sync(lambda: ephemerd(data_dir, *args))
