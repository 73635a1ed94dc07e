"""The real daemon, driven from outside: its CLI, its control socket, its signals."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import trio

from ephemerd.capabilities import JobState, JobView
from ephemerd.control import open_control_client

from .conftest import Daemon, ephemerd, free_port, start_daemon, write_config


async def wait_job(daemon: Daemon, ref: str, ok: Callable[[JobView], bool]) -> JobView:
    """Follow the daemon's watch stream until job *ref* satisfies *ok*."""
    instance, _, job_id = ref.partition("/")
    with trio.fail_after(30):
        async with (
            open_control_client(daemon.data_dir / "ephemerd.sock") as client,
            client.watch_jobs() as updates,
        ):
            async for update in updates:
                for change in update.changes:
                    job = change.job
                    if (job.key.instance, job.key.job_id) == (instance, job_id) and ok(job):
                        return job
    raise AssertionError("watch stream ended")


def test_socket_is_private_and_pid_file_names_the_daemon(daemon: Daemon) -> None:
    mode = (daemon.data_dir / "ephemerd.sock").stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert (daemon.data_dir / "ephemerd.pid").read_text().strip() == str(daemon.process.pid)


def test_status_human_and_json(daemon: Daemon) -> None:
    human = ephemerd("status", data_dir=daemon.data_dir)
    assert human.returncode == 0, human.stderr
    assert f"pid {daemon.process.pid}" in human.stdout
    assert "mem" in human.stdout
    machine = ephemerd("status", "--json", data_dir=daemon.data_dir)
    assert machine.returncode == 0, machine.stderr
    status = json.loads(machine.stdout)
    assert status["pid"] == daemon.process.pid
    assert status["max_concurrent"] == 2


async def test_a_job_runs_is_listed_and_its_log_is_readable(daemon: Daemon) -> None:
    daemon.queue({"job_id": "1", "labels": ["self-hosted", "linux"]})
    job = await wait_job(daemon, "mem/1", lambda j: j.state is JobState.SUCCEEDED)
    assert job.runner_name.startswith("ephemerd-mem-")
    listing = ephemerd("jobs", data_dir=daemon.data_dir)
    assert listing.returncode == 0
    assert "mem/1" in listing.stdout and "succeeded" in listing.stdout
    one = ephemerd("jobs", "1", "--json", data_dir=daemon.data_dir)
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["runner_name"] == job.runner_name
    logs = ephemerd("jobs", "logs", "mem/1", data_dir=daemon.data_dir)
    assert logs.returncode == 0, logs.stderr
    assert f"created {job.runner_name}" in logs.stdout


async def test_a_job_this_host_cannot_run_is_not_claimed(daemon: Daemon) -> None:
    daemon.queue({"job_id": "gpu", "labels": ["self-hosted", "gpu"]}, {"job_id": "2"})
    await wait_job(daemon, "mem/2", lambda j: j.state is JobState.SUCCEEDED)
    listing = ephemerd("jobs", "--json", data_dir=daemon.data_dir)
    keys = {f"{j['key']['instance']}/{j['key']['job_id']}" for j in json.loads(listing.stdout)}
    assert "mem/2" in keys
    assert "mem/gpu" not in keys


async def test_kill_cancels_a_running_job(daemon: Daemon) -> None:
    daemon.queue({"job_id": "long", "script": ["sleep", "600"]})
    await wait_job(daemon, "mem/long", lambda j: j.state is JobState.RUNNING)
    killed = ephemerd("jobs", "kill", "mem/long", data_dir=daemon.data_dir)
    assert killed.returncode == 0, killed.stderr
    job = await wait_job(daemon, "mem/long", lambda j: j.state.finished)
    assert job.state is JobState.CANCELLED


async def test_sigterm_drains_running_jobs_then_exits_zero(daemon: Daemon) -> None:
    daemon.queue({"job_id": "short", "script": ["sleep", "1"]})
    await wait_job(daemon, "mem/short", lambda j: j.state is JobState.RUNNING)
    daemon.process.send_signal(signal.SIGTERM)
    daemon.wait_for_log("draining")
    daemon.queue({"job_id": "late"})  # refused: the daemon no longer claims
    assert daemon.process.wait(30) == 0
    assert not (daemon.data_dir / "ephemerd.sock").exists()
    assert not (daemon.data_dir / "ephemerd.pid").exists()
    log = "\n".join(daemon.lines)
    assert "mem/short (octo/app): succeeded" in log
    assert "mem/late (octo/app): admitted" not in log


async def test_second_signal_stops_running_jobs_now(daemon: Daemon) -> None:
    daemon.queue({"job_id": "forever", "script": ["sleep", "infinity"]})
    await wait_job(daemon, "mem/forever", lambda j: j.state is JobState.RUNNING)
    daemon.process.send_signal(signal.SIGTERM)
    daemon.wait_for_log("draining")
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(30) == 0
    assert "cancelling running jobs now" in "\n".join(daemon.lines)


def test_drain_command_signals_the_daemon(daemon: Daemon) -> None:
    drained = ephemerd("drain", data_dir=daemon.data_dir)
    assert drained.returncode == 0, drained.stderr
    assert daemon.process.wait(30) == 0


def test_a_second_daemon_on_the_same_data_dir_is_refused(daemon: Daemon) -> None:
    second = ephemerd("serve", data_dir=daemon.data_dir)
    assert second.returncode != 0
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert "in use by a running ephemerd" in lines[0]
    assert str(daemon.process.pid) in lines[0]
    assert daemon.process.poll() is None  # the first one is unharmed


def test_cli_without_a_daemon_says_so_in_one_line(tmp_path: Path) -> None:
    for args in (("status",), ("jobs",), ("jobs", "kill", "mem/1"), ("drain",)):
        result = ephemerd(*args, data_dir=tmp_path)
        assert result.returncode == 1, (args, result)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    write_config(tmp_path, free_port(), extra="[runner.retry]\njitter = 3\n")
    result = ephemerd("serve", data_dir=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "runner.retry.jitter" in lines[0]


def test_no_provider_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[sandbox]\nbackend = "memory"\n')
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(tmp_path), "serve"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 2
    assert "no providers configured" in result.stderr


async def test_restart_after_kill_9_starts_clean(tmp_path: Path) -> None:
    port = free_port()
    write_config(tmp_path, port)
    first = start_daemon(tmp_path, port)
    first.queue({"job_id": "held", "script": ["sleep", "infinity"]})
    await wait_job(first, "mem/held", lambda j: j.state is JobState.RUNNING)
    first.process.kill()
    first.process.wait(10)
    first.close()
    second = start_daemon(tmp_path, port)
    try:
        # the journal named the dead run's sandbox and runner: both are swept at start-up
        second.wait_for_log("sweep")
        status = ephemerd("status", "--json", data_dir=tmp_path)
        assert json.loads(status.stdout)["pid"] == second.process.pid
    finally:
        assert second.stop() == 0
