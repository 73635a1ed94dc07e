"""One GitLab job between ``prepare`` and ``cleanup``: its request, sandbox and stages.

The job's sandbox belongs to the scheduler; this object only lends it to the run stages
while the provider's ``drive_job`` holds it. When ``drive_job`` ends (cleanup, the
sandbox died, the job was killed or timed out), every stage still running is cancelled
(which kills its process inside the sandbox) and later stages are refused.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
from collections.abc import Sequence

import trio

from ephemerd._errors import EphemerdError, JobNotFound, SandboxError
from ephemerd.capabilities import ExecutorRequest, OutputSink, SandboxHandle

__all__ = ["REAP_ARGV", "GitLabJob", "image_allowed", "runner_tags"]

log = logging.getLogger("ephemerd.forges.gitlab")

REAP_ARGV = ("sh", "-c", "kill -9 -1")
REAP_TIMEOUT = 10.0

# Sub-stages whose failure is the job's failure (the rest run on failure too).
_BUILD_STAGES = ("build_script", "step_")


def runner_tags(variables: dict[str, str]) -> tuple[str, ...]:
    """The runner's tags from ``CI_RUNNER_TAGS`` (a JSON list, or comma-separated)."""
    raw = variables.get("CI_RUNNER_TAGS", "").strip()
    if not raw:
        return ()
    try:
        parsed: object = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or absurdly deep JSON
        parsed = raw.split(",")
    if not isinstance(parsed, list):
        return ()
    items: list[object] = list(parsed)  # pyright: ignore[reportUnknownArgumentType]
    return tuple(str(tag).strip() for tag in items if str(tag).strip())


def image_allowed(image: str, patterns: Sequence[str]) -> bool:
    """Whether *image* matches one of the glob *patterns* (none means any image)."""
    return not patterns or any(fnmatch.fnmatchcase(image, p) for p in patterns)


class GitLabJob:
    """The executor's side of one job; the provider keeps one per prepared job."""

    def __init__(self, request: ExecutorRequest, *, image: str) -> None:
        self.request = request
        self.image = image
        self.handle: SandboxHandle | None = None
        self.cleanup = trio.Event()  # gitlab-runner called cleanup
        self.closed = ""  # why stages can no longer run; "" while they can
        self.exit_code = 0  # the first failing build stage's exit code
        self.cut_short = ""  # the stage gitlab-runner cancelled (SIGTERM to ``run``), if any
        self._stages: set[trio.CancelScope] = set()
        # One stage at a time, as gitlab-runner runs them: a stage cut short is reaped
        # before the next one starts.
        self._one_at_a_time = trio.Lock()

    @property
    def id(self) -> str:
        return self.request.job_id

    def close(self, why: str) -> None:
        """Refuse further stages and cancel the running ones."""
        self.closed = self.closed or why
        for scope in self._stages:
            scope.cancel()

    async def run(
        self, script: bytes, stage: str, output: OutputSink, *, shell: Sequence[str]
    ) -> int:
        """Feed *script* to *shell* in the sandbox; the script's exit code.

        Raises:
            JobNotFound: the sandbox is not running yet (or any more).
            SandboxError: the job ended while the stage ran, or the sandbox failed.
        Cancellation: the process inside the sandbox is killed first (``exec`` does it).
        """
        handle = self.handle
        if handle is None or self.closed:
            why = self.closed or "its sandbox is not running"
            raise JobNotFound(f"gitlab job {self.id}: {why}")
        tee = _tee(output, handle)
        code = -1
        done = False
        with trio.CancelScope() as scope:
            self._stages.add(scope)
            try:
                async with self._one_at_a_time:
                    try:
                        code = await handle.exec(shell, output=tee, stdin=_ending_with_exit(script))
                        done = True
                    finally:
                        if not done:
                            if not self.closed and not scope.cancel_called:
                                self.cut_short = self.cut_short or stage  # the caller left
                            await _reap(handle)
            finally:
                self._stages.discard(scope)
        if scope.cancelled_caught:
            raise SandboxError(f"gitlab job {self.id}: {self.closed or 'stopped'} during {stage}")
        if code and not self.exit_code and stage.startswith(_BUILD_STAGES):
            self.exit_code = code
        log.debug("gitlab job %s: %s exited %d", self.id, stage, code)
        return code


def _ending_with_exit(script: bytes) -> bytes:
    """*script*, made to end the shell itself rather than wait for the end of its stdin.

    A stage must not depend on end-of-file reaching the shell: when execs went through
    containerd 1.6's runc shim, it now and then never passed it on (2 stuck shells in
    about 17,000 execs), which hung the stage until gitlab-runner's timeout.
    """
    if script and not script.endswith(b"\n"):
        script += b"\n"
    return script + b"exit $?\n"


async def _reap(handle: SandboxHandle) -> None:
    """Kill what a cut-short stage left running: ``exec`` kills the shell, not its children.

    ``kill -9 -1`` inside the sandbox reaches every process but the sandbox's init (the
    keep-alive) and itself; stages run one at a time, so nothing else is lost. Shielded
    and bounded; a sandbox already gone is fine.
    """
    with trio.move_on_after(REAP_TIMEOUT, shield=True):
        with contextlib.suppress(EphemerdError):
            await handle.exec(REAP_ARGV, output=_discard)


async def _discard(stream: str, chunk: bytes) -> None:
    del stream, chunk
    await trio.lowlevel.checkpoint()


def _tee(output: OutputSink, handle: SandboxHandle) -> OutputSink:
    """*output*, with every chunk also appended to the job's log (``ephemerd jobs logs``)."""
    path = handle.log_path

    async def write(stream: str, chunk: bytes) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, chunk)
            finally:
                os.close(fd)
        except OSError:
            pass  # the log is a copy; the stage's output still reaches gitlab-runner
        await output(stream, chunk)

    return write
