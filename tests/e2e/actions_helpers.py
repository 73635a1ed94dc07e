"""Pieces of the Forgejo/Gitea end-to-end tests and benchmark: the stand-in runner image,
a real ``ephemerd serve`` subprocess driven from Trio, and its config.

Reachability: the fake forge listens on host loopback (127.0.0.1:PORT). The daemon talks
to it there (``instance_url``). Sandboxes cannot reach the host's loopback, so the config
allow-lists ``127.0.0.1:PORT``, which the job network publishes on the bridge gateway
(``10.88.0.1:PORT``, a DNAT rule), and sets ``runner_url`` to that address: the URL the
provider hands the runner (``--url`` or the ``.runner`` file's address).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import trio

from ephemerd._proto.containerd.services.containers import v1 as containers_v1
from ephemerd._proto.containerd.services.leases import v1 as leases_v1
from ephemerd.sandbox import (
    DEFAULT_SUBNET,
    MANAGED_LABEL,
    ImageStore,
    build_host_image,
    host_python_paths,
    open_containerd,
)
from ephemerd.sandbox._runtime import SANDBOX_LABEL

RUNNER_DIR = Path(__file__).parent / "actions_runner"
"""The stand-in runner and its ``forgejo-runner`` / ``act_runner`` shims."""
STANDIN_IMAGE = "ephemerd.local/actions-standin:latest"
JOB_IMAGE = "ephemerd.local/actions-job:latest"
"""A job's own ``container:`` image: Python and a marker file, no runner in it."""
JOB_IMAGE_MARKER = "/etc/ephemerd-job-image"
GATEWAY = str(next(ipaddress.ip_network(DEFAULT_SUBNET).hosts()))


async def build_standin_image(data_dir: Path, address: str) -> None:
    """Build the stand-in image in the containerd at *address*."""
    async with open_containerd(data_dir=data_dir, address=address) as client:
        await build_standin_image_into(ImageStore(client), work_dir=data_dir / "tmp")


async def build_standin_image_into(images: ImageStore, *, work_dir: Path) -> None:
    """Busybox, the host's Python and the stand-in, with the shims first on PATH."""
    paths = await trio.to_thread.run_sync(host_python_paths)
    await build_host_image(
        images,
        STANDIN_IMAGE,
        extra_paths=[*paths, RUNNER_DIR],
        exclude=("__pycache__", "test", "tests", "idlelib", "tkinter", "ensurepip"),
        work_dir=work_dir,
        env=[f"PATH={RUNNER_DIR}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"],
    )


async def build_job_image(data_dir: Path, address: str) -> None:
    """Build ``JOB_IMAGE`` (without the stand-in) in the containerd at *address*."""
    paths = await trio.to_thread.run_sync(host_python_paths)
    async with open_containerd(data_dir=data_dir, address=address) as client:
        await build_host_image(
            ImageStore(client),
            JOB_IMAGE,
            extra_paths=paths,
            exclude=("__pycache__", "test", "tests", "idlelib", "tkinter", "ensurepip"),
            work_dir=data_dir / "tmp",
            files={JOB_IMAGE_MARKER: b"the job's own image\n"},
        )


async def sandboxes_left(data_dir: Path, address: str) -> list[str]:
    """Sandboxes (containers or leases) ephemerd made on the containerd at *address*."""
    async with open_containerd(data_dir=data_dir, address=address) as client:
        containers = await client.call(
            client.containers.list,
            containers_v1.ListContainersRequest(filters=[f'labels."{MANAGED_LABEL}"==true']),
        )
        leases = await client.call(
            client.leases.list, leases_v1.ListRequest(filters=[f'labels."{SANDBOX_LABEL}"'])
        )
    names = {c.labels.get(SANDBOX_LABEL, c.id) for c in containers.containers}
    names.update(lease.labels[SANDBOX_LABEL] for lease in leases.leases)
    return sorted(names)


def write_config(
    data_dir: Path,
    *,
    kind: str,
    port: int,
    registration_token: str,
    api_token: str,
    containerd_address: str,
    max_concurrent: int = 4,
    runner_path: str = "",
) -> Path:
    """A daemon config with one ``[kind]`` instance ``fj`` pointed at the fake on *port*."""
    path = data_dir / "config.toml"
    path.write_text(
        f"""
[sandbox]
containerd_address = "{containerd_address}"
allow = ["127.0.0.1:{port}"]

[runner]
max_concurrent = {max_concurrent}
shutdown_timeout = "3s"
teardown_timeout = "20s"

[[{kind}]]
name = "fj"
instance_url = "http://127.0.0.1:{port}"
runner_url = "http://{GATEWAY}:{port}"
token = "{registration_token}"
api_token = "{api_token}"
owner = "acme"
repos = ["app"]
labels = ["ubuntu-latest"]
runner_image = "{STANDIN_IMAGE}"
poll_interval = "1s"
"""
        + (f'runner_path = "{runner_path}"\n' if runner_path else "")
    )
    return path


class Daemon:
    """A real ``ephemerd serve`` subprocess; its log lines are collected as they come."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
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

    async def wait_for_log(self, text: str) -> str:
        await self.wait_until(lambda: any(text in line for line in self.lines), text)
        return next(line for line in self.lines if text in line)

    async def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        """Return once *predicate* holds, re-checked on every new log line."""
        while not predicate():
            if self.lines and self.lines[-1] == "<eof>":
                raise AssertionError(f"daemon ended before {what!r}:\n{self.log}")
            await self._changed.wait()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def stop(self) -> int:
        """SIGTERM, then the exit code (SIGKILL after 30 s)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(30):
            return await self.process.wait()
        self.process.kill()
        return await self.process.wait()


async def start_daemon(nursery: trio.Nursery, data_dir: Path) -> Daemon:
    """Start ``ephemerd serve`` on *data_dir* and return once it serves its provider."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "serve"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    daemon = Daemon(process)
    nursery.start_soon(daemon.read_log)
    await daemon.wait_for_log("serving 1 provider")
    return daemon


def unmount_files(data_dir: Path) -> None:
    subprocess.run(
        ["umount", "-l", str(data_dir / "run" / "files")], check=False, capture_output=True
    )
