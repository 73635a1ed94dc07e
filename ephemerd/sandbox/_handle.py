"""One containerd sandbox: start, wait, kill, exec, stats, destroy.

The main process's stdout and stderr reach the job's log file through a FIFO pair that
ephemerd pumps (so a full disk is a warning, not a lost job); an exec's output is
streamed back through a FIFO pair of its own, chunk by chunk as it comes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal as signals
from collections.abc import Mapping, Sequence
from pathlib import Path

import betterproto.lib.google.protobuf as pb
import msgspec
import trio

from ephemerd._errors import (
    EphemerdError,
    RuntimeUnavailable,
    SandboxError,
    SandboxNotFound,
    lone_exception,
)
from ephemerd._proto.containerd.services.tasks import v1 as tasks_v1
from ephemerd._proto.containerd.types import Mount
from ephemerd.capabilities import ExitReason, OutputSink, SandboxExit, SandboxStats

from ._pipes import FifoPair, log_sink
from ._runtime import SandboxRuntime
from ._spec import build_process
from ._stdin import StdinFifo

__all__ = ["PROCESS_TYPE_URL", "ContainerdHandle"]

log = logging.getLogger(__name__)

PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
_OUTPUT_GRACE = 2.0  # after an exec exits, how long its background children may hold its output
_CREATE_TIMEOUT = 30.0  # a task create, shielded from cancellation, may take this long


class ContainerdHandle:
    """A created sandbox. See ``capabilities.SandboxHandle`` for the contract."""

    def __init__(
        self,
        runtime: SandboxRuntime,
        name: str,
        *,
        rootfs: Sequence[Mount],
        env: Mapping[str, str],
        workdir: str,
        leased: bool = False,
        unconnected: bool = False,
    ) -> None:
        self._rt = runtime
        self._leased = leased
        self._unconnected = unconnected  # its network namespace has no interfaces yet
        self._task_created = False
        self._name = name
        self._rootfs = list(rootfs)
        self._env = dict(env)
        self._workdir = workdir
        self._killed = False
        self._destroyed = False
        self._exit: SandboxExit | None = None
        self._wait_lock = trio.Lock()
        self._log_done: trio.Event | None = None
        self._exec_ids = itertools.count(1)  # exec ids are per container

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
        """Create the task, with its output going to the log file, and start it.

        The task is created while its network namespace gets its interfaces; the process
        starts once both are done.

        Cancellation: the create RPC runs to its end (shielded, at most 30 s), so a task
        created is always known and deleted; ``destroy`` removes the rest.
        """
        self._check()
        client, name = self._rt.client, self._name
        try:
            os.close(os.open(self.log_path, os.O_WRONLY | os.O_CREAT, 0o640))  # even if silent
        except OSError as error:  # the job runs all the same; log_sink warns on writes
            log.warning("job log %s: %s", self.log_path, error.strerror or error)
        fifos = FifoPair(self._rt.fifo_dir / f"{name}@main")
        try:
            try:
                async with trio.open_nursery() as nursery:
                    if self._unconnected and self._rt.network is not None:
                        nursery.start_soon(self._rt.network.connect, name)
                    await self._create_task(fifos)
            except BaseExceptionGroup as group:
                raise lone_exception(group) from None
            self._unconnected = False
            await trio.lowlevel.checkpoint_if_cancelled()
            self._log_done = trio.Event()
            await self._rt.spawn(self._pump_log, fifos)
            await client.call(client.tasks.start, tasks_v1.StartRequest(container_id=name))
            fifos.release_writers()
        except BaseException:
            fifos.release_writers()
            if self._task_created:
                with trio.CancelScope(shield=True):
                    await self._rt.teardown_task(name)
            if self._log_done is None:
                fifos.close()
            raise

    async def _create_task(self, fifos: FifoPair) -> None:
        client = self._rt.client
        # Shielded: containerd finishes a create whose caller went away, and a task
        # nobody knows of (its shim waiting in "runc init") would outlive the teardown.
        with trio.CancelScope(shield=True):
            await client.call(
                client.tasks.create,
                tasks_v1.CreateTaskRequest(
                    container_id=self._name,
                    rootfs=self._rootfs,
                    stdout=fifos.stdout,
                    stderr=fifos.stderr,
                ),
                rpc_timeout=_CREATE_TIMEOUT,
            )
        self._task_created = True

    async def _pump_log(
        self, fifos: FifoPair, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await fifos.pump(log_sink(self.log_path), task_status=task_status)
        finally:
            if self._log_done is not None:
                self._log_done.set()

    async def wait(self) -> SandboxExit:
        """Wait for the main process to end; ``LOST`` if containerd lost it.

        Cancellation: the wait stops; the process keeps running.
        """
        self._check()
        async with self._wait_lock:
            if self._exit is None:
                self._exit = await self._wait_exit()
                if self._log_done is not None:  # let the last output reach the log
                    with trio.move_on_after(_OUTPUT_GRACE):
                        await self._log_done.wait()
            return self._exit

    async def _wait_exit(self) -> SandboxExit:
        client, name = self._rt.client, self._name
        while True:
            try:
                reply = await client.call(
                    client.tasks.wait, tasks_v1.WaitRequest(container_id=name), rpc_timeout=None
                )
            except SandboxNotFound:
                return SandboxExit(reason=ExitReason.LOST)
            except RuntimeUnavailable:
                if not await self._rt.wait_containerd():
                    return SandboxExit(reason=ExitReason.LOST)
                continue
            except SandboxError as error:  # e.g. its shim died: the exit status is gone
                log.warning("sandbox %s: lost its task: %s", name, error)
                return SandboxExit(reason=ExitReason.LOST)
            return self._classify(reply.exit_status)

    def _classify(self, status: int) -> SandboxExit:
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
        client = self._rt.client
        await client.call(
            client.tasks.kill,
            tasks_v1.KillRequest(container_id=self._name, signal=signal, all=True),
        )

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

        Cancellation: the process is killed and reaped before this returns.
        """
        self._check()
        client, name = self._rt.client, self._name
        exec_id = f"exec-{next(self._exec_ids)}"
        process = build_process(
            argv, env={**self._env, **(env or {})}, cwd=workdir or self._workdir
        )
        spec = pb.Any(type_url=PROCESS_TYPE_URL, value=msgspec.json.encode(process))
        fifos = FifoPair(self._rt.fifo_dir / f"{name}@{exec_id}")
        sink = output or log_sink(self.log_path)
        feeder: StdinFifo | None = None
        exited = False
        started = False
        try:
            if stdin is not None:
                feeder = StdinFifo(fifos.directory / "in", stdin)
            await client.call(
                client.tasks.exec,
                tasks_v1.ExecProcessRequest(
                    container_id=name,
                    exec_id=exec_id,
                    stdin=feeder.path if feeder is not None else "",
                    stdout=fifos.stdout,
                    stderr=fifos.stderr,
                    spec=spec,
                ),
            )
            async with trio.open_nursery() as nursery:
                done = trio.Event()

                async def pump() -> None:
                    try:
                        await fifos.pump(sink)
                    finally:
                        done.set()

                nursery.start_soon(pump)
                started = True  # from here on it may run, even if Start is cancelled
                await client.call(
                    client.tasks.start, tasks_v1.StartRequest(container_id=name, exec_id=exec_id)
                )
                fifos.release_writers()
                if feeder is not None:
                    nursery.start_soon(self._feed_stdin, feeder, exec_id)
                code = await self._wait_exec(exec_id)
                exited = True
                with trio.move_on_after(_OUTPUT_GRACE):
                    await done.wait()
                nursery.cancel_scope.cancel()
            return code
        finally:
            with trio.CancelScope(shield=True):
                if started and not exited:
                    await self._kill_exec(exec_id)
                with contextlib.suppress(EphemerdError):
                    await client.call(
                        client.tasks.delete_process,
                        tasks_v1.DeleteProcessRequest(container_id=name, exec_id=exec_id),
                    )
                if feeder is not None:
                    feeder.close()
                fifos.close()

    async def _feed_stdin(self, feeder: StdinFifo, exec_id: str) -> None:
        """Write the exec's stdin, then CloseIO: the shim holds a write end of the FIFO
        itself, so the process sees end-of-file only once it is told to close it."""
        await feeder.feed()
        client = self._rt.client
        with contextlib.suppress(EphemerdError):  # the process may be gone already
            await client.call(
                client.tasks.close_io,
                tasks_v1.CloseIoRequest(container_id=self._name, exec_id=exec_id, stdin=True),
            )

    async def _wait_exec(self, exec_id: str) -> int:
        client = self._rt.client
        reply = await client.call(
            client.tasks.wait,
            tasks_v1.WaitRequest(container_id=self._name, exec_id=exec_id),
            rpc_timeout=None,
        )
        return reply.exit_status

    async def _kill_exec(self, exec_id: str) -> None:
        client = self._rt.client
        with trio.move_on_after(10):
            try:
                await client.call(
                    client.tasks.kill,
                    tasks_v1.KillRequest(
                        container_id=self._name, exec_id=exec_id, signal=signals.SIGKILL
                    ),
                )
                await self._wait_exec(exec_id)
            except EphemerdError:
                pass

    async def stats(self) -> SandboxStats:
        """Memory, CPU time and process count, read from the sandbox's cgroups."""
        self._check()
        return self._rt.cgroups.stats(self._name)

    async def destroy(self) -> None:
        """Remove the sandbox and everything it owns. Idempotent; shielded."""
        self._destroyed = True
        exited = self._exit is not None and self._exit.reason is not ExitReason.LOST
        await self._rt.teardown(self._name, exited=exited, leased=self._leased, views=self._leased)
