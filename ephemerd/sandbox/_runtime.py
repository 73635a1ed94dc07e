"""What every sandbox of one backend shares, and the one teardown path they all use.

Every object a sandbox owns is named after it, so teardown needs only the name: runc's
container and the bundle directory (with the mounted root) ``<name>``, containerd's
container record and snapshot ``<name>``, the lease ``ephemerd-sandbox-<name>`` (only a
sandbox with image mounts has one), the credentials directory and the network
attachment. Teardown removes each of them,
ignoring what is already gone, so it is idempotent and works for a half-created sandbox
and for an orphan of a previous run.

A sandbox's name is claimed first, with a marker directory under the data dir, and the
marker goes last, once containerd has confirmed every removal. The marker is what makes
a half-created sandbox findable after a crash without a containerd lease per sandbox
(two RPCs and two metadata commits per job); the rootfs snapshot carries the
``containerd.io/gc.root`` label instead, so the garbage collector leaves it alone in the
moment before its container exists.

Each sandbox's processes run under runc directly, ephemerd being their shim
(``_runc.py``). Measured and left out earlier, while they went through containerd's
task service:
shared shims (the ``io.containerd.runc.v2.group`` annotation saved about 5 % of the CPU
per job but made 20 concurrent jobs slower), the legacy v1 runtime (the same cost), and
a trimmed seccomp profile (``runc run`` with and without the default one is within
noise).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import trio

from ephemerd._errors import EphemerdError, RuntimeUnavailable, SandboxError, SandboxNotFound
from ephemerd._proto.containerd.services.containers import v1 as containers_v1
from ephemerd._proto.containerd.services.leases import v1 as leases_v1
from ephemerd._proto.containerd.services.snapshots import v1 as snapshots_v1

from ._bundle import Bundle
from ._cgroups import CgroupReader
from ._client import SNAPSHOTTER, ContainerdClient
from ._files import SecretFiles
from ._image_mounts import remove_image_mounts
from ._runc import Runc

__all__ = [
    "GC_ROOT_LABEL",
    "RUNC_V2",
    "SANDBOX_LABEL",
    "NetworkAttacher",
    "SandboxRuntime",
    "check_name",
    "lease_id",
]

log = logging.getLogger(__name__)

SANDBOX_LABEL = "ephemerd.io/sandbox"
GC_ROOT_LABEL = "containerd.io/gc.root"
_NAME_RE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
_NAME_MAX = 76
TEARDOWN_TIMEOUT = 30.0
RUNC_V2 = "io.containerd.runc.v2"


@runtime_checkable
class NetworkAttacher(Protocol):
    """Gives a sandbox its network namespace (``_network.py`` implements it)."""

    async def prepare(self, name: str) -> str:
        """Create sandbox *name*'s network namespace; return its path.

        The namespace may have no interfaces yet: its task is created meanwhile.
        """
        ...

    async def connect(self, name: str) -> None:
        """Configure the namespace ``prepare`` made; done before the task starts."""
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
        runtime: str | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.client = client
        self.network = network
        self.runtime = runtime or "runc"
        """The OCI runtime binary every sandbox runs under."""
        self.runc = Runc(data_dir / "run" / "runc", binary=self.runtime)
        self.bundles = data_dir / "run" / "bundles"
        self.log_dir = log_dir if log_dir is not None else data_dir / "logs"
        self.files = SecretFiles(data_dir / "run" / "files")
        self.claims = data_dir / "run" / "sandboxes"
        self.cgroups = CgroupReader()
        self.nursery: trio.Nursery | None = None
        """Runs the log pumps of started sandboxes; set by ``open_sandbox_backend``."""

    async def spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Start a background task (``nursery.start`` style) that outlives the caller."""
        if self.nursery is None:
            raise SandboxError("the sandbox backend is closed")
        await self.nursery.start(fn, *args)

    def prepare(self) -> None:
        """Make the directories and mount the credentials tmpfs.

        Raises:
            RuntimeUnavailable: the runtime binary is missing, or the tmpfs could not be
                mounted.
        """
        if shutil.which(self.runtime) is None:
            hint = ": install the Debian package 'runc'" if self.runtime == "runc" else ""
            raise RuntimeUnavailable(f"{self.runtime} not found on PATH{hint}")
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.bundles.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.runc.prepare()
        self.claims.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.files.mount()

    def claim(self, name: str) -> None:
        """Take *name* for a new sandbox (its marker directory, which outlives a crash).

        Raises:
            SandboxError: a sandbox of that name exists, or one was left behind.
        """
        try:
            (self.claims / name).mkdir(mode=0o700)
        except FileExistsError:
            raise SandboxError(f"sandbox {name} already exists") from None
        except OSError as error:
            raise SandboxError(
                f"sandbox {name}: cannot claim its name in {self.claims}: {error.strerror}"
            ) from None

    def bundle_names(self) -> list[str]:
        """Every sandbox with a bundle directory (a root perhaps still mounted)."""
        try:
            return sorted(entry.name for entry in self.bundles.iterdir())
        except OSError:
            return []

    def claimed(self) -> list[str]:
        """Every sandbox name claimed and not yet fully torn down."""
        try:
            return sorted(entry.name for entry in self.claims.iterdir())
        except OSError:
            return []

    async def teardown(
        self, name: str, *, exited: bool = False, leased: bool = True, views: bool = True
    ) -> None:
        """Remove everything sandbox *name* owns; idempotent.

        Args:
            name: the sandbox.
            exited: its task is known to have exited, so there is nothing to kill.
            leased: it may have a lease (``False`` only when it is known to have none).
            views: it may have image-mount views (likewise).

        Cancellation: runs shielded, for at most ``TEARDOWN_TIMEOUT`` seconds.
        """
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + TEARDOWN_TIMEOUT
            await self._teardown(name, exited=exited, leased=leased, views=views)
        if scope.cancelled_caught:
            log.error("teardown of sandbox %s timed out; it is left for the next sweep", name)

    async def teardown_task(self, name: str) -> bool:
        """Kill and delete sandbox *name*'s processes and unmount its root; ``True`` if done."""
        return await self._delete_container(name) and self._remove_bundle(name)

    async def _delete_container(self, name: str) -> bool:
        try:
            await self.runc.delete(name)
        except SandboxError as error:
            log.warning("sandbox %s: %s", name, error)
            return False
        return True

    def _remove_bundle(self, name: str) -> bool:
        try:
            Bundle(self.bundles, name).remove()
        except SandboxError as error:
            log.warning("sandbox %s: %s", name, error)
            return False
        return True

    async def _teardown(self, name: str, *, exited: bool, leased: bool, views: bool) -> None:
        client = self.client
        done: list[bool] = []

        async def step(call: Awaitable[object]) -> None:
            done.append(await _quiet(call))

        async def delete_container() -> None:
            done.append(await self._delete_container(name))

        async with trio.open_nursery() as nursery:
            if exited:
                # nothing runs in it any more: its network, runc's record of it and its
                # root go side by side
                nursery.start_soon(self._detach, name)
                nursery.start_soon(delete_container)
                done.append(self._remove_bundle(name))
            else:
                done.append(await self.teardown_task(name))
                nursery.start_soon(self._detach, name)
            # independent of each other once the root is unmounted
            nursery.start_soon(
                step,
                client.call(
                    client.containers.delete, containers_v1.DeleteContainerRequest(id=name)
                ),
            )
            nursery.start_soon(
                step,
                client.call(
                    client.snapshots.remove,
                    snapshots_v1.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=name),
                ),
            )
            if views:
                nursery.start_soon(step, remove_image_mounts(client, name))
        self.files.remove(name)
        if leased:
            await step(
                client.call(client.leases.delete, leases_v1.DeleteRequest(id=lease_id(name)))
            )
        if all(done):  # else the marker keeps it on the list for the next sweep
            with contextlib.suppress(OSError):
                (self.claims / name).rmdir()

    async def _detach(self, name: str) -> None:
        if self.network is None:
            return
        try:
            await self.network.detach(name)
        except EphemerdError as error:
            log.warning("sandbox %s: network detach failed: %s", name, error)


async def _quiet(call: Awaitable[object]) -> bool:
    """Await *call*, ignoring "already gone" and logging other refusals; ``True`` if done."""
    try:
        await call
    except SandboxNotFound:
        pass
    except EphemerdError as error:
        log.debug("teardown step failed: %s", error)
        return False
    return True
