"""gitlab-runner's custom executor end to end on a real daemon with in-memory sandboxes.

``RunnerDriver`` plays gitlab-runner; the daemon is a real ``ephemerd serve`` subprocess
(real config, scheduler, journal, control socket); only the sandbox is the memory double,
whose execs run the script language of ``ephemerd.testing`` (``exit N``, ``sleep S``).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import trio

from ephemerd.capabilities import JobKey, JobState
from ephemerd.control import open_control_client
from tests.e2e.harness import open_daemon
from tests.fakes.gitlab import open_fake_gitlab

from .executor_daemon import (
    INSTANCE,
    TOKEN,
    job_view,
    variables,
    wait_log,
    wait_state,
    write_config,
)
from .runner_driver import BUILD_FAILURE, SYSTEM_FAILURE, JobRun, RunnerDriver


def _driver(tmp_path: Path) -> RunnerDriver:
    return RunnerDriver(tmp_path / "data", tmp_path / "runner")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


async def test_a_passing_job_runs_every_stage_and_shows_in_jobs(
    tmp_path: Path, data_dir: Path
) -> None:
    write_config(data_dir)
    driver = _driver(tmp_path)
    async with open_daemon(data_dir) as daemon:
        run = await driver.run_job("101", variables("101"), {})
        view = await job_view(data_dir, "101")
    assert run.outcome == "success", run
    assert run.ran() == [
        "config",
        "prepare",
        "prepare_script",
        "get_sources",
        "restore_cache",
        "download_artifacts",
        "build_script",
        "after_script",
        "archive_cache",
        "upload_artifacts_on_success",
        "cleanup_file_variables",
        "cleanup",
    ]
    assert run.config["builds_dir"] == "/builds"
    assert run.config["driver"] == {"name": "ephemerd", "version": run.config["driver"]["version"]}  # type: ignore[index]
    assert b"sandbox" in run.stage("prepare").stdout
    assert run.stage("build_script").stdout == b"exit 0\n"  # the script's output, streamed
    assert view.state is JobState.SUCCEEDED
    assert (view.repo, view.job_name, view.run_id) == ("acme/app", "test 101", "900")
    assert view.image == "busybox:latest"
    log = daemon.log()
    assert "glcbt-secret-job-token" not in log and TOKEN not in log


async def test_a_failing_script_is_a_build_failure(tmp_path: Path, data_dir: Path) -> None:
    write_config(data_dir)
    driver = _driver(tmp_path)
    async with open_daemon(data_dir):
        run = await driver.run_job("102", variables("102"), {"build_script": "exit 3"})
        view = await job_view(data_dir, "102")
    assert run.outcome == "build_failure", run
    assert run.stage("build_script").code == BUILD_FAILURE
    assert run.build_exit_code == 3
    assert "after_script" in run.ran() and "archive_cache_on_failure" in run.ran()
    assert "upload_artifacts_on_success" not in run.ran()
    assert run.stage("cleanup").code == 0
    assert (view.state, view.exit_code) == (JobState.FAILED, 3)


async def test_cleanup_twice_and_run_without_prepare(tmp_path: Path, data_dir: Path) -> None:
    write_config(data_dir)
    driver = _driver(tmp_path)
    async with open_daemon(data_dir):
        run = await driver.run_job("103", variables("103"), {})
        env = driver.environment("103", variables("103"))
        again = await driver.call("cleanup", env, limit=60)
        script = driver.write_script(env, "build_script", "exit 0")
        stray = await driver.call("run", env, str(script), "build_script", limit=60)
        unknown_env = driver.environment("999", variables("999"))
        unknown = await driver.call("run", unknown_env, str(script), "build_script", limit=60)
    assert run.outcome == "success"
    assert again.code == 0, again.stderr
    assert stray.code == SYSTEM_FAILURE
    assert unknown.code == SYSTEM_FAILURE
    assert b"not running here" in unknown.stderr
    assert unknown.stderr.count(b"\n") == 1  # one line, no traceback


async def test_no_daemon_is_a_system_failure(tmp_path: Path, data_dir: Path) -> None:
    driver = _driver(tmp_path)
    env = driver.environment("104", variables("104"))
    result = await driver.call("prepare", env, limit=60)
    assert result.code == SYSTEM_FAILURE
    assert b"not running" in result.stderr and result.stderr.count(b"\n") == 1


async def test_an_image_outside_allowed_images_fails_prepare(
    tmp_path: Path, data_dir: Path
) -> None:
    write_config(data_dir, allowed_images=("busybox*",))
    driver = _driver(tmp_path)
    async with open_daemon(data_dir):
        run = await driver.run_job("105", variables("105", CI_JOB_IMAGE="evil/miner:1"), {})
        view = await job_view(data_dir, "105")
    assert run.outcome == "system_failure"
    assert run.ran() == ["config", "prepare", "cleanup"]
    prepare = run.stage("prepare")
    assert prepare.code == SYSTEM_FAILURE
    assert b"evil/miner:1" in prepare.stderr and b"not allowed" in prepare.stderr
    assert run.stage("cleanup").code == 0
    assert view.state is JobState.FAILED


async def test_tags_this_host_lacks_fail_prepare(tmp_path: Path, data_dir: Path) -> None:
    write_config(data_dir)
    driver = _driver(tmp_path)
    async with open_daemon(data_dir):
        run = await driver.run_job("106", variables("106", CI_RUNNER_TAGS='["gpu"]'), {})
    assert run.stage("prepare").code == SYSTEM_FAILURE
    assert b"not admitted" in run.stage("prepare").stderr


async def test_a_cordoned_daemon_refuses_prepare(tmp_path: Path, data_dir: Path) -> None:
    write_config(data_dir)
    driver = _driver(tmp_path)
    async with open_daemon(data_dir):
        async with open_control_client(data_dir / "ephemerd.sock") as client:
            await client.cordon()
        run = await driver.run_job("107", variables("107"), {})
    assert run.stage("prepare").code == SYSTEM_FAILURE
    assert b"cordoned" in run.stage("prepare").stderr


async def test_prepare_waits_for_a_slot(tmp_path: Path, data_dir: Path) -> None:
    write_config(data_dir, max_concurrent=1)
    driver = _driver(tmp_path)
    first_done, release_first = trio.Event(), trio.Event()
    runs: dict[str, JobRun] = {}

    async def job(
        job_id: str, done: trio.Event | None = None, release: trio.Event | None = None
    ) -> None:
        runs[job_id] = await driver.run_job(
            job_id, variables(job_id), {}, before_cleanup=done, release_cleanup=release
        )

    async with open_daemon(data_dir), trio.open_nursery() as nursery:
        nursery.start_soon(job, "201", first_done, release_first)
        await first_done.wait()  # job 201 holds the only slot until its cleanup
        nursery.start_soon(job, "202")
        parked = await wait_state(data_dir, "202", JobState.PARKED)
        assert parked.state is JobState.PARKED
        assert (await job_view(data_dir, "201")).state is JobState.RUNNING
        release_first.set()
        running = await wait_state(data_dir, "202", JobState.RUNNING, JobState.SUCCEEDED)
        assert running.state in (JobState.RUNNING, JobState.SUCCEEDED)
    assert all(r.outcome == "success" for r in runs.values())


async def test_a_killed_job_fails_its_running_stage(tmp_path: Path, data_dir: Path) -> None:
    write_config(data_dir)
    driver = _driver(tmp_path)
    results: dict[str, JobRun] = {}
    async with open_daemon(data_dir), trio.open_nursery() as nursery:

        async def job() -> None:
            results["run"] = await driver.run_job(
                "301", variables("301"), {"build_script": "sleep 3600"}
            )

        nursery.start_soon(job)
        await wait_log(data_dir, "301", b"sleep 3600")
        async with open_control_client(data_dir / "ephemerd.sock") as client:
            killed = await client.kill_job(JobKey(INSTANCE, "301"))
        assert killed.state.finished
    run = results["run"]
    assert run.outcome == "system_failure"
    build = run.stage("build_script")
    assert build.code == SYSTEM_FAILURE and b"killed" in build.stderr
    assert run.ran()[-1] == "cleanup" and run.stage("cleanup").code == 0


async def test_sigterm_to_run_cancels_the_stage(tmp_path: Path, data_dir: Path) -> None:
    write_config(data_dir)
    driver = _driver(tmp_path)
    cancel = trio.Event()
    results: dict[str, JobRun] = {}
    async with open_daemon(data_dir):
        async with trio.open_nursery() as nursery:

            async def job() -> None:
                results["run"] = await driver.run_job(
                    "302",
                    variables("302"),
                    {"build_script": "sleep 3600"},
                    cancel_stage="build_script",
                    cancel=cancel,
                )

            nursery.start_soon(job)
            await wait_log(data_dir, "302", b"sleep 3600")
            cancel.set()
        finished = (JobState.CANCELLED, JobState.FAILED, JobState.SUCCEEDED)
        view = await wait_state(data_dir, "302", *finished)
    assert view.state is JobState.CANCELLED, view  # gitlab-runner cancelled it
    run = results["run"]
    build = run.stage("build_script")
    assert build.cancelled and build.code == SYSTEM_FAILURE
    assert b"SIGTERM" in build.stderr
    assert run.stage("cleanup").code == 0


async def test_drain_refuses_prepare_and_lets_running_jobs_finish(
    tmp_path: Path, data_dir: Path
) -> None:
    write_config(data_dir)
    driver = _driver(tmp_path)
    done, release = trio.Event(), trio.Event()
    results: dict[str, JobRun] = {}
    async with open_daemon(data_dir) as daemon:
        async with trio.open_nursery() as nursery:

            async def job() -> None:
                results["run"] = await driver.run_job(
                    "401", variables("401"), {}, before_cleanup=done, release_cleanup=release
                )

            nursery.start_soon(job)
            await done.wait()
            daemon.process.send_signal(signal.SIGTERM)
            await daemon.wait_for_log("draining")
            late = await driver.run_job("402", variables("402"), {})
            release.set()
        with trio.fail_after(60):  # the drain ends the daemon once job 401 is cleaned up
            await daemon.process.wait()
    assert late.stage("prepare").code == SYSTEM_FAILURE
    assert b"draining" in late.stage("prepare").stderr
    assert results["run"].outcome == "success"
    assert daemon.process.returncode == 0


def test_config_prints_the_contract_json(tmp_path: Path) -> None:
    from .executor_daemon import ephemerd

    result = ephemerd(tmp_path, "gitlab-executor", "config")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["builds_dir"] == "/builds" and document["cache_dir"] == "/cache"
    assert document["driver"]["name"] == "ephemerd"
    assert isinstance(document["job_env"], dict)


async def test_the_token_is_verified_at_start_up(tmp_path: Path, data_dir: Path) -> None:
    driver = _driver(tmp_path)
    async with open_fake_gitlab() as gitlab:
        gitlab.app.add_runner("glrt-good-token")
        write_config(data_dir, instance_url=gitlab.url, token="glrt-good-token")
        async with open_daemon(data_dir) as daemon:
            await daemon.wait_for_log("verified with")
            good = await driver.run_job("501", variables("501"), {})
        write_config(data_dir, instance_url=gitlab.url, token="glrt-revoked-token")
        async with open_daemon(data_dir) as daemon:
            await daemon.wait_for_log("every job is refused")
            refused = await driver.run_job("502", variables("502"), {})
    assert good.outcome == "success"
    prepare = refused.stage("prepare")
    assert prepare.code == SYSTEM_FAILURE and b"refused the runner token" in prepare.stderr
    assert b"glrt-revoked-token" not in prepare.stderr


async def test_install_prints_a_runner_block_for_a_verified_token(
    tmp_path: Path, data_dir: Path
) -> None:
    from .executor_daemon import ephemerd_async

    async with open_fake_gitlab() as gitlab:
        runner = gitlab.app.add_runner("glrt-install-token")
        write_config(data_dir, instance_url=gitlab.url, token="glrt-install-token")
        good = await ephemerd_async(data_dir, "gitlab-executor", "install")
        write_config(data_dir, instance_url=gitlab.url, token="glrt-unknown-token")
        bad = await ephemerd_async(data_dir, "gitlab-executor", "install")
    assert good.returncode == 0, good.stderr
    block = good.stdout
    assert 'executor = "custom"' in block and f"id = {runner.id}" in block
    assert '"gitlab-executor", "run"' in block and str(data_dir) in block
    assert bad.returncode != 0 and bad.stdout == ""
    assert "glrt-unknown-token" not in bad.stderr and bad.stderr.count("\n") == 1
