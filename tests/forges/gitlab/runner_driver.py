"""A driver that plays gitlab-runner's custom executor against ``ephemerd gitlab-executor``.

It does what gitlab-runner does for one job (``executors/custom`` as documented):

* the environment: every job variable as ``CUSTOM_ENV_<KEY>``, plus
  ``BUILD_FAILURE_EXIT_CODE``, ``SYSTEM_FAILURE_EXIT_CODE``, ``BUILD_EXIT_CODE_FILE``,
  ``JOB_RESPONSE_FILE`` (the job payload, written to a file) and ``TMPDIR``; the codes are
  deliberately not 1 and 2, so a program that ignores them is caught;
* ``config_exec`` first, its stdout parsed as JSON; then ``prepare_exec``;
* ``run_exec <script file> <sub-stage>`` once per sub-stage in gitlab-runner's order, each
  script written to its own file first; after a build failure only the on-failure stages
  run; a system failure ends the stages;
* ``cleanup_exec`` whatever happened;
* timeouts as in ``config.toml`` (``prepare_exec_timeout``...), and a cancelled stage gets
  SIGTERM, then SIGKILL after ``graceful_kill_timeout``.

Each program's exit code is read as gitlab-runner reads it: 0 is success, the build code
is a script failure, anything else a system failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
import trio

BUILD_FAILURE = 17
SYSTEM_FAILURE = 42

# gitlab-runner's sub-stages in the order it runs them (executors/custom, common/build.go).
BEFORE_BUILD = (
    "prepare_script",
    "get_sources",
    "restore_cache",
    "download_artifacts",
)
BUILD = "build_script"  # the main step_script is still passed as build_script
ON_SUCCESS = ("after_script", "archive_cache", "upload_artifacts_on_success")
ON_FAILURE = ("after_script", "archive_cache_on_failure", "upload_artifacts_on_failure")
LAST = "cleanup_file_variables"


class StageResult(msgspec.Struct, kw_only=True):
    """One executor program's run."""

    stage: str
    argv: tuple[str, ...]
    code: int
    stdout: bytes = b""
    stderr: bytes = b""
    cancelled: bool = False

    @property
    def kind(self) -> str:
        if self.code == 0:
            return "ok"
        return "build_failure" if self.code == BUILD_FAILURE else "system_failure"


class JobRun(msgspec.Struct, kw_only=True):
    """What gitlab-runner saw of one job."""

    outcome: str = ""  # success | build_failure | system_failure
    stages: list[StageResult] = msgspec.field(default_factory=list[StageResult])
    config: dict[str, object] = msgspec.field(default_factory=dict[str, object])
    build_exit_code: int | None = None

    def stage(self, name: str) -> StageResult:
        return next(s for s in self.stages if s.stage == name)

    def ran(self) -> list[str]:
        return [s.stage for s in self.stages]


class Timeouts(msgspec.Struct, frozen=True, kw_only=True):
    """``[runners.custom]`` timeouts, in seconds."""

    config: float = 60.0
    prepare: float = 120.0
    run: float = 300.0  # the job's timeout bounds the run stages
    cleanup: float = 120.0
    graceful_kill: float = 10.0
    force_kill: float = 10.0


class RunnerDriver:
    """gitlab-runner's custom executor for jobs on one ephemerd data dir.

    Args:
        data_dir: the daemon's data dir (``--data-dir`` in every ``*_args``).
        work_dir: where the driver keeps TMPDIR, scripts and payload files.
        timeouts: the ``[runners.custom]`` timeouts.
        executable: argv that starts ``ephemerd``.
    """

    def __init__(
        self,
        data_dir: Path,
        work_dir: Path,
        *,
        timeouts: Timeouts | None = None,
        executable: Sequence[str] = (sys.executable, "-m", "ephemerd"),
    ) -> None:
        self.data_dir = data_dir
        self.work_dir = work_dir
        self.timeouts = timeouts or Timeouts()
        self.executable = tuple(executable)

    def environment(self, job_id: str, variables: Mapping[str, str]) -> dict[str, str]:
        """The environment gitlab-runner gives every executor program of the job."""
        job_dir = self.work_dir / f"job-{job_id}"
        tmp = job_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        payload = job_dir / "response.json"
        payload.write_text(json.dumps(job_payload(job_id, variables)))
        env = {
            key: value
            for key, value in os.environ.items()
            if key in ("PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV")
        }
        env.update({f"CUSTOM_ENV_{key}": value for key, value in variables.items()})
        env.update(
            BUILD_FAILURE_EXIT_CODE=str(BUILD_FAILURE),
            SYSTEM_FAILURE_EXIT_CODE=str(SYSTEM_FAILURE),
            BUILD_EXIT_CODE_FILE=str(job_dir / "build_exit_code"),
            JOB_RESPONSE_FILE=str(payload),
            TMPDIR=str(tmp),
        )
        return env

    def argv(self, stage: str, *extra: str) -> tuple[str, ...]:
        return (
            *self.executable,
            "--data-dir",
            str(self.data_dir),
            "gitlab-executor",
            stage,
            *extra,
        )

    async def call(
        self,
        stage: str,
        env: Mapping[str, str],
        *extra: str,
        limit: float,
        cancel: trio.Event | None = None,
    ) -> StageResult:
        """Run one executor program; SIGTERM then SIGKILL after *limit* seconds or *cancel*."""
        argv = self.argv(stage, *extra)
        process = await trio.lowlevel.open_process(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out: list[bytes] = []
        err: list[bytes] = []
        cancelled = False
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None and process.stderr is not None
            nursery.start_soon(_collect, process.stdout, out)
            nursery.start_soon(_collect, process.stderr, err)
            with trio.move_on_after(limit):
                if cancel is None:
                    await process.wait()
                else:
                    async with trio.open_nursery() as race:

                        async def on_cancel() -> None:
                            await cancel.wait()
                            race.cancel_scope.cancel()

                        async def on_exit() -> None:
                            await process.wait()
                            race.cancel_scope.cancel()

                        race.start_soon(on_cancel)
                        race.start_soon(on_exit)
            if process.returncode is None:
                cancelled = True
                await self._terminate(process)
        code = process.returncode
        assert code is not None
        return StageResult(
            stage=extra[-1] if stage == "run" else stage,
            argv=argv,
            code=code,
            stdout=b"".join(out),
            stderr=b"".join(err),
            cancelled=cancelled,
        )

    async def _terminate(self, process: trio.Process) -> None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.timeouts.graceful_kill):
            await process.wait()
            return
        process.kill()
        with trio.move_on_after(self.timeouts.force_kill):
            await process.wait()

    def write_script(self, env: Mapping[str, str], stage: str, script: str) -> Path:
        """The script file of one sub-stage, as gitlab-runner writes it (0700, in TMPDIR)."""
        directory = Path(env["TMPDIR"]) / f"script-{stage}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "script."
        path.write_text(script)
        path.chmod(0o700)
        return path

    async def run_job(
        self,
        job_id: str,
        variables: Mapping[str, str],
        scripts: Mapping[str, str],
        *,
        default_script: str = "exit 0",
        cancel_stage: str = "",
        cancel: trio.Event | None = None,
        before_cleanup: trio.Event | None = None,
        release_cleanup: trio.Event | None = None,
    ) -> JobRun:
        """One job from config to cleanup, as gitlab-runner runs it.

        Args:
            job_id: ``CI_JOB_ID`` (added to *variables*).
            variables: the job's variables.
            scripts: the script of each sub-stage; others get *default_script*.
            cancel_stage: the sub-stage that *cancel* interrupts (gitlab-runner's cancel).
            before_cleanup: set once the stages are done, before ``cleanup`` runs...
            release_cleanup: ...which then waits for this event.
        """
        env = self.environment(job_id, {"CI_JOB_ID": job_id, **variables})
        run = JobRun()
        t = self.timeouts
        config = await self.call("config", env, limit=t.config)
        run.stages.append(config)
        if config.code != 0:
            run.outcome = "system_failure"
            return run
        run.config = json.loads(config.stdout)
        try:
            prepare = await self.call("prepare", env, limit=t.prepare)
            run.stages.append(prepare)
            if prepare.code != 0:
                run.outcome = "system_failure"
                return run
            run.outcome = await self._run_stages(
                env, run, scripts, default_script, cancel_stage=cancel_stage, cancel=cancel
            )
        finally:
            with trio.CancelScope(shield=True):
                if before_cleanup is not None:
                    before_cleanup.set()
                if release_cleanup is not None:
                    await release_cleanup.wait()
                run.stages.append(await self.call("cleanup", env, limit=t.cleanup))
        code_file = trio.Path(env["BUILD_EXIT_CODE_FILE"])
        if await code_file.exists():
            run.build_exit_code = int((await code_file.read_text()).strip())
        return run

    async def _run_stages(
        self,
        env: Mapping[str, str],
        run: JobRun,
        scripts: Mapping[str, str],
        default_script: str,
        *,
        cancel_stage: str,
        cancel: trio.Event | None,
    ) -> str:
        async def stage(name: str) -> str:
            script = self.write_script(env, name, scripts.get(name, default_script))
            result = await self.call(
                "run",
                env,
                str(script),
                name,
                limit=self.timeouts.run,
                cancel=cancel if name == cancel_stage else None,
            )
            run.stages.append(result)
            return result.kind

        for name in BEFORE_BUILD:
            kind = await stage(name)
            if kind != "ok":
                return kind
        outcome = await stage(BUILD)
        if outcome == "system_failure":
            return outcome
        for name in ON_SUCCESS if outcome == "ok" else ON_FAILURE:
            kind = await stage(name)
            if kind == "system_failure":
                return kind
        kind = await stage(LAST)
        if kind == "system_failure":
            return kind
        return "success" if outcome == "ok" else outcome


def job_payload(job_id: str, variables: Mapping[str, str]) -> dict[str, object]:
    """A job payload shaped like GitLab's ``POST jobs/request`` answer."""
    return {
        "id": int(job_id) if job_id.isdigit() else 0,
        "token": variables.get("CI_JOB_TOKEN", "job-token"),
        "allow_git_fetch": True,
        "job_info": {
            "name": variables.get("CI_JOB_NAME", ""),
            "stage": "test",
            "project_id": 1,
            "project_name": "app",
        },
        "variables": [
            {"key": key, "value": value, "public": True, "masked": False}
            for key, value in variables.items()
        ],
        "image": {"name": variables.get("CI_JOB_IMAGE", "")},
        "steps": [{"name": "script", "script": ["true"], "timeout": 3600, "when": "on_success"}],
    }


async def _collect(stream: trio.abc.ReceiveStream, into: list[bytes]) -> None:
    async with stream:
        while chunk := await stream.receive_some(65536):
            into.append(bytes(chunk))
