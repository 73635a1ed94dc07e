"""containerd as a private, supervised child process (or an existing one, by address).

The embedded containerd gets its own root, state and socket under the data dir and a
generated config without the CRI plugin, so it never meets a host containerd. It is
started before anything else, polled until it answers, restarted with backoff if it
dies, and stopped last. Running sandboxes do not need it: their processes run under
runc directly (``_runc.py``), so a crash of containerd only delays new sandboxes.

The config keeps containerd's defaults where they cost a job little, as measured here:
the metadata and snapshot stores sync about 16 times per job (some 3 ms in all), and
the garbage collector runs about twice per job for 1 to 3 ms each, off the job's path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from ephemerd._aio import open_aio_loop
from ephemerd._errors import EphemerdError, RuntimeUnavailable
from ephemerd._proto.containerd.services.version import v1 as version_v1
from ephemerd._retry import Backoff, RetryPolicy

from ._client import NAMESPACE, ContainerdClient

__all__ = ["EmbeddedContainerd", "open_containerd", "render_config"]

log = logging.getLogger(__name__)

_DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)
_SOCKET_MAX = 100  # sun_path is 108 bytes; keep a margin for the ".ttrpc" suffix


def embedded_socket(data_dir: Path) -> Path:
    """Where the embedded containerd of *data_dir* listens (for a second client of it)."""
    return _socket_path(data_dir / "containerd")


def _socket_path(base: Path) -> Path:
    """``base/containerd.sock``, or a short path under /run when *base* is too deep."""
    path = base / "containerd.sock"
    if len(str(path)) + len(".ttrpc") <= _SOCKET_MAX:
        return path
    digest = hashlib.sha256(str(base).encode()).hexdigest()[:16]
    return Path("/run/ephemerd") / digest / "containerd.sock"


def render_config(*, root: Path, state: Path, socket: Path) -> str:
    """The containerd config (version 2) for a private instance."""
    disabled = ", ".join(f'"{p}"' for p in _DISABLED_PLUGINS)
    return (
        "version = 2\n"
        f'root = "{root}"\n'
        f'state = "{state}"\n'
        f"disabled_plugins = [{disabled}]\n"
        "oom_score = -500\n"
        "[grpc]\n"
        f'  address = "{socket}"\n'
        "  uid = 0\n  gid = 0\n"
        "[ttrpc]\n"
        f'  address = "{socket}.ttrpc"\n'
        "[debug]\n"
        '  level = "warn"\n'
        "[metrics]\n"
        '  address = ""\n'
    )


def _require_binaries() -> str:
    containerd = shutil.which("containerd")
    if containerd is None:
        raise RuntimeUnavailable(
            "containerd not found on PATH: install the Debian package 'containerd' "
            "(or set containerd_address to an existing containerd)"
        )
    return containerd


async def wait_ready(client: ContainerdClient, *, within: float) -> str:
    """Poll ``Version`` with a short backoff until containerd answers; return its version.

    Raises:
        RuntimeUnavailable: no answer within *within* seconds.
    """
    backoff = Backoff(RetryPolicy.exponential(first=0.005, cap=0.1, jitter=0.0))
    last: EphemerdError | None = None
    with trio.move_on_after(within):
        while True:
            try:
                reply = await client.call(
                    client.version.version,
                    version_v1.betterproto_lib_google_protobuf.Empty(),
                    rpc_timeout=1.0,
                )
            except EphemerdError as error:
                last = error
            else:
                return reply.version
            await trio.sleep(backoff.next_delay(trio.current_time()) or 0.1)
    raise RuntimeUnavailable(
        f"containerd at {client.address} did not answer within {within:g}s ({last})"
    )


class EmbeddedContainerd:
    """Runs and supervises one private containerd process.

    Attributes:
        socket: the gRPC socket path.
        restarts: how many times the process was restarted after dying.
        ready_seconds: how long the first start took until containerd answered.
    """

    def __init__(self, data_dir: Path, *, ready_timeout: float = 10.0) -> None:
        self.base = data_dir / "containerd"
        self.socket = _socket_path(self.base)
        self.config = self.base / "config.toml"
        self.log_file = self.base / "containerd.log"
        self.pid_file = self.base / "containerd.pid"
        self.restarts = 0
        self.ready_seconds = 0.0
        self._ready_timeout = ready_timeout
        self._binary = _require_binaries()
        self._process: trio.Process | None = None
        self._stopping = False
        self.restarted = trio.Event()
        """Set (and replaced) each time a restarted containerd answers again."""

    async def _prepare(self) -> None:
        for directory in (self.base / "root", self.base / "state", self.socket.parent):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config.write_text(
            render_config(root=self.base / "root", state=self.base / "state", socket=self.socket)
        )
        await self._kill_stale()

    def _stale_pids(self) -> list[int]:
        """containerd processes running our config: left by an ephemerd killed hard."""
        wanted = str(self.config).encode()
        found: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd") and wanted in argv:
                found.append(int(entry.name))
        return found

    async def _kill_stale(self) -> None:
        """Kill stale instances and wait until they are gone (they hold the metadata lock)."""
        for pid in self._stale_pids():
            log.warning("stopping a stale embedded containerd (pid %d)", pid)
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
                with trio.move_on_after(5):
                    await trio.lowlevel.wait_readable(pidfd)  # readable once it has exited
            finally:
                os.close(pidfd)

    async def _spawn(self) -> trio.Process:
        with self.log_file.open("ab") as out:
            process = await trio.lowlevel.open_process(
                [self._binary, "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        return process

    async def run(
        self,
        client: ContainerdClient,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start containerd, report ready, and restart it whenever it dies.

        Raises:
            RuntimeUnavailable: the first start did not answer in time.
        """
        await self._prepare()
        started = trio.current_time()
        self._process = await self._spawn()
        try:
            await wait_ready(client, within=self._ready_timeout)
        except RuntimeUnavailable:
            await self._terminate()
            raise RuntimeUnavailable(f"containerd did not start; see {self.log_file}") from None
        self.ready_seconds = trio.current_time() - started
        task_status.started()
        backoff = Backoff(RetryPolicy.exponential(first=0.1, cap=5.0))
        while True:
            code = await self._process.wait()
            if self._stopping:
                return
            log.error("embedded containerd exited with %s; restarting", code)
            delay = backoff.next_delay(trio.current_time()) or 1.0
            await trio.sleep(delay if self.restarts else 0)
            self._process = await self._spawn()
            self.restarts += 1
            try:
                await wait_ready(client, within=self._ready_timeout)
            except RuntimeUnavailable:
                log.error("restarted containerd does not answer; killing it and trying again")
                self._process.kill()
                continue
            backoff.reset()
            event, self.restarted = self.restarted, trio.Event()
            event.set()

    async def _terminate(self, grace: float = 10.0) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        self._stopping = True
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(grace):
            await process.wait()
            return
        process.kill()
        await process.wait()

    async def stop(self) -> None:
        """Stop containerd (SIGTERM, then SIGKILL after a grace period)."""
        self._stopping = True
        with trio.CancelScope(shield=True):
            await self._terminate()
        self.pid_file.unlink(missing_ok=True)


@asynccontextmanager
async def open_containerd(
    *,
    data_dir: Path,
    address: str | None = None,
    namespace: str = NAMESPACE,
    ready_timeout: float = 10.0,
) -> AsyncGenerator[ContainerdClient]:
    """Connect to containerd for the block's duration, starting a private one if needed.

    Args:
        data_dir: ephemerd's data dir; the embedded containerd lives in ``data_dir/containerd``.
        address: an existing containerd's socket; when given, nothing is started.
        namespace: the containerd namespace every object goes into.
        ready_timeout: how long to wait for containerd to answer.

    The yielded client has an ``embedded`` attribute: the ``EmbeddedContainerd``, or
    ``None`` for an external one.

    Raises:
        RuntimeUnavailable: containerd or runc is missing, or containerd does not answer.

    Cancellation: the embedded containerd is stopped (shielded) on the way out.
    """
    async with open_aio_loop():
        if address is not None:
            client = await ContainerdClient.connect(address, namespace=namespace)
            try:
                await wait_ready(client, within=ready_timeout)
                yield client
            finally:
                with trio.CancelScope(shield=True):
                    await client.aclose()
            return
        embedded = EmbeddedContainerd(data_dir, ready_timeout=ready_timeout)
        client = await ContainerdClient.connect(str(embedded.socket), namespace=namespace)
        client.embedded = embedded
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(embedded.run, client)
                try:
                    yield client
                finally:
                    await embedded.stop()
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()
