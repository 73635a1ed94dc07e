"""A real ``ephemerd serve`` against the fake GitHub, with real containerd sandboxes.

Shared by the end-to-end tests and ``bench/github_pickup.py``. The pieces:

* the stand-in runner image (``build_standin_image``): the host's busybox and bare Python,
  plus ``/home/runner/run.sh`` and ``standin.py`` where the actions runner keeps its
  ``run.sh``, so the GitHub provider's unchanged ``RUNNER_ENTRYPOINT`` starts it;
* the daemon as a subprocess of the test's Trio run (``open_daemon``), its log collected;
* the config tying them together (``write_config``).

How a sandbox reaches the fake GitHub: the fake listens on 127.0.0.1 only, which a
sandbox cannot reach (its own loopback is its own). ``[sandbox] allow =
["127.0.0.1:PORT"]`` publishes that host-loopback port on the job bridge's gateway address,
same port (a DNAT rule of ``ephemerd.sandbox._firewall``), so the fake hands its runners
``http://<gateway>:PORT`` as their server URL (``World.runner_url``). Webhooks go the other
way, from the fake to the daemon's intake on 127.0.0.1, like GitHub's hookshot does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Network
from pathlib import Path
from typing import TypeVar

import trio

from ephemerd._proto.containerd.services.containers import v1 as containers_v1
from ephemerd.sandbox import (
    DEFAULT_SUBNET,
    ImageStore,
    build_host_image,
    host_python_paths,
)
from ephemerd.sandbox._embedded import EmbeddedContainerd, open_containerd

__all__ = [
    "GATEWAY",
    "INSTANCE",
    "SECRET",
    "STANDIN_IMAGE",
    "TOKEN",
    "DaemonProcess",
    "build_standin_image",
    "containerd_leftovers",
    "free_port",
    "open_daemon",
    "write_config",
]

STANDIN_IMAGE = "ephemerd.local/github-standin:latest"
STANDIN_DIR = Path(__file__).parent / "standin"
GATEWAY = str(next(IPv4Network(DEFAULT_SUBNET).hosts()))
"""The job bridge's address: where sandboxes reach allow-listed host-loopback ports."""
INSTANCE = "github"
TOKEN = "ghp_e2e0000000000000000000000000000000000"
SECRET = "e2e-webhook-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _build(data_dir: Path) -> None:
    files = {
        "/home/runner/run.sh": (STANDIN_DIR / "run.sh").read_bytes(),
        "/home/runner/standin.py": (STANDIN_DIR / "standin.py").read_bytes(),
    }
    python = await trio.to_thread.run_sync(host_python_paths)
    async with open_containerd(data_dir=data_dir) as client:
        await build_host_image(
            ImageStore(client),
            STANDIN_IMAGE,
            extra_paths=python,
            exclude=("__pycache__", "test", "idlelib", "tkinter", "ensurepip"),
            work_dir=data_dir / "tmp",
            files=files,
        )


def build_standin_image(data_dir: Path) -> None:
    """Build the stand-in image in *data_dir*'s embedded containerd (started, then stopped).

    Blocking: call it from a synchronous fixture or before ``trio.run``.
    """
    trio.run(_build, data_dir)


def write_config(
    data_dir: Path,
    *,
    api_port: int,
    webhook_port: int,
    max_concurrent: int = 4,
    poll_interval: str = "10m",
) -> Path:
    """The daemon's config: one GitHub instance on the fake, containerd sandboxes."""
    path = data_dir / "config.toml"
    path.write_text(
        f"""
[[github]]
name = "{INSTANCE}"
owner = "acme"
repos = ["app"]
token = "{TOKEN}"
api_url = "http://127.0.0.1:{api_port}"
webhook_secret = "{SECRET}"
default_image = "{STANDIN_IMAGE}"
poll_interval = "{poll_interval}"

[runner]
max_concurrent = {max_concurrent}
shutdown_timeout = "30s"
teardown_timeout = "20s"
memory = "256MiB"
cpus = 1.0

[sandbox]
allow = ["127.0.0.1:{api_port}"]

[webhook]
listen = "127.0.0.1:{webhook_port}"
"""
    )
    path.chmod(0o600)
    return path


class DaemonProcess:
    """A running ``ephemerd serve``; ``lines`` is its log so far."""

    def __init__(self, process: trio.Process, data_dir: Path) -> None:
        self.process = process
        self.data_dir = data_dir
        self.lines: list[str] = []
        self._changed = trio.Event()

    async def read_log(self) -> None:
        assert self.process.stderr is not None
        pending = b""
        async for chunk in self.process.stderr:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in complete)
            self._changed.set()
            self._changed = trio.Event()
        self.lines.append("<eof>")
        self._changed.set()

    def log(self) -> str:
        return "\n".join(self.lines)

    def count(self, text: str) -> int:
        return sum(1 for line in self.lines if text in line)

    async def changed(self) -> None:
        """Wait for the next log line.

        Raises:
            AssertionError: the daemon has exited.
        """
        if self.lines and self.lines[-1] == "<eof>":
            raise AssertionError(f"daemon exited:\n{self.log()}")
        await self._changed.wait()

    async def wait_for_log(self, text: str, *, count: int = 1) -> None:
        """Wait until *text* was logged *count* times.

        Raises:
            AssertionError: the daemon exited first.
        """
        while self.count(text) < count:
            if self.lines and self.lines[-1] == "<eof>":
                raise AssertionError(f"daemon exited before logging {text!r}:\n{self.log()}")
            await self._changed.wait()

    async def stop(self, *, grace: float = 60.0) -> int:
        """SIGTERM (a drain), then SIGKILL after *grace* seconds; return the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(grace):
            return await self.process.wait()
        self.process.kill()
        return await self.process.wait()


D = TypeVar("D", bound=DaemonProcess)


@asynccontextmanager
async def open_daemon(
    data_dir: Path,
    *,
    ready: str = "serving 1 provider",
    ready_timeout: float = 60.0,
    kind: Callable[[trio.Process, Path], D] = DaemonProcess,
) -> AsyncGenerator[D]:
    """``ephemerd serve`` on *data_dir* (with its ``config.toml``) for the block, once it
    has logged *ready*; *kind* wraps the process (``DaemonProcess`` or a subclass).

    On a failure inside the block the daemon's whole log is printed (pytest shows it).

    Cancellation: the daemon is always stopped (drained, then killed), shielded.
    """
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "serve"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    daemon = kind(process, data_dir)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(daemon.read_log)
        try:
            with trio.fail_after(ready_timeout):
                await daemon.wait_for_log(ready)
            yield daemon
        except BaseException:
            print(f"daemon log:\n{daemon.log()}")
            raise
        finally:
            with trio.CancelScope(shield=True):
                await daemon.stop()


async def containerd_leftovers(data_dir: Path, *, running: bool) -> tuple[list[str], list[str]]:
    """Containers in the ephemerd namespace of *data_dir*'s embedded containerd, and the
    containers runc still holds state for (sandbox processes, running or stopped).

    *running*: connect to the daemon's running containerd; otherwise start it, look, stop it.
    """
    address = str(EmbeddedContainerd(data_dir).socket) if running else None
    async with open_containerd(data_dir=data_dir, address=address) as client:
        containers = await client.call(
            client.containers.list, containers_v1.ListContainersRequest()
        )
    return sorted(c.id for c in containers.containers), runc_states(data_dir)


def runc_states(data_dir: Path) -> list[str]:
    """The sandboxes runc holds state for under *data_dir*."""
    root = data_dir / "run" / "runc"
    return sorted(entry.name for entry in root.iterdir()) if root.is_dir() else []
