"""One sandbox: start, wait, kill, exec, stats, destroy.

Its processes run under runc directly (``_runc.py``). The main process's stdout and
stderr reach the job's log file through a pipe that ephemerd pumps (so a full disk is a
warning, not a lost job); an exec's output is streamed back through a pipe pair of its
own, chunk by chunk as it comes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal as signals
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
import trio

from ephemerd._errors import SandboxError, SandboxNotFound, lone_exception
from ephemerd._proto.containerd.types import Mount
from ephemerd.capabilities import ExitReason, OutputSink, SandboxExit, SandboxStats

from ._bundle import Bundle
from ._pipes import OutputPipes, log_sink
from ._runc import RuncProcess
from ._runtime import SandboxRuntime
from ._spec import build_process

__all__ = ["ContainerdHandle"]

log = logging.getLogger(__name__)

_OUTPUT_GRACE = 2.0  # after an exec exits, how long its background children may hold its output
_START_TIMEOUT = 30.0  # a start, shielded from cancellation, may take this long


class ContainerdHandle:
    """A created sandbox. See ``capabilities.SandboxHandle`` for the contract."""

    def __init__(
        self,
        runtime: SandboxRuntime,
        name: str,
        *,
        rootfs: Sequence[Mount],
        config: bytes,
        env: Mapping[str, str],
        workdir: str,
        leased: bool = False,
        unconnected: bool = False,
    ) -> None:
        self._rt = runtime
        self._leased = leased
        self._unconnected = unconnected  # its network namespace has no interfaces yet
        self._name = name
        self._rootfs = list(rootfs)
        self._config = config
        self._bundle = Bundle(runtime.bundles, name)
        self._env = dict(env)
        self._workdir = workdir
        self._killed = False
        self._destroyed = False
        self._main: RuncProcess | None = None
        self._exit: SandboxExit | None = None
        self._wait_lock = trio.Lock()
        self._log_done: trio.Event | None = None
        self._exec_ids = itertools.count(1)

    @property
    def name(self) -> str:
        return self._name

    @property
    def log_path(self) -> Path:
        return self._rt.log_dir / f"{self._name}.log"

    def _check(self) -> None:
        if self._destroyed:
            raise SandboxNotFound(f"sandbox {self._name} is destroyed")

    async def start(self) -> None:
        """Mount its root and start its process, with its output going to the log file.

        The root is mounted while its network namespace gets its interfaces; the process
        starts once both are done.

        Cancellation: a start under way runs to its end (shielded, at most 30 s), so a
        process started is always known and killed; ``destroy`` removes the rest.
        """
        self._check()
        if self._main is not None:
            raise SandboxError(f"sandbox {self._name} is already started")
        name = self._name
        try:
            os.close(os.open(self.log_path, os.O_WRONLY | os.O_CREAT, 0o640))  # even if silent
        except OSError as error:  # the job runs all the same; log_sink warns on writes
            log.warning("job log %s: %s", self.log_path, error.strerror or error)
        pipes = OutputPipes(("output",))
        try:
            try:
                async with trio.open_nursery() as nursery:
                    if self._unconnected and self._rt.network is not None:
                        nursery.start_soon(self._rt.network.connect, name)
                    self._bundle.create(self._rootfs, self._config)
            except BaseExceptionGroup as group:
                raise lone_exception(group) from None
            self._unconnected = False
            await trio.lowlevel.checkpoint_if_cancelled()
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + _START_TIMEOUT
                self._main = await self._rt.runc.run(name, self._bundle.path, output=pipes.writer())
                await self._rt.spawn(self._main.reap)
            if self._main is None:
                raise SandboxError(
                    f"sandbox {name}: runc did not start it within {_START_TIMEOUT} s"
                )
            pipes.release_writers()
            self._log_done = trio.Event()
            await self._rt.spawn(self._pump_log, pipes)
        except BaseException:
            pipes.close()
            with trio.CancelScope(shield=True):
                await self._rt.teardown_task(name)
            raise

    async def _pump_log(
        self, pipes: OutputPipes, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await pipes.pump(log_sink(self.log_path), task_status=task_status)
        finally:
            if self._log_done is not None:
                self._log_done.set()

    async def wait(self) -> SandboxExit:
        """Wait for the main process to end; ``LOST`` if its runc was killed.

        Cancellation: the wait stops; the process keeps running.
        """
        self._check()
        if self._main is None:
            raise SandboxError(f"sandbox {self._name} is not started")
        async with self._wait_lock:
            if self._exit is None:
                self._exit = self._classify(await self._main.wait())
                if self._log_done is not None:  # let the last output reach the log
                    with trio.move_on_after(_OUTPUT_GRACE):
                        await self._log_done.wait()
            return self._exit

    def _classify(self, status: int | None) -> SandboxExit:
        if status is None:
            log.warning("sandbox %s: its runc was killed; the exit status is lost", self._name)
            return SandboxExit(reason=ExitReason.LOST)
        # an OOM kill the job survived (exit 0) is not an OOM outcome
        if status != 0 and self._oom_killed():
            return SandboxExit(reason=ExitReason.OOM, exit_code=status)
        if self._killed:
            return SandboxExit(reason=ExitReason.KILLED, exit_code=status)
        return SandboxExit(reason=ExitReason.EXITED, exit_code=status)

    def _oom_killed(self) -> bool:
        """Whether the kernel OOM-killed anything in the sandbox's memory cgroup."""
        return self._rt.cgroups.oom_kills(self._name) > 0

    async def kill(self, signal: int = signals.SIGKILL) -> None:
        """Send *signal* to every process of the sandbox; its exit then reads ``KILLED``."""
        self._check()
        self._killed = True
        await self._rt.runc.kill(self._name, signal)

    async def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        output: OutputSink | None = None,
        stdin: bytes | None = None,
    ) -> int:
        """Run *argv* in the sandbox; stream its output to *output* (or the log file).

        *stdin*, when given, is fed to the process's standard input, then end-of-file.

        Raises:
            SandboxError: it could not be started (runc's own message), e.g. no such
                executable in the sandbox.

        Cancellation: the process is killed and reaped before this returns.
        """
        self._check()
        exec_id = f"exec-{next(self._exec_ids)}"
        process = build_process(
            argv, env={**self._env, **(env or {})}, cwd=workdir or self._workdir
        )
        bundle = self._bundle.path
        process_file = bundle / f"{exec_id}.json"
        pid_file = bundle / f"{exec_id}.pid"
        sink = output or log_sink(self.log_path)
        pipes = OutputPipes()
        feed: tuple[int, int] | None = os.pipe2(os.O_CLOEXEC) if stdin is not None else None
        running: RuncProcess | None = None
        exited = False
        try:
            process_file.write_bytes(msgspec.json.encode(process))
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + _START_TIMEOUT
                running = await self._rt.runc.exec(
                    self._name, process_file, pid_file=pid_file,
                    stdin=feed[0] if feed is not None else subprocess.DEVNULL,
                    stdout=pipes.writer(0), stderr=pipes.writer(1),
                )  # fmt: skip
            if running is None:
                raise SandboxError(f"sandbox {self._name}: runc did not start an exec in time")
            started = running
            pipes.release_writers()
            async with trio.open_nursery() as nursery:
                done = trio.Event()

                async def pump() -> None:
                    try:
                        await pipes.pump(sink)
                    finally:
                        done.set()

                nursery.start_soon(pump)
                if feed is not None and stdin is not None:
                    os.close(feed[0])
                    writer = trio.lowlevel.FdStream(feed[1])
                    feed = None
                    nursery.start_soon(_feed, writer, stdin)
                code = await started.wait()
                exited = True
                with trio.move_on_after(_OUTPUT_GRACE):
                    await done.wait()
                nursery.cancel_scope.cancel()
            if code is None:
                raise SandboxError(
                    f"sandbox {self._name}: runc was killed; the exit status is lost"
                )
            return code
        finally:
            with trio.CancelScope(shield=True):
                if running is not None:
                    await _end_exec(running, exited=exited)
                if feed is not None:
                    for fd in feed:
                        os.close(fd)
                pipes.close()
                for path in (process_file, pid_file, pid_file.with_suffix(".log")):
                    path.unlink(missing_ok=True)

    async def stats(self) -> SandboxStats:
        """Memory, CPU time and process count, read from the sandbox's cgroups."""
        self._check()
        return self._rt.cgroups.stats(self._name)

    async def destroy(self) -> None:
        """Remove the sandbox and everything it owns. Idempotent; shielded."""
        self._destroyed = True
        exited = self._exit is not None and self._exit.reason is not ExitReason.LOST
        await self._rt.teardown(self._name, exited=exited, leased=self._leased, views=self._leased)
        if self._main is not None:  # its runc ends with the processes teardown killed
            with trio.move_on_after(_OUTPUT_GRACE, shield=True):
                await self._main.wait()


async def _end_exec(running: RuncProcess, *, exited: bool) -> None:
    """Kill the exec's process unless it *exited*, then its runc, still passing on the
    output of anything the process left behind; reap it."""
    if not exited:
        with contextlib.suppress(ProcessLookupError):
            os.kill(running.pid, signals.SIGKILL)
    if running.process.poll() is None:
        running.process.kill()
    await running.process.wait()


async def _feed(writer: trio.lowlevel.FdStream, data: bytes) -> None:
    """Write *data* to a process's stdin, then close it (end-of-file)."""
    try:
        with contextlib.suppress(trio.BrokenResourceError):  # it stopped reading
            await writer.send_all(data)
    finally:
        with trio.CancelScope(shield=True):
            await writer.aclose()
