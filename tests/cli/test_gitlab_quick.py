"""``ephemerd gitlab-executor`` through the quick path: imports, contract, signals.

gitlab-runner starts the CLI about a dozen times per job, so each stage's start-up is a
budget, checked here by what it imports (``-X importtime``), never by a clock;
``bench/gitlab_executor.py`` measures the time. The stages run as real subprocesses
against a real control server whose ``CustomExecutor`` is the double of
``tests.control.fake_executor``; ``tests/forges/gitlab`` runs the same CLI against a
real daemon.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ephemerd.capabilities import JobKey, JobState
from ephemerd.cli._quick import run_quick
from ephemerd.control import open_control_server
from tests.control.fake_executor import INSTANCE, ExecutorTarget, FakeExecutor

from .conftest import CONSOLE_SCRIPT, HEAVY_MODULES, ROOT, cli_env, import_floor, imported_modules

BUILD_FAILURE, SYSTEM_FAILURE = 17, 42


@pytest.fixture
def executor() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
async def data_dir(executor: FakeExecutor, tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "data"
    path.mkdir()
    target = ExecutorTarget(path, executor)
    async with open_control_server(
        target, socket_path=path / "ephemerd.sock", executors={INSTANCE: executor}
    ):
        yield path


def _env(tmp_path: Path, job_id: str) -> dict[str, str]:
    env = cli_env()
    env.update(
        CUSTOM_ENV_CI_JOB_ID=job_id,
        CUSTOM_ENV_CI_JOB_TOKEN="glcbt-secret",
        BUILD_FAILURE_EXIT_CODE=str(BUILD_FAILURE),
        SYSTEM_FAILURE_EXIT_CODE=str(SYSTEM_FAILURE),
        BUILD_EXIT_CODE_FILE=str(tmp_path / "build_exit_code"),
    )
    return env


def _argv(data_dir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        CONSOLE_SCRIPT,
        "--data-dir",
        str(data_dir),
        "gitlab-executor",
        *args,
    ]


async def _stage(
    tmp_path: Path, data_dir: Path, job_id: str, *args: str, importtime: bool = False
) -> subprocess.CompletedProcess[bytes]:
    argv = _argv(data_dir, *args)
    if importtime:
        argv[1:1] = ["-X", "importtime"]
    return await trio.run_process(
        argv,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=ROOT,
        env=_env(tmp_path, job_id),
    )


def _script(tmp_path: Path, text: str) -> str:
    path = tmp_path / "script."
    path.write_text(text)
    return str(path)


async def test_each_stage_imports_no_heavy_module(
    tmp_path: Path, data_dir: Path, executor: FakeExecutor
) -> None:
    floor = await import_floor()
    script = _script(tmp_path, "out hello\nerr oops\n")
    stages = [
        ("config",),
        ("prepare",),
        ("run", script, "build_script"),
        ("cleanup",),
    ]
    for args in stages:
        result = await _stage(tmp_path, data_dir, "5", *args, importtime=True)
        assert result.returncode == 0, result.stderr[-500:]
        imported = imported_modules(result.stderr)
        assert "ephemerd.cli._quick" in imported  # the measurement saw the real path
        if args[0] != "config":
            assert "ephemerd.control._quick" in imported
        assert [name for name in HEAVY_MODULES if name in imported - floor] == [], args
        if args[0] == "run":
            assert result.stdout == b"hello\n"
            assert b"oops\n" in result.stderr
    assert executor.requests[0].variables["CI_JOB_TOKEN"] == "glcbt-secret"
    assert executor.cleaned == ["5"]


async def test_a_failing_script_is_a_build_failure(tmp_path: Path, data_dir: Path) -> None:
    assert (await _stage(tmp_path, data_dir, "6", "prepare")).returncode == 0
    result = await _stage(tmp_path, data_dir, "6", "run", _script(tmp_path, "exit 3"), "step")
    assert result.returncode == BUILD_FAILURE, result.stderr
    assert (tmp_path / "build_exit_code").read_text() == "3\n"


async def test_failures_are_one_line_and_the_system_code(tmp_path: Path, data_dir: Path) -> None:
    script = _script(tmp_path, "exit 0")
    unknown = await _stage(tmp_path, data_dir, "404", "run", script, "step")
    other = await _stage(tmp_path, data_dir, "7", "prepare", "--instance", "nope")
    missing = await _stage(tmp_path, data_dir, "7", "run", str(tmp_path / "absent"), "step")
    nowhere = await _stage(tmp_path, tmp_path / "no-daemon", "7", "cleanup")
    for result, words in (
        (unknown, b"job gitlab/404 is not running here"),
        (other, b"takes no custom executor calls"),
        (missing, b"cannot read the script"),
        (nowhere, b"not running"),
    ):
        assert result.returncode == SYSTEM_FAILURE, result.stderr
        assert words in result.stderr and result.stderr.count(b"\n") == 1, result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_the_stage_on_the_daemon_too(
    tmp_path: Path, data_dir: Path, executor: FakeExecutor, signum: signal.Signals
) -> None:
    assert (await _stage(tmp_path, data_dir, "8", "prepare")).returncode == 0
    argv = _argv(data_dir, "run", _script(tmp_path, "out started\nhang\n"), "build_script")
    process = await trio.lowlevel.open_process(
        argv,
        cwd=ROOT,
        env=_env(tmp_path, "8"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    with trio.fail_after(60):
        assert await process.stdout.receive_some() == b"started\n"  # flushed as it came
        process.send_signal(signum)
        await executor.cancelled.wait()  # the script's process is killed daemon-side
        code = await process.wait()
        stderr = await process.stderr.receive_some()
    assert code == SYSTEM_FAILURE
    assert (
        stderr
        == f"ephemerd gitlab-executor run: cancelled by gitlab-runner ({signum.name})\n".encode()
    )
    await process.stdout.aclose()
    await process.stderr.aclose()


async def test_sigterm_during_prepare_kills_the_admitted_job(
    tmp_path: Path, executor: FakeExecutor
) -> None:
    data_dir = tmp_path / "parked"
    data_dir.mkdir()
    target = ExecutorTarget(data_dir, executor, state=JobState.PARKED)  # no slot comes
    async with open_control_server(
        target, socket_path=data_dir / "ephemerd.sock", executors={INSTANCE: executor}
    ):
        process = await trio.lowlevel.open_process(
            _argv(data_dir, "prepare"), cwd=ROOT, env=_env(tmp_path, "10"), stderr=subprocess.PIPE
        )
        assert process.stderr is not None
        with trio.fail_after(60):
            await target.submitted_event.wait()
            process.send_signal(signal.SIGTERM)
            code = await process.wait()
            stderr = await process.stderr.receive_some()
            while not target.killed:  # the daemon's cancelled prepare kills the job
                await target.wait_job_finished(JobKey(INSTANCE, "10"))
        await process.stderr.aclose()
    assert code == SYSTEM_FAILURE
    assert b"cancelled by gitlab-runner (SIGTERM)" in stderr
    assert target.killed == [JobKey(INSTANCE, "10")]


async def test_the_cyclopts_path_runs_the_same_stage(
    tmp_path: Path, data_dir: Path, executor: FakeExecutor
) -> None:
    script = _script(tmp_path, "out via cyclopts")
    assert (await _stage(tmp_path, data_dir, "9", "prepare")).returncode == 0
    # ``--`` is no quick shape: cyclopts parses this one, then calls the same function.
    args = ("run", "--instance", INSTANCE, "--", script, "step")
    result = await _stage(tmp_path, data_dir, "9", *args, importtime=True)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout == b"via cyclopts\n"
    assert "cyclopts" in imported_modules(result.stderr)
    assert executor.scripts[-1][0::2] == ("9", "step")


@pytest.mark.parametrize(
    "tokens",
    [
        ["gitlab-executor", "run", "--help"],
        ["gitlab-executor", "run", "script"],
        ["gitlab-executor", "run", "a", "b", "c"],
        ["gitlab-executor", "prepare", "extra"],
        ["gitlab-executor", "prepare", "--instance"],
        ["gitlab-executor", "prepare", "--instance", "a", "--instance", "b"],
        ["gitlab-executor", "cleanup", "--bogus", "x"],
        ["gitlab-executor", "config", "--instance", "a"],
        ["gitlab-executor", "install"],
        ["gitlab-executor"],
        ["--data-dir", "/a", "--data-dir", "/b", "status"],
    ],
)
def test_other_shapes_go_to_cyclopts(tokens: list[str]) -> None:
    assert run_quick(tokens) is None


def test_config_says_what_cyclopts_says(capsys: pytest.CaptureFixture[str]) -> None:
    from ephemerd.cli._app import app

    options = ["--builds-dir=/b", "--cache-dir", "/c"]
    assert run_quick(["-c", "/x.toml", "gitlab-executor", "config", *options]) == 0
    quick = json.loads(capsys.readouterr().out)
    tokens = ["gitlab-executor", "config", *options]
    assert app.meta(tokens, exit_on_error=False, result_action="return_value") == 0
    assert json.loads(capsys.readouterr().out) == quick
    assert (quick["builds_dir"], quick["cache_dir"]) == ("/b", "/c")
