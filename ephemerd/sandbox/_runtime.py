"""What every sandbox of one backend shares, and the one teardown path they all use.

Every object a sandbox owns is named after it, so teardown needs only the name: the
task and container ``<name>``, the snapshot ``<name>``, the lease
``ephemerd-sandbox-<name>``, the credentials directory, the exec FIFOs and the network
attachment. Teardown removes each of them, ignoring what is already gone, so it is
idempotent and works for a half-created sandbox and for an orphan of a previous run.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import trio

from ephemerd._errors import EphemerdError, SandboxError, SandboxNotFound
from ephemerd._proto.containerd.services.containers import v1 as containers_v1
from ephemerd._proto.containerd.services.leases import v1 as leases_v1
from ephemerd._proto.containerd.services.snapshots import v1 as snapshots_v1
from ephemerd._proto.containerd.services.tasks import v1 as tasks_v1

from ._cgroups import CgroupReader
from ._client import SNAPSHOTTER, ContainerdClient
from ._files import SecretFiles

__all__ = [
    "SANDBOX_LABEL",
    "NetworkAttacher",
    "SandboxRuntime",
    "check_name",
    "lease_id",
]

log = logging.getLogger(__name__)

SANDBOX_LABEL = "ephemerd.io/sandbox"
_NAME_RE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
_NAME_MAX = 76
TEARDOWN_TIMEOUT = 30.0


@runtime_checkable
class NetworkAttacher(Protocol):
    """Gives a sandbox its network namespace (``_network.py`` implements it)."""

    async def attach(self, name: str) -> str:
        """Create sandbox *name*'s network; return the path of its network namespace."""
        ...

    async def detach(self, name: str) -> None:
        """Remove sandbox *name*'s network. Idempotent."""
        ...

    def resolv_conf(self) -> bytes:
        """The ``/etc/resolv.conf`` every attached sandbox gets."""
        ...


def check_name(name: str) -> None:
    """Raises ``SandboxError`` unless *name* is a valid containerd id."""
    if len(name) > _NAME_MAX or not _NAME_RE.fullmatch(name):
        raise SandboxError(
            f"invalid sandbox name {name!r}: use [A-Za-z0-9] runs joined by single '.', '_' "
            f"or '-', at most {_NAME_MAX} characters"
        )


def lease_id(name: str) -> str:
    return f"ephemerd-sandbox-{name}"


class SandboxRuntime:
    """The shared parts: containerd, directories, credentials tmpfs, network hook."""

    def __init__(
        self,
        client: ContainerdClient,
        *,
        data_dir: Path,
        network: NetworkAttacher | None,
        runtime: str = "io.containerd.runc.v2",
    ) -> None:
        self.client = client
        self.network = network
        self.runtime = runtime
        self.log_dir = data_dir / "logs"
        self.fifo_dir = data_dir / "run" / "fifo"
        self.files = SecretFiles(data_dir / "run" / "files")
        self.cgroups = CgroupReader()
        self.nursery: trio.Nursery | None = None
        """Runs the log pumps of started sandboxes; set by ``open_sandbox_backend``."""

    async def spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Start a background task (``nursery.start`` style) that outlives the caller."""
        if self.nursery is None:
            raise SandboxError("the sandbox backend is closed")
        await self.nursery.start(fn, *args)

    def prepare(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.fifo_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.files.mount()

    async def teardown(self, name: str, *, exited: bool = False) -> None:
        """Remove everything sandbox *name* owns; idempotent.

        Args:
            name: the sandbox.
            exited: its task is known to have exited, so there is nothing to kill.

        Cancellation: runs shielded, for at most ``TEARDOWN_TIMEOUT`` seconds.
        """
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + TEARDOWN_TIMEOUT
            await self._teardown(name, exited=exited)
        if scope.cancelled_caught:
            log.error("teardown of sandbox %s timed out; it is left for the next sweep", name)

    async def wait_containerd(self, *, within: float = 60.0) -> bool:
        """After a dropped connection: wait until containerd answers again (restarted)."""
        from ._embedded import wait_ready

        try:
            await wait_ready(self.client, within=within)
        except EphemerdError:
            return False
        return True

    async def teardown_task(self, name: str, *, exited: bool = False) -> None:
        """Kill and delete sandbox *name*'s task only (it can be started again)."""
        client = self.client
        if not exited:
            await _quiet(
                client.call(
                    client.tasks.kill,
                    tasks_v1.KillRequest(container_id=name, signal=signal.SIGKILL, all=True),
                )
            )
            with contextlib.suppress(EphemerdError):
                await client.call(
                    client.tasks.wait, tasks_v1.WaitRequest(container_id=name), rpc_timeout=10.0
                )
        await _quiet(
            client.call(client.tasks.delete, tasks_v1.DeleteTaskRequest(container_id=name))
        )

    async def _teardown(self, name: str, *, exited: bool) -> None:
        client = self.client
        await self.teardown_task(name, exited=exited)
        # independent of each other once the task is gone
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                _quiet,
                client.call(
                    client.containers.delete, containers_v1.DeleteContainerRequest(id=name)
                ),
            )
            nursery.start_soon(
                _quiet,
                client.call(
                    client.snapshots.remove,
                    snapshots_v1.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=name),
                ),
            )
            nursery.start_soon(self._detach, name)
        self.files.remove(name)
        for fifo in self.fifo_dir.glob(f"{name}@*"):
            shutil.rmtree(fifo, ignore_errors=True)
        await _quiet(client.call(client.leases.delete, leases_v1.DeleteRequest(id=lease_id(name))))

    async def _detach(self, name: str) -> None:
        if self.network is None:
            return
        try:
            await self.network.detach(name)
        except EphemerdError as error:
            log.warning("sandbox %s: network detach failed: %s", name, error)


async def _quiet(call: Awaitable[object]) -> None:
    """Await *call*, ignoring "already gone" and logging other refusals."""
    try:
        await call
    except SandboxNotFound:
        pass
    except EphemerdError as error:
        log.debug("teardown step failed: %s", error)
