"""Real ``ephemerd serve`` subprocesses for the reliability tests, and what they need.

Each daemon gets its own data dir and, with containerd sandboxes, its own job network
(``[sandbox] network_name``/``subnet``), so these tests run beside other ephemerds on the
host. Jobs come from the in-memory provider (fed over the daemon's webhook route) or from
a fake forge; containerd sandboxes start from the host's busybox image, stored under the
memory provider's default image name so no pull is needed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import trio

from ephemerd.capabilities import JobState
from ephemerd.control import open_control_client
from ephemerd.sandbox import ImageStore, build_host_image, open_containerd
from tests.daemon.conftest import SECRET, Daemon, free_port
from tests.e2e.harness import DaemonProcess, open_daemon

__all__ = [
    "MEMORY_IMAGE",
    "SECRET",
    "Daemon",
    "DaemonProcess",
    "TimedDaemon",
    "build_memory_image",
    "config_text",
    "free_port",
    "kill_hard",
    "open_daemon_async",
    "start_daemon",
    "unmount_files",
    "wait_running",
]

MEMORY_IMAGE = "memory/runner:latest"


def build_memory_image(data_dir: Path) -> None:
    """Store the busybox image as the memory provider's default image in *data_dir*."""

    async def build() -> None:
        async with open_containerd(data_dir=data_dir) as client:
            await build_host_image(ImageStore(client), MEMORY_IMAGE, work_dir=data_dir / "tmp")

    trio.run(build)


def config_text(
    *,
    port: int,
    backend: str = "containerd",
    network_name: str = "",
    subnet: str = "",
    allow: tuple[str, ...] = (),
    max_concurrent: int = 2,
    log_dir: str = "",
    memory: bool = True,
    extra: str = "",
) -> str:
    """A daemon config: the memory provider ``mem`` (unless not *memory*) plus *extra*."""
    sandbox = [f'backend = "{backend}"']
    if network_name:
        sandbox.append(f'network_name = "{network_name}"')
    if subnet:
        sandbox.append(f'subnet = "{subnet}"')
    if allow:
        sandbox.append("allow = [" + ", ".join(f'"{a}"' for a in allow) + "]")
    if log_dir:
        sandbox.append(f'log_dir = "{log_dir}"')
    provider = f'[[memory]]\nname = "mem"\nsecret = "{SECRET}"\n' if memory else ""
    return f"""
{provider}
[sandbox]
{chr(10).join(sandbox)}

[runner]
max_concurrent = {max_concurrent}
shutdown_timeout = "60s"
teardown_timeout = "20s"
memory = "64MiB"
cpus = 0.5

[webhook]
listen = "127.0.0.1:{port}"
{extra}
"""


def start_daemon(data_dir: Path, port: int, *, ready: str | None = "serving ") -> Daemon:
    """``ephemerd serve`` on *data_dir*; waits for the *ready* log line (``None``: don't)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "serve"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    daemon = Daemon(data_dir, port, process)
    if ready is not None:
        try:
            daemon.wait_for_log(ready, timeout=90)
        except AssertionError:
            daemon.stop(timeout=10)
            raise
    return daemon


def kill_hard(daemon: Daemon) -> None:
    """SIGKILL the daemon process alone (its containerd and runc processes are left running)."""
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(10)
    daemon.close()


def unmount_files(data_dir: Path) -> None:
    """Undo the credentials tmpfs a daemon killed hard leaves mounted."""
    subprocess.run(["umount", "-l", str(data_dir / "run" / "files")], check=False)


class TimedDaemon(DaemonProcess):
    """A ``DaemonProcess`` that also notes when (Trio time) each log line arrived."""

    def __init__(self, process: trio.Process, data_dir: Path) -> None:
        super().__init__(process, data_dir)
        self.spawned = trio.current_time()
        self.arrivals: list[float] = []

    async def read_log(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(super().read_log)
            while True:
                await self._changed.wait()
                self.arrivals += [trio.current_time()] * (len(self.lines) - len(self.arrivals))
                if self.lines and self.lines[-1] == "<eof>":
                    return

    def seen_at(self, text: str, *, count: int = 1) -> float:
        """Seconds from spawn until the *count*-th line containing *text* arrived."""
        hits = [t for line, t in zip(self.lines, self.arrivals, strict=False) if text in line]
        return hits[count - 1] - self.spawned


def open_daemon_async(
    data_dir: Path, *, ready: str = "serving ", ready_timeout: float = 90.0
) -> AbstractAsyncContextManager[TimedDaemon]:
    """``ephemerd serve`` on *data_dir* as a child of the test's Trio run (for tests that
    also serve a fake forge in-process), timing its log lines; see ``open_daemon``."""
    return open_daemon(data_dir, ready=ready, ready_timeout=ready_timeout, kind=TimedDaemon)


async def wait_running(data_dir: Path, count: int) -> set[str]:
    """Follow the watch stream until *count* jobs are running; their ids."""
    running: set[str] = set()
    async with (
        open_control_client(data_dir / "ephemerd.sock") as client,
        client.watch_jobs() as updates,
    ):
        async for update in updates:
            for change in update.changes:
                if change.job.state is JobState.RUNNING:
                    running.add(change.job.key.job_id)
            if len(running) >= count:
                return running
    raise AssertionError("the watch stream ended early")
