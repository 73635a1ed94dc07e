"""Runs one workflow job in one fresh sandbox, step by step, as a forge runner would.

The sandbox is started with a keep-alive process; each step is a script file exec'd inside
it, so steps share the workspace and the filesystem but nothing outlives the job.
"""

from __future__ import annotations

import enum
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Protocol

import msgspec
import trio

from ephemerd.capabilities import SandboxBackend, SandboxHandle, SandboxSpec

from ._workflow import Step, Workflow, WorkflowJob

__all__ = ["JobResult", "RunReporter", "StepOutcome", "StepResult", "run_job"]

WORKSPACE = "/workspace"
_STEPS_DIR = "/run/ephemerd/steps"
_KEEPALIVE = ("sleep", "infinity")
_DEFAULT_SHELL = (
    'if command -v bash >/dev/null 2>&1; then exec bash --noprofile --norc -eo pipefail "$0";'
    ' else exec sh -e "$0"; fi'
)
_SHELLS = {
    "bash": "bash --noprofile --norc -eo pipefail {0}",
    "sh": "sh -e {0}",
    "python": "python {0}",
}


class StepOutcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    SKIPPED = "skipped"


class StepResult(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    outcome: StepOutcome
    exit_code: int | None = None
    seconds: float = 0.0
    continued: bool = False  # failed, but continue-on-error kept the job going


class JobResult(msgspec.Struct, frozen=True, kw_only=True):
    succeeded: bool
    steps: tuple[StepResult, ...]
    seconds: float


class RunReporter(Protocol):
    """Receives the job's progress, for a live display."""

    def job_started(self, job: WorkflowJob, image: str) -> None: ...

    def step_started(self, index: int, step: Step) -> None: ...

    def step_output(self, index: int, stream: str, chunk: bytes) -> None: ...

    def step_finished(self, index: int, result: StepResult) -> None: ...

    def job_finished(self, result: JobResult) -> None: ...


async def run_job(
    workflow: Workflow,
    job: WorkflowJob,
    *,
    backend: SandboxBackend,
    image: str,
    repository: Path,
    scratch_dir: Path,
    reporter: RunReporter,
    network: str = "default",
    name: str | None = None,
) -> JobResult:
    """Run *job* in a fresh sandbox from *image* with a copy of *repository* as workspace.

    The job sees a copy, so nothing it writes reaches the repository.

    Cancellation: the sandbox is destroyed (shielded) before the cancellation propagates.
    """
    started = time.monotonic()
    reporter.job_started(job, image)
    with tempfile.TemporaryDirectory(prefix="run-", dir=scratch_dir) as scratch:
        workspace = Path(scratch) / "workspace"
        steps_dir = Path(scratch) / "steps"
        await trio.to_thread.run_sync(_copy_tree, repository, workspace)
        steps_dir.mkdir()
        spec = SandboxSpec(
            name=name or f"ephemerd-run-{int(time.time() * 1000) % 10**10}",
            image=image,
            argv=_KEEPALIVE,
            hostname=f"run-{job.key}"[:63],
            workdir=WORKSPACE,
            network=network,
            mounts={str(workspace): WORKSPACE, str(steps_dir): _STEPS_DIR},
            labels={"ephemerd.io/origin": "run"},
        )
        sandbox = await backend.create(spec)
        try:
            await sandbox.start()
            with trio.move_on_after(job.timeout or float("inf")):
                results = await _run_steps(workflow, job, sandbox, steps_dir, reporter)
                succeeded = all(
                    r.outcome is not StepOutcome.FAILURE or r.continued for r in results
                )
                result = JobResult(
                    succeeded=succeeded,
                    steps=tuple(results),
                    seconds=time.monotonic() - started,
                )
                reporter.job_finished(result)
                return result
            result = JobResult(succeeded=False, steps=(), seconds=time.monotonic() - started)
            reporter.job_finished(result)
            return result
        finally:
            with trio.CancelScope(shield=True):
                await sandbox.destroy()


async def _run_steps(
    workflow: Workflow,
    job: WorkflowJob,
    sandbox: SandboxHandle,
    steps_dir: Path,
    reporter: RunReporter,
) -> list[StepResult]:
    results: list[StepResult] = []
    failed = False
    for index, step in enumerate(job.steps):
        if not _should_run(step.condition, failed=failed):
            result = StepResult(name=step.name, outcome=StepOutcome.SKIPPED)
            reporter.step_finished(index, result)
            results.append(result)
            continue
        reporter.step_started(index, step)
        began = time.monotonic()
        script = steps_dir / f"step-{index}"
        script.write_text(step.run)
        env = {
            "CI": "true",
            "HOME": "/root",
            "RUNNER_OS": "Linux",
            "GITHUB_WORKSPACE": WORKSPACE,
            "GITHUB_JOB": job.key,
            "GITHUB_WORKFLOW": workflow.name,
            **workflow.env,
            **job.env,
            **step.env,
        }

        async def output(stream: str, chunk: bytes, index: int = index) -> None:
            reporter.step_output(index, stream, chunk)

        exit_code: int | None = None
        with trio.move_on_after(step.timeout or float("inf")):
            exit_code = await sandbox.exec(
                _argv(step.shell, f"{_STEPS_DIR}/step-{index}"),
                env=env,
                workdir=_workdir(step.working_directory),
                output=output,
            )
        ok = exit_code == 0
        result = StepResult(
            name=step.name,
            outcome=StepOutcome.SUCCESS if ok else StepOutcome.FAILURE,
            exit_code=exit_code,
            seconds=time.monotonic() - began,
            continued=not ok and step.continue_on_error,
        )
        if not ok and not step.continue_on_error:
            failed = True
        reporter.step_finished(index, result)
        results.append(result)
    return results


def _should_run(condition: str, *, failed: bool) -> bool:
    negated = condition.startswith("!")
    verdict = {
        "always": True,
        "success": not failed,
        "failure": failed,
        "cancelled": False,
    }[condition.lstrip("!")]
    return verdict != negated


def _argv(shell: str, script: str) -> tuple[str, ...]:
    if not shell:
        return ("sh", "-c", _DEFAULT_SHELL, script)
    template = _SHELLS.get(shell, shell)
    if "{0}" not in template:
        template += " {0}"
    return tuple(part.replace("{0}", script) for part in shlex.split(template))


def _workdir(directory: str) -> str:
    if not directory:
        return WORKSPACE
    if directory.startswith("/"):
        return directory
    return f"{WORKSPACE}/{directory}"


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)
