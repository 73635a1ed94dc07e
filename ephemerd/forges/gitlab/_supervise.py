"""Running gitlab-runner as a child of ephemerd, so one daemon is the whole GitLab runner.

gitlab-runner polls GitLab and calls ``ephemerd gitlab-executor`` for every job; ephemerd
keeps it alive: a child that dies is started again after a backoff (reset once it has run
for a while, so a crash loop never becomes a storm), and on cancellation it is stopped the
way gitlab-runner wants to be stopped: SIGQUIT lets running jobs finish, and only after
``stop_timeout`` does the whole process group get SIGKILL.

While the daemon is cordoned or draining (``RunnerSwitch`` off), gitlab-runner is sent
SIGQUIT too: it stops asking GitLab for jobs, so they go to runners that can take them
instead of failing here with a system failure, and it exits once its running jobs are
done. It is started again when the switch is turned back on.

Its output goes to the ``ephemerd.gitlab-runner`` logger, a line at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path

import trio

from ephemerd._errors import ConfigError
from ephemerd._retry import Backoff, RetryPolicy

from ._install import DEFAULT_STAGE_TIMEOUT, render_runner_block
from ._options import GitLabOptions

__all__ = [
    "RESTART_POLICY",
    "RunnerSwitch",
    "resolve_binary",
    "supervise_gitlab_runner",
    "write_runner_config",
]

log = logging.getLogger(__name__)
runner_log = logging.getLogger("ephemerd.gitlab-runner")

RESTART_POLICY = RetryPolicy.exponential(first=1.0, cap=60.0)
"""Delays between restarts: 1 s doubling to a minute, forever."""

_INSTALL_HINT = (
    "install the gitlab-runner package (https://docs.gitlab.com/runner/install/) "
    "or set the path of the gitlab-runner binary"
)
_MAX_LINE = 64 * 1024


class RunnerSwitch:
    """Whether the supervised gitlab-runner should be asking GitLab for jobs."""

    def __init__(self) -> None:
        self.on = True
        self._flipped = trio.Event()

    def set(self, on: bool) -> None:
        if on != self.on:
            self.on = on
            self._flipped.set()
            self._flipped = trio.Event()

    async def wait_for(self, on: bool) -> None:
        while self.on != on:
            await self._flipped.wait()


def write_runner_config(options: GitLabOptions) -> Path:
    """Write gitlab-runner's whole ``config.toml`` for a supervised runner; return its path.

    The file holds the runner token (gitlab-runner reads it from nowhere else), so it is
    written 0600 and replaced atomically.

    Raises:
        ConfigError: *options* has no ``supervise``, or the file cannot be written.
    """
    runner = options.supervise
    if runner is None:
        raise ConfigError(f"{options.name}: gitlab-runner is not supervised by ephemerd")
    block = render_runner_block(
        name=f"ephemerd-{options.name}",
        url=options.instance_url,
        token=options.token,
        ephemerd_executable=runner.ephemerd_executable,
        data_dir=runner.data_dir,
        config_path=runner.ephemerd_config,
        prepare_timeout=DEFAULT_STAGE_TIMEOUT,
        instance=options.name,
    )
    text = f"concurrent = {runner.concurrent}\ncheck_interval = 3\n\n{block}"
    path = runner.config_file
    partial = path.with_name(path.name + ".new")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(partial, path)
    except OSError as exc:
        raise ConfigError(f"cannot write gitlab-runner's config {path}: {exc.strerror}") from None
    return path


def resolve_binary(binary: str) -> str:
    """The absolute path of *binary* (a name looked up on ``PATH``, or a path).

    Raises:
        ConfigError: it is not there, or not executable.
    """
    if os.sep in binary:
        found = binary if os.access(binary, os.X_OK) and Path(binary).is_file() else None
    else:
        found = shutil.which(binary)
    if found is None:
        raise ConfigError(
            f"gitlab-runner binary {binary!r} not found or not executable: {_INSTALL_HINT}"
        )
    return str(Path(found).absolute())


async def supervise_gitlab_runner(
    *,
    binary: str,
    config_file: Path,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    stop_timeout: float = 30.0,
    restart: RetryPolicy = RESTART_POLICY,
    healthy_after: float = 60.0,
    switch: RunnerSwitch | None = None,
) -> None:
    """Run ``gitlab-runner run --config CONFIG_FILE`` until cancelled, restarting it.

    Args:
        binary: ``gitlab-runner`` (looked up on ``PATH``) or a path to it.
        config_file: gitlab-runner's ``config.toml`` (see ``render_runner_block``).
        task_status: ``started()`` once the first child is running.
        stop_timeout: seconds a SIGQUIT'ed gitlab-runner gets to finish its jobs.
        restart: delays between restarts.
        healthy_after: a child that ran this many seconds resets the restart ladder.
        switch: while off, gitlab-runner is asked to finish its jobs and stop, and is not
            restarted until it is on again.

    Raises:
        ConfigError: the binary or the config file is missing (before ``started()``).

    Cancellation: SIGQUIT, then SIGKILL to the process group after *stop_timeout*;
    returns only once the child is reaped.
    """
    path = resolve_binary(binary)
    if not await trio.Path(config_file).is_file():
        raise ConfigError(f"gitlab-runner config file {config_file} does not exist")
    argv = [path, "run", "--config", str(config_file)]
    backoff = Backoff(restart)
    switch = switch or RunnerSwitch()
    started = False
    while True:
        if started and not switch.on:
            await switch.wait_for(True)
            log.info("starting gitlab-runner again: the daemon takes jobs again")
        began = trio.current_time()
        try:
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # one group: SIGKILL reaches the stages it spawned
            )
        except OSError as exc:
            if not started:
                raise ConfigError(f"cannot start {path}: {exc.strerror}: {_INSTALL_HINT}") from None
            log.error("cannot start %s: %s", path, exc.strerror)
            status: int | None = None
        else:
            if not started:
                started = True
                task_status.started()
            log.info("gitlab-runner started (pid %d)", process.pid)
            status = await _run(process, stop_timeout, switch)
            if not switch.on:
                log.info("gitlab-runner stopped (%s): the daemon is cordoned", _describe(status))
                backoff.reset()
                continue
        now = trio.current_time()
        if now - began >= healthy_after:
            backoff.reset()
        delay = backoff.next_delay(now) or restart.schedule[-1]
        log.warning(
            "gitlab-runner exited (%s); restarting in %.1fs",
            "status unknown" if status is None else _describe(status),
            delay,
        )
        await trio.sleep(delay)


async def _run(process: trio.Process, stop_timeout: float, switch: RunnerSwitch) -> int:
    """Wait for *process*, logging its output; SIGQUIT it when *switch* goes off; stop it
    if cancelled."""
    async with trio.open_nursery() as nursery:
        if process.stdout is not None:
            nursery.start_soon(_pump, process.stdout)
        nursery.start_soon(_quit_when_off, process, switch)
        try:
            await process.wait()
        finally:
            if process.returncode is None:
                with trio.CancelScope(shield=True):
                    await _stop(process, stop_timeout)
        # A stage that outlived gitlab-runner may hold the pipe open; do not wait for it.
        nursery.cancel_scope.cancel()
    status = process.returncode
    assert status is not None  # reaped above
    return status


async def _quit_when_off(process: trio.Process, switch: RunnerSwitch) -> None:
    await switch.wait_for(False)
    log.info(
        "daemon cordoned: gitlab-runner (pid %d) stops taking jobs and exits after its own",
        process.pid,
    )
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGQUIT)


async def _stop(process: trio.Process, stop_timeout: float) -> None:
    log.info("stopping gitlab-runner (pid %d) gracefully", process.pid)
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGQUIT)
    with trio.move_on_after(stop_timeout):
        await process.wait()
        return
    log.warning("gitlab-runner did not stop within %gs; killing it", stop_timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


async def _pump(stream: trio.abc.ReceiveStream) -> None:
    buffer = b""
    async with stream:
        while chunk := await stream.receive_some():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                _emit(line)
            if len(buffer) > _MAX_LINE:
                _emit(buffer)
                buffer = b""
    if buffer:
        _emit(buffer)


def _emit(line: bytes) -> None:
    text = line.decode(errors="replace").rstrip()
    if text:
        runner_log.info("%s", text)


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"status {status}"
