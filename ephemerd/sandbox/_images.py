"""Images in containerd: unpack layers into snapshots, keep records, pull once per ref.

Each image is held by its own lease (``ephemerd-image-<hash of ref>``) that owns its
blobs and its layer snapshots, so the garbage collector keeps exactly what some image
still uses, and removing an image is deleting its record and its lease. Layers are
unpacked through the diff service into overlayfs snapshots named by chain id, so images
that share base layers share snapshots.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import msgspec
import trio

from ephemerd._errors import EphemerdError, ImagePullError, SandboxError, SandboxNotFound
from ephemerd._proto.containerd.services.diff import v1 as diff_v1
from ephemerd._proto.containerd.services.images import v1 as images_v1
from ephemerd._proto.containerd.services.leases import v1 as leases_v1
from ephemerd._proto.containerd.services.snapshots import v1 as snapshots_v1
from ephemerd._proto.containerd.types import Descriptor, Mount

from ._client import MANAGED_LABEL, SNAPSHOTTER, AlreadyExists, ContainerdClient
from ._content import BlobDescriptor, ContentSink
from ._contentstore import ContentStore
from ._oci import ImageRuntime, PulledImage, parse_config, parse_manifest
from ._reference import parse_reference

__all__ = ["ImageInfo", "ImageSource", "ImageStore", "chain_ids"]

IMAGE_LABEL = "ephemerd.io/image"


class ImageSource(Protocol):
    """Fetches an image's blobs into a sink (the registry client implements it)."""

    async def pull(self, reference: str, sink: ContentSink) -> PulledImage:
        """Write the manifest, config and layers of *reference* into *sink*.

        Raises:
            ImagePullError: the image cannot be fetched or does not verify.
        """
        ...


class ImageInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a sandbox needs from an image.

    Attributes:
        reference: the image's name in containerd.
        manifest: digest of the manifest the record points at.
        chain_id: the top layer snapshot, the parent of every sandbox's root.
        runtime: the image config's process defaults.
    """

    reference: str
    manifest: str
    chain_id: str
    runtime: ImageRuntime = ImageRuntime()


def chain_ids(diff_ids: tuple[str, ...]) -> list[str]:
    """The OCI chain ids of a layer stack: ``sha256(parent + " " + diff_id)``, bottom first."""
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            joined = f"{chain[-1]} {diff_id}".encode()
            chain.append("sha256:" + hashlib.sha256(joined).hexdigest())
    return chain


def _canonical(reference: str) -> str:
    return str(parse_reference(reference))


def image_lease_id(reference: str) -> str:
    return "ephemerd-image-" + hashlib.sha256(reference.encode()).hexdigest()[:24]


class ImageStore:
    """Creates, finds and removes images in ephemerd's containerd namespace.

    Args:
        client: the containerd client.
        source: where ``ensure`` pulls images it does not have (``None``: local only).
        normalize: turns a user's reference into its canonical name (the registry
            module's parser); identity by default.
    """

    def __init__(
        self,
        client: ContainerdClient,
        *,
        source: ImageSource | None = None,
        normalize: Callable[[str], str] | None = None,
    ) -> None:
        self._client = client
        self._source = source
        self._normalize = normalize or _canonical
        self._locks: dict[str, trio.Lock] = {}
        self._cache: dict[str, ImageInfo] = {}

    def normalize(self, reference: str) -> str:
        """The canonical name of *reference* (``busybox`` → ``docker.io/library/busybox:latest``).

        Raises:
            ImagePullError: *reference* is not a valid image reference.
        """
        return self._normalize(reference)

    def content(self, reference: str) -> ContentStore:
        """A content sink whose blobs are held by *reference*'s image lease."""
        return ContentStore(self._client, lease=image_lease_id(reference))

    async def ensure(self, reference: str) -> ImageInfo:
        """The image *reference*, pulled and unpacked first if it is not here.

        Concurrent calls for the same reference pull once; the others wait for it.

        Raises:
            ImagePullError: the image is not here and cannot be pulled.
        """
        name = self._normalize(reference)
        lock = self._locks.setdefault(name, trio.Lock())
        async with lock:
            info = await self.get(name)
            if info is not None:
                return info
            if self._source is None:
                raise ImagePullError(f"image {reference}: not present and no registry configured")
            await self.open_lease(name)
            try:
                pulled = await self._source.pull(name, self.content(name))
                return await self.store(pulled, name=name)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self._drop_lease(name)
                raise

    async def get(self, reference: str) -> ImageInfo | None:
        """The image named exactly *reference*, or ``None`` when it is not here (complete)."""
        cached = self._cache.get(reference)
        if cached is not None:
            return cached
        try:
            reply = await self._client.call(
                self._client.images.get, images_v1.GetImageRequest(name=reference)
            )
        except SandboxNotFound:
            return None
        store = ContentStore(self._client)
        try:
            config_desc, _ = parse_manifest(await store.read(reply.image.target.digest))
            _, diff_ids, runtime = parse_config(await store.read(config_desc.digest))
        except (SandboxNotFound, ImagePullError):
            return None  # a record whose content is gone: treat as absent, re-pull
        chain = chain_ids(diff_ids)
        if not chain or not await self._snapshot_exists(chain[-1]):
            return None
        info = ImageInfo(
            reference=reference,
            manifest=reply.image.target.digest,
            chain_id=chain[-1],
            runtime=runtime,
        )
        self._cache[reference] = info
        return info

    async def store(self, pulled: PulledImage, *, name: str | None = None) -> ImageInfo:
        """Unpack *pulled* (whose blobs are in ``content(name)``) and record it as *name*.

        Raises:
            ImagePullError: a layer did not unpack or its digest does not match the config.
        """
        name = name or pulled.reference
        lease = image_lease_id(name)
        await self.open_lease(name)
        chain = chain_ids(pulled.diff_ids)
        if len(chain) != len(pulled.layers):
            raise ImagePullError(
                f"image {name}: {len(pulled.layers)} layers but {len(chain)} diff_ids"
            )
        blobs = (pulled.target, pulled.manifest, pulled.config, *pulled.layers)
        for digest in dict.fromkeys(blob.digest for blob in blobs):
            await self._hold(lease, digest, "content")
        parent = ""
        for layer, diff_id, chain_id in zip(pulled.layers, pulled.diff_ids, chain, strict=True):
            await self._unpack(
                layer_desc=layer, diff_id=diff_id, chain_id=chain_id, parent=parent, lease=lease
            )
            parent = chain_id
        target = Descriptor(
            media_type=pulled.manifest.media_type,
            digest=pulled.manifest.digest,
            size=pulled.manifest.size,
        )
        record = images_v1.Image(
            name=name, target=target, labels={MANAGED_LABEL: "true", IMAGE_LABEL: name}
        )
        client = self._client
        try:
            await client.call(client.images.create, images_v1.CreateImageRequest(image=record))
        except AlreadyExists:
            await client.call(client.images.delete, images_v1.DeleteImageRequest(name=name))
            await client.call(client.images.create, images_v1.CreateImageRequest(image=record))
        info = ImageInfo(
            reference=name, manifest=pulled.manifest.digest, chain_id=parent, runtime=pulled.runtime
        )
        self._cache[name] = info
        return info

    async def _unpack(
        self, *, layer_desc: BlobDescriptor, diff_id: str, chain_id: str, parent: str, lease: str
    ) -> None:
        client = self._client
        if await self._snapshot_exists(chain_id):
            await self._hold_snapshot(lease, chain_id)
            return
        key = f"ephemerd-extract-{uuid.uuid4().hex}"
        prepared = await client.call(
            client.snapshots.prepare,
            snapshots_v1.PrepareSnapshotRequest(
                snapshotter=SNAPSHOTTER, key=key, parent=parent, labels={MANAGED_LABEL: "true"}
            ),
            lease=lease,
        )
        try:
            applied = await client.call(
                client.diff.apply,
                diff_v1.ApplyRequest(
                    diff=Descriptor(
                        media_type=layer_desc.media_type,
                        digest=layer_desc.digest,
                        size=layer_desc.size,
                    ),
                    mounts=list[Mount](prepared.mounts),
                ),
                lease=lease,
                rpc_timeout=600.0,
            )
            if applied.applied.digest != diff_id:
                raise ImagePullError(
                    f"layer {layer_desc.digest}: unpacked to {applied.applied.digest}, "
                    f"config says {diff_id}"
                )
            # AlreadyExists: another image unpacked the same layer first
            with contextlib.suppress(AlreadyExists):
                await client.call(
                    client.snapshots.commit,
                    snapshots_v1.CommitSnapshotRequest(
                        snapshotter=SNAPSHOTTER,
                        name=chain_id,
                        key=key,
                        labels={MANAGED_LABEL: "true"},
                    ),
                    lease=lease,
                )
        except SandboxError as error:
            if isinstance(error, ImagePullError):
                raise
            raise ImagePullError(f"layer {layer_desc.digest}: {error}") from None
        finally:
            with trio.CancelScope(shield=True):
                await self._remove_snapshot(key)
        await self._hold_snapshot(lease, chain_id)

    async def _snapshot_exists(self, key: str) -> bool:
        try:
            await self._client.call(
                self._client.snapshots.stat,
                snapshots_v1.StatSnapshotRequest(snapshotter=SNAPSHOTTER, key=key),
            )
        except SandboxNotFound:
            return False
        return True

    async def _remove_snapshot(self, key: str) -> None:
        # EphemerdError: committed (the key is gone) or never prepared
        with contextlib.suppress(EphemerdError):
            await self._client.call(
                self._client.snapshots.remove,
                snapshots_v1.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=key),
            )

    async def _hold_snapshot(self, lease: str, chain_id: str) -> None:
        await self._hold(lease, chain_id, f"snapshots/{SNAPSHOTTER}")

    async def _hold(self, lease: str, resource: str, kind: str) -> None:
        await self._client.call(
            self._client.leases.add_resource,
            leases_v1.AddResourceRequest(
                id=lease, resource=leases_v1.Resource(id=resource, type=kind)
            ),
        )

    async def import_oci_archive(self, path: Path, *, name: str | None = None) -> ImageInfo:
        """Import the image in the OCI layout or ``docker save`` tar at *path*.

        Args:
            path: the archive.
            name: the reference to record it as (and to pick, when it holds several).

        Raises:
            ImagePullError: unreadable or malformed archive, or a blob that fails
                verification.

        Cancellation: safe; the temporary lease is removed and nothing is recorded.
        """
        from ._oci_archive import import_archive

        temp = f"ephemerd-import-{uuid.uuid4().hex}"
        expires = datetime.now(UTC) + timedelta(hours=1)  # collected even after a crash
        await self._client.call(
            self._client.leases.create,
            leases_v1.CreateRequest(
                id=temp,
                labels={
                    MANAGED_LABEL: "true",
                    "containerd.io/gc.expire": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            ),
        )
        try:
            pulled = await import_archive(path, ContentStore(self._client, lease=temp), name=name)
            reference = self._normalize(name or pulled.reference)
            async with self._locks.setdefault(reference, trio.Lock()):
                self._cache.pop(reference, None)
                await self.open_lease(reference)
                return await self.store(pulled, name=reference)
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(EphemerdError):
                await self._client.call(
                    self._client.leases.delete, leases_v1.DeleteRequest(id=temp)
                )

    async def open_lease(self, reference: str) -> None:
        """Create the lease that holds *reference*'s blobs and snapshots (idempotent)."""
        with contextlib.suppress(AlreadyExists):
            await self._client.call(
                self._client.leases.create,
                leases_v1.CreateRequest(
                    id=image_lease_id(reference),
                    labels={MANAGED_LABEL: "true", IMAGE_LABEL: reference},
                ),
            )

    async def _drop_lease(self, reference: str) -> None:
        with contextlib.suppress(EphemerdError):
            await self._client.call(
                self._client.leases.delete,
                leases_v1.DeleteRequest(id=image_lease_id(reference), sync=False),
            )

    async def list(self) -> list[str]:
        """Names of the images ephemerd manages, sorted."""
        reply = await self._client.call(
            self._client.images.list,
            images_v1.ListImagesRequest(filters=[f'labels."{MANAGED_LABEL}"==true']),
        )
        return sorted(image.name for image in reply.images)

    async def remove(self, reference: str) -> None:
        """Remove the image *reference* and release its blobs and snapshots. Idempotent.

        Snapshots still used as the parent of a running sandbox stay until it is gone.
        """
        name = self._normalize(reference)
        self._cache.pop(name, None)
        async with self._locks.setdefault(name, trio.Lock()):
            with contextlib.suppress(SandboxNotFound):
                await self._client.call(
                    self._client.images.delete, images_v1.DeleteImageRequest(name=name)
                )
            await self._drop_lease(name)
