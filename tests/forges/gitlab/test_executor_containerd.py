"""gitlab-runner's custom executor end to end on real containerd sandboxes.

The daemon is a real ``ephemerd serve`` with its embedded containerd; the job image is the
busybox host image, built once for the module into the shared data dir. Scripts are real
shell scripts fed to the sandbox's shell on stdin.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ephemerd.capabilities import JobState
from ephemerd.sandbox import HOST_IMAGE, ImageStore, build_host_image
from ephemerd.sandbox._embedded import open_containerd
from tests.e2e.harness import containerd_leftovers, open_daemon
from tests.sandbox.containerd_fixture import needs_containerd

from .executor_daemon import job_view, variables, wait_log, write_config
from .runner_driver import BUILD_FAILURE, SYSTEM_FAILURE, JobRun, RunnerDriver, Timeouts

pytestmark = [pytest.mark.containerd, needs_containerd]


async def _build(data_dir: Path) -> None:
    async with open_containerd(data_dir=data_dir) as client:
        await build_host_image(ImageStore(client), HOST_IMAGE, work_dir=data_dir / "tmp")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("gitlab-cd") / "data"
    (path / "tmp").mkdir(parents=True)
    trio.run(_build, path)
    write_config(path, backend="containerd", default_image=HOST_IMAGE, extra="")
    text = (
        (path / "config.toml").read_text().replace("[sandbox]\n", '[sandbox]\nnetwork = "none"\n')
    )
    (path / "config.toml").write_text(text)
    yield path


def _driver(tmp_path: Path, data_dir: Path) -> RunnerDriver:
    return RunnerDriver(data_dir, tmp_path / "runner", timeouts=Timeouts(run=120.0))


GET_SOURCES = """\
set -eo pipefail
mkdir -p /builds/acme/app
cd /builds/acme/app
echo "hello from $CI_JOB_NAME" > README
"""

BUILD = """\
set -eo pipefail
cd /builds/acme/app
cat README
echo to-stderr >&2
"""


async def test_real_scripts_pass_and_fail(tmp_path: Path, data_dir: Path) -> None:
    driver = _driver(tmp_path, data_dir)
    big = "# " + "x" * 300_000 + "\necho big-script-ok\n"  # beyond any pipe buffer
    async with open_daemon(data_dir):
        ok = await driver.run_job(
            "c1",
            variables("c1"),
            {"get_sources": GET_SOURCES, "build_script": BUILD, "after_script": big},
            default_script="true",
        )
        failed = await driver.run_job(
            "c2", variables("c2"), {"build_script": "echo failing\nexit 7\n"}, default_script="true"
        )
        view = await job_view(data_dir, "c2")
        leftovers = await containerd_leftovers(data_dir, running=True)
    assert ok.outcome == "success", [(s.stage, s.code, s.stderr) for s in ok.stages]
    build = ok.stage("build_script")
    assert b"hello from " in build.stdout and b"to-stderr" in build.stderr
    assert b"big-script-ok" in ok.stage("after_script").stdout
    assert failed.outcome == "build_failure"
    assert failed.stage("build_script").code == BUILD_FAILURE
    assert failed.build_exit_code == 7
    assert (view.state, view.exit_code) == (JobState.FAILED, 7)
    assert leftovers == ([], [])


async def test_a_missing_image_fails_prepare_at_once(tmp_path: Path, data_dir: Path) -> None:
    driver = _driver(tmp_path, data_dir)
    async with open_daemon(data_dir):
        run = await driver.run_job(
            "c3", variables("c3", CI_JOB_IMAGE="127.0.0.1:9/missing/image:1"), {}
        )
        leftovers = await containerd_leftovers(data_dir, running=True)
    prepare = run.stage("prepare")
    assert prepare.code == SYSTEM_FAILURE
    assert b"missing/image" in prepare.stderr and prepare.stderr.count(b"\n") == 1
    assert run.ran() == ["config", "prepare", "cleanup"]
    assert run.stage("cleanup").code == 0
    assert leftovers == ([], [])


async def test_sigterm_kills_the_script_inside_the_sandbox(tmp_path: Path, data_dir: Path) -> None:
    driver = _driver(tmp_path, data_dir)
    cancel, stages_done, release = trio.Event(), trio.Event(), trio.Event()
    results: dict[str, JobRun] = {}
    async with open_daemon(data_dir), trio.open_nursery() as nursery:

        async def job() -> None:
            results["run"] = await driver.run_job(
                "c4",
                variables("c4"),
                {"build_script": "echo started-c4\nsleep 313\n"},
                default_script="true",
                cancel_stage="build_script",
                cancel=cancel,
                before_cleanup=stages_done,
                release_cleanup=release,
            )

        nursery.start_soon(job)
        await wait_log(data_dir, "c4", b"started-c4")
        cancel.set()
        await stages_done.wait()
        env = driver.environment("c4", variables("c4"))
        script = driver.write_script(env, "probe", "ps -o args\n")
        probe = await driver.call("run", env, str(script), "probe", limit=60)
        release.set()
    build = results["run"].stage("build_script")
    assert build.cancelled and build.code == SYSTEM_FAILURE
    assert probe.code == 0, probe.stderr
    assert b"ps -o args" in probe.stdout or b"ps" in probe.stdout
    assert b"sleep 313" not in probe.stdout


async def test_a_daemon_killed_mid_job_sweeps_the_sandbox_on_restart(
    tmp_path: Path, data_dir: Path
) -> None:
    driver = _driver(tmp_path, data_dir)
    env = driver.environment("c5", variables("c5"))
    async with open_daemon(data_dir) as daemon:
        prepare = await driver.call("prepare", env, limit=120)
        assert prepare.code == 0, prepare.stderr
        before = await containerd_leftovers(data_dir, running=True)
        daemon.process.send_signal(signal.SIGKILL)
        await daemon.process.wait()
    assert len(before[0]) == 1
    async with open_daemon(data_dir) as restarted:
        script = driver.write_script(env, "build_script", "echo after-restart\n")
        after = await driver.call("run", env, str(script), "build_script", limit=60)
        cleanup = await driver.call("cleanup", env, limit=60)
        leftovers = await containerd_leftovers(data_dir, running=True)
    assert after.code == SYSTEM_FAILURE and b"not running here" in after.stderr
    assert cleanup.code == 0
    assert leftovers == ([], [])
    assert "sweep: destroyed leftover sandbox" in restarted.log()
