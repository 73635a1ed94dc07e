"""The containerd sandbox backend: ``capabilities.SandboxBackend`` for real.

Creating a sandbox is a chain of steps, each of which leaves something behind in
containerd or on the host: a name claim, a snapshot, credential files, a network
namespace, a container record (and a lease for image-mount views); starting it adds a
bundle with the mounted root and runc's state. They are all named after the
sandbox and all removed by the one teardown in ``_runtime.py``, which ``create`` runs
itself (shielded) when any step fails or is cancelled, so a failed create leaves nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

import betterproto.lib.google.protobuf as pb
import msgspec
import trio

from ephemerd._errors import EphemerdError, lone_exception
from ephemerd._proto.containerd.services.containers import v1 as containers_v1
from ephemerd._proto.containerd.services.leases import v1 as leases_v1
from ephemerd._proto.containerd.services.snapshots import v1 as snapshots_v1
from ephemerd._proto.containerd.types import Mount
from ephemerd.capabilities import ClaimFile, SandboxSpec

from ._client import MANAGED_LABEL, SNAPSHOTTER, AlreadyExists, ContainerdClient
from ._handle import ContainerdHandle
from ._image_mounts import image_mount_owners, prepare_image_mounts
from ._images import ImageStore
from ._runtime import (
    GC_ROOT_LABEL,
    RUNC_V2,
    SANDBOX_LABEL,
    NetworkAttacher,
    SandboxRuntime,
    check_name,
    lease_id,
)
from ._spec import build_process, build_spec

__all__ = ["SPEC_TYPE_URL", "ContainerdSandbox", "open_sandbox_backend"]

log = logging.getLogger(__name__)

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
# _SHIELDED: the lease, the snapshot and the container record are created shielded from
# cancellation (each call has its own 60 s deadline): containerd finishes a create whose
# caller went away, and one that landed after the teardown's removal would be left behind.
_MANAGED_FILTER = f'labels."{MANAGED_LABEL}"==true'


def _merge_env(image_env: tuple[str, ...], env: dict[str, str]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for entry in image_env:
        key, _, value = entry.partition("=")
        merged[key] = value
    merged.update(env)
    merged.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return merged


class ContainerdSandbox:
    """Creates sandboxes on containerd; finds and destroys its own, even from a past run.

    Build it with ``open_sandbox_backend``.
    """

    def __init__(self, runtime: SandboxRuntime, images: ImageStore) -> None:
        self._rt = runtime
        self.images = images

    @property
    def log_dir(self) -> Path:
        return self._rt.log_dir

    @property
    def runtime(self) -> str:
        """The OCI runtime binary every sandbox runs under."""
        return self._rt.runtime

    async def create(self, spec: SandboxSpec) -> ContainerdHandle:
        """Create (not start) the sandbox *spec* describes.

        Raises:
            SandboxError: a bad name, no command, or containerd refused a step.
            ImagePullError: the image is missing and cannot be pulled.

        Cancellation: everything created so far is removed (shielded) first.
        """
        check_name(spec.name)
        image = await self.images.ensure(spec.image)
        rt, client, name = self._rt, self._rt.client, spec.name
        labels = {**spec.labels, MANAGED_LABEL: "true", SANDBOX_LABEL: name}
        rt.claim(name)  # SandboxError if taken: nothing of ours to tear down
        # only image-mount views need a lease; the rootfs snapshot is a GC root itself
        leased = bool(spec.image_mounts)
        lease = lease_id(name)
        env = _merge_env(image.runtime.env, spec.env)
        workdir = spec.workdir or image.runtime.working_dir or "/"
        rootfs: list[Mount] = []
        try:
            if leased:
                # an orphan's, now ours to delete; shielded, see _SHIELDED
                with contextlib.suppress(AlreadyExists), trio.CancelScope(shield=True):
                    await client.call(
                        client.leases.create, leases_v1.CreateRequest(id=lease, labels=labels)
                    )
            process = build_process(
                spec.argv or (*image.runtime.entrypoint, *image.runtime.cmd), env=env, cwd=workdir
            )
            extra = await prepare_image_mounts(
                client, self.images, name=name, mounts=spec.image_mounts, labels=labels, lease=lease
            )
            # the snapshot and the container are independent (the container names its
            # snapshot by key), so they are created side by side
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._prepare_rootfs, name, image.chain_id, labels, rootfs)
                networked, config = await self._create_container(
                    spec, image.reference, labels, process, extra, lease=lease if leased else None
                )
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseExceptionGroup as group:
            await rt.teardown(name, leased=leased, views=leased)
            raise lone_exception(group) from None
        except BaseException:
            await rt.teardown(name, leased=leased, views=leased)
            raise
        return ContainerdHandle(
            rt,
            name,
            rootfs=rootfs,
            config=config,
            env=env,
            workdir=workdir,
            leased=leased,
            unconnected=networked,
        )

    async def _prepare_rootfs(
        self, name: str, parent: str, labels: dict[str, str], into: list[Mount]
    ) -> None:
        client = self._rt.client
        with trio.CancelScope(shield=True):  # see _SHIELDED
            prepared = await client.call(
                client.snapshots.prepare,
                snapshots_v1.PrepareSnapshotRequest(
                    snapshotter=SNAPSHOTTER,
                    key=name,
                    parent=parent,
                    labels={**labels, GC_ROOT_LABEL: "true"},
                ),
            )
            into.extend(prepared.mounts)

    async def _create_container(
        self,
        spec: SandboxSpec,
        image: str,
        labels: dict[str, str],
        process: dict[str, object],
        image_mounts: list[dict[str, object]],
        *,
        lease: str | None,
    ) -> tuple[bool, bytes]:
        """Create the container record and its network namespace.

        Returns whether the namespace is still to connect (``ContainerdHandle.start``
        does it while the root is mounted), and the OCI spec for the bundle.
        """
        rt, client, name = self._rt, self._rt.client, spec.name
        files = spec.files
        netns: str | None = None
        if spec.network != "none" and rt.network is not None:
            netns = await rt.network.prepare(name)
            resolv = ClaimFile(
                path="/etc/resolv.conf", content=rt.network.resolv_conf(), mode=0o444
            )
            files = (resolv, *files)
        oci = build_spec(
            name=name,
            process=process,
            hostname=spec.hostname or name[:63],
            limits=spec.limits,
            files=rt.files.write(name, files),
            binds=spec.mounts,
            image_mounts=image_mounts,
            netns=netns,
        )
        config = msgspec.json.encode(oci)
        container = containers_v1.Container(
            id=name,
            labels=labels,
            image=image,
            runtime=containers_v1.ContainerRuntime(name=RUNC_V2),
            spec=pb.Any(type_url=SPEC_TYPE_URL, value=config),
            snapshotter=SNAPSHOTTER,
            snapshot_key=name,
        )
        with trio.CancelScope(shield=True):  # see _SHIELDED
            await client.call(
                client.containers.create,
                containers_v1.CreateContainerRequest(container=container),
                lease=lease,
            )
        return netns is not None, config

    async def list_own(self) -> list[str]:
        """Every sandbox this backend created and has not destroyed, half-created ones too."""
        client = self._rt.client
        containers = await client.call(
            client.containers.list, containers_v1.ListContainersRequest(filters=[_MANAGED_FILTER])
        )
        leases = await client.call(
            client.leases.list,
            leases_v1.ListRequest(filters=[f'labels."{SANDBOX_LABEL}"']),
        )
        names = {c.labels.get(SANDBOX_LABEL, c.id) for c in containers.containers}
        names.update(lease.labels[SANDBOX_LABEL] for lease in leases.leases)
        async with client.stream(
            client.snapshots.list,
            snapshots_v1.ListSnapshotsRequest(
                snapshotter=SNAPSHOTTER, filters=[f'labels."{SANDBOX_LABEL}"']
            ),
        ) as replies:
            async for reply in replies:
                names.update(info.labels.get(SANDBOX_LABEL, "") for info in reply.info)
        names.discard("")
        names.update(self._rt.claimed())
        names.update(self._rt.files.names())
        names.update(self._rt.runc.names())
        names.update(self._rt.bundle_names())
        names.update(await image_mount_owners(client))
        return sorted(names)

    async def destroy(self, name: str) -> None:
        """Destroy sandbox *name* (e.g. an orphan). Idempotent; shielded."""
        check_name(name)
        await self._rt.teardown(name)

    async def sweep(self) -> list[str]:
        """Destroy every sandbox left over; return their names (call at startup)."""
        names = await self.list_own()
        for name in names:
            log.warning("destroying leftover sandbox %s", name)
            await self._rt.teardown(name)
        return names


@asynccontextmanager
async def open_sandbox_backend(
    client: ContainerdClient,
    *,
    data_dir: Path,
    images: ImageStore | None = None,
    network: NetworkAttacher | None = None,
    log_dir: Path | None = None,
    runtime: str | None = None,
) -> AsyncGenerator[ContainerdSandbox]:
    """The sandbox backend for the block's duration.

    Job logs go to *log_dir* (default ``<data_dir>/logs``). Tasks run under the
    containerd runtime *runtime* (default ``io.containerd.runc.v2``).

    Mounts the credentials tmpfs and creates the log and FIFO directories; unmounts the
    tmpfs on the way out (sandboxes should be destroyed by then).

    Raises:
        RuntimeUnavailable: runc is missing, or the tmpfs could not be mounted (not root).
    """
    shared = SandboxRuntime(
        client, data_dir=data_dir, network=network, log_dir=log_dir, runtime=runtime
    )
    shared.prepare()
    backend = ContainerdSandbox(shared, images or ImageStore(client))
    try:
        async with trio.open_nursery() as nursery:
            shared.nursery = nursery
            try:
                yield backend
            finally:
                shared.nursery = None
                nursery.cancel_scope.cancel()  # log pumps of sandboxes still running
    finally:
        with trio.CancelScope(shield=True):
            try:
                left = await backend.list_own()
            except EphemerdError:
                left = []
            if not left:
                shared.files.unmount()
