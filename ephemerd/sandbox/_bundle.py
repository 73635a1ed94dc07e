"""A sandbox's OCI bundle: its directory, its ``config.json`` and its mounted root.

The root is the sandbox's snapshot, mounted here with ``mount(2)`` from the mounts
containerd's snapshotter hands out (an overlay, or a bind for a snapshot without a
parent). The directory is named after the sandbox, so teardown and the sweep find it by
name alone.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ephemerd._errors import SandboxError
from ephemerd._proto.containerd.types import Mount

__all__ = ["Bundle"]

_libc = ctypes.CDLL(None, use_errno=True)
_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MNT_DETACH = 0x2
_EINVAL = 22
_ENOENT = 2


class Bundle:
    """The bundle of sandbox *name* under *parent*."""

    def __init__(self, parent: Path, name: str) -> None:
        self.path = parent / name
        self.rootfs = self.path / "rootfs"

    def create(self, mounts: Sequence[Mount], config: bytes) -> None:
        """Make the directory, mount the root from *mounts*, write *config*.

        Raises:
            SandboxError: the directory exists already, or the mount failed.
        """
        try:
            self.path.mkdir(mode=0o700)
            self.rootfs.mkdir()
        except OSError as error:
            raise SandboxError(f"cannot create the bundle {self.path}: {error}") from None
        (self.path / "config.json").write_bytes(config)
        if len(mounts) != 1:
            raise SandboxError(f"the snapshotter handed {len(mounts)} mounts, expected 1")
        _mount(mounts[0], self.rootfs)

    def remove(self) -> None:
        """Unmount the root and remove the directory; idempotent."""
        if not self.path.exists():
            return
        if _libc.umount2(os.fsencode(self.rootfs), _MNT_DETACH) != 0:
            errno = ctypes.get_errno()
            if errno not in (_EINVAL, _ENOENT):  # not mounted, or no such directory
                raise SandboxError(f"cannot unmount {self.rootfs}: {os.strerror(errno)}")
        shutil.rmtree(self.path, ignore_errors=True)


def _mount(mount: Mount, target: Path) -> None:
    options = [o for o in mount.options if o not in ("rbind", "bind", "ro", "rw")]
    flags = 0
    if mount.type == "bind":
        flags = _MS_BIND | (_MS_REC if "rbind" in mount.options else 0)
    data = ",".join(options)
    if _libc.mount(
        os.fsencode(mount.source), os.fsencode(target), mount.type.encode(), flags, data.encode()
    ) != 0:  # fmt: skip
        raise SandboxError(f"cannot mount the sandbox root: {os.strerror(ctypes.get_errno())}")
    if "ro" in mount.options and _libc.mount(
        None, os.fsencode(target), None, flags | _MS_REMOUNT | _MS_RDONLY, None
    ) != 0:  # fmt: skip
        raise SandboxError(
            f"cannot make the sandbox root read-only: {os.strerror(ctypes.get_errno())}"
        )
