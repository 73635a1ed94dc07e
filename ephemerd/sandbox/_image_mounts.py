"""Directories of other images, mounted read-only into a sandbox (``SandboxSpec.image_mounts``).

A job that runs in its own image still needs the forge's runner binary, which lives in
another image. Each image mount is a containerd *View* snapshot of that image: read-only
by construction (no upper directory), labelled like the sandbox, held by the sandbox's
lease and keyed ``<sandbox>/image-mount-<i>`` (``/`` cannot occur in a sandbox name). The
snapshotter says how to mount it: a bind of the single layer, or an overlay of lower
directories only. The OCI spec gets that mount at the target, with ``ro``, ``nosuid`` and
``nodev`` added.

A *source* below ``/`` is found in each layer the overlay would stack, honouring overlay
whiteouts and opaque directories; a symbolic link on the way is refused, because the
runtime would resolve it on the host, outside the image.

Teardown finds views by label, so a sandbox that died half-created, or in a previous run,
leaves none behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Mapping, Sequence

from ephemerd._errors import SandboxError, SandboxNotFound
from ephemerd._proto.containerd.services.snapshots import v1 as snapshots_v1
from ephemerd._proto.containerd.types import Mount
from ephemerd.capabilities import ImageMount

from ._client import SNAPSHOTTER, ContainerdClient
from ._images import ImageStore

__all__ = [
    "IMAGE_MOUNT_LABEL",
    "check_image_mounts",
    "image_mount_owners",
    "oci_image_mount",
    "prepare_image_mounts",
    "remove_image_mounts",
    "view_key",
]

Json = dict[str, object]

IMAGE_MOUNT_LABEL = "ephemerd.io/image-mount"
"""Label of a view snapshot: the image it shows. Its sandbox is in ``ephemerd.io/sandbox``."""
_SANDBOX_LABEL = "ephemerd.io/sandbox"  # the same key as ``_runtime.SANDBOX_LABEL``
_OPAQUE_XATTR = "trusted.overlay.opaque"
_HARDENING = ("ro", "nosuid", "nodev")


def view_key(name: str, index: int) -> str:
    """The snapshot key of sandbox *name*'s *index*-th image mount."""
    return f"{name}/image-mount-{index}"


def _clean_path(what: str, path: str, *, allow_root: bool) -> str:
    if not path.startswith("/") or "\0" in path:
        raise SandboxError(f"image mount {what} must be an absolute path (got {path!r})")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SandboxError(f"image mount {what} must not contain '..' (got {path!r})")
    clean = "/" + "/".join(parts)
    if clean == "/" and not allow_root:
        raise SandboxError(f"image mount {what} must not be '/'")
    return clean


def check_image_mounts(mounts: Sequence[ImageMount]) -> None:
    """Raises ``SandboxError`` naming the first bad image mount (paths, duplicates)."""
    targets: set[str] = set()
    for mount in mounts:
        if not mount.image.strip():
            raise SandboxError("image mount has no image")
        _clean_path("source", mount.source, allow_root=True)
        target = _clean_path("target", mount.target, allow_root=False)
        if target in targets:
            raise SandboxError(f"two image mounts share the target {target}")
        targets.add(target)


def _lowerdirs(mount: Mount) -> list[str]:
    """The directories a view stacks, top first; raises unless it is read-only."""
    if mount.type == "bind":
        return [mount.source]
    if mount.type != "overlay":
        raise SandboxError(f"cannot mount a {mount.type!r} snapshot read-only")
    if any(o.startswith(("upperdir=", "workdir=")) for o in mount.options):
        raise SandboxError("the snapshotter handed a writable view")
    for option in mount.options:
        if option.startswith("lowerdir="):
            return [d for d in option.removeprefix("lowerdir=").split(":") if d]
    raise SandboxError("the snapshotter's overlay view has no lowerdir")


def _layer_dirs(lowerdirs: Sequence[str], source: str, image: str) -> list[str]:
    """*source* in each layer that contributes to it, top first (overlay's rules)."""
    parts = [p for p in source.split("/") if p]
    found: list[str] = []
    for layer in lowerdirs:
        path, hidden, opaque = layer, False, False
        for part in parts:
            path = os.path.join(path, part)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                path = ""
                break
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                hidden = True  # a whiteout: deleted here, and so in every layer below
                break
            if stat.S_ISLNK(info.st_mode):
                raise SandboxError(
                    f"image {image}: {source} passes through a symbolic link; "
                    "mount the directory it points to"
                )
            if not stat.S_ISDIR(info.st_mode):
                raise SandboxError(f"image {image}: {source} is not a directory")
            opaque = opaque or _is_opaque(path)
        if hidden:
            break
        if path:
            found.append(path)
            if opaque:
                break  # an opaque directory hides the same directory below
    if not found:
        raise SandboxError(f"image {image} has no directory {source}")
    return found


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as error:
        if error.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
            return False
        raise


def oci_image_mount(mounts: Sequence[Mount], *, image: str, source: str, target: str) -> Json:
    """The OCI mount that shows *source* of a view (its snapshotter *mounts*) at *target*.

    Raises:
        SandboxError: the view is not one read-only mount, or *source* is not a real
            directory of the image.
    """
    if len(mounts) != 1:
        raise SandboxError(f"image {image}: the view has {len(mounts)} mounts, expected 1")
    (mount,) = mounts
    source = _clean_path("source", source, allow_root=True)
    target = _clean_path("target", target, allow_root=False)
    lowerdirs = _lowerdirs(mount)
    if source != "/":
        lowerdirs = _layer_dirs(lowerdirs, source, image)
    if len(lowerdirs) == 1:
        return {
            "destination": target,
            "type": "bind",
            "source": lowerdirs[0],
            "options": ["rbind", *_HARDENING],
        }
    kept = [o for o in mount.options if not o.startswith("lowerdir=") and o not in _HARDENING]
    return {
        "destination": target,
        "type": "overlay",
        "source": "overlay",
        "options": [*kept, f"lowerdir={':'.join(lowerdirs)}", *_HARDENING],
    }


async def prepare_image_mounts(
    client: ContainerdClient,
    images: ImageStore,
    *,
    name: str,
    mounts: Sequence[ImageMount],
    labels: Mapping[str, str],
    lease: str,
) -> list[Json]:
    """Ensure each image, create its view under *lease*, and return the OCI mounts.

    Raises:
        ImagePullError: an image is missing and cannot be pulled.
        SandboxError: a bad path, or containerd refused the view.

    Cancellation: views already made stay under the lease and carry labels; the caller's
    teardown (``remove_image_mounts``) removes them.
    """
    check_image_mounts(mounts)
    out: list[Json] = []
    for index, mount in enumerate(mounts):
        info = await images.ensure(mount.image)
        view = await client.call(
            client.snapshots.view,
            snapshots_v1.ViewSnapshotRequest(
                snapshotter=SNAPSHOTTER,
                key=view_key(name, index),
                parent=info.chain_id,
                labels={**labels, IMAGE_MOUNT_LABEL: mount.image},
            ),
            lease=lease,
        )
        found = oci_image_mount(
            view.mounts, image=mount.image, source=mount.source, target=mount.target
        )
        out.append(found)
    return out


async def _views(client: ContainerdClient, name: str | None) -> list[tuple[str, str]]:
    """``(key, sandbox)`` of every image-mount view (of sandbox *name* only, if given)."""
    wanted = f'labels."{IMAGE_MOUNT_LABEL}"'
    if name is not None:
        wanted += f',labels."{_SANDBOX_LABEL}"=="{name}"'
    found: list[tuple[str, str]] = []
    async with client.stream(
        client.snapshots.list,
        snapshots_v1.ListSnapshotsRequest(snapshotter=SNAPSHOTTER, filters=[wanted]),
    ) as replies:
        async for reply in replies:
            found += [(i.name, i.labels.get(_SANDBOX_LABEL, "")) for i in reply.info]
    return found


async def image_mount_owners(client: ContainerdClient) -> set[str]:
    """Names of the sandboxes that still have an image-mount view (for the sweep)."""
    return {owner for _, owner in await _views(client, None) if owner}


async def remove_image_mounts(client: ContainerdClient, name: str) -> None:
    """Remove sandbox *name*'s views; idempotent (gone ones are skipped).

    Raises:
        SandboxError: containerd refused to list or remove one.
    """
    for key, _ in await _views(client, name):
        if not key.startswith(f"{name}/"):
            continue  # a label filter is no proof of ownership
        with contextlib.suppress(SandboxNotFound):
            await client.call(
                client.snapshots.remove,
                snapshots_v1.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=key),
            )
