"""Credentials for sandboxes: files on a private tmpfs, bind-mounted read-only.

Secrets never touch a disk or an argv: ``SandboxSpec.files`` are written to one tmpfs
(mode 0700, root only) under the data dir, one 0700 directory per sandbox, and each file
is bind-mounted read-only at its path inside the sandbox. The directory goes away with
the sandbox; the tmpfs goes away when the backend closes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ephemerd._errors import RuntimeUnavailable, SandboxError
from ephemerd.capabilities import ClaimFile

from ._spec import FileMount

__all__ = ["SecretFiles"]

_MNT_DETACH = 2
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _is_tmpfs(path: Path) -> bool:
    # statfs(2) through os.statvfs has no f_type; compare devices with the parent instead
    try:
        return path.stat().st_dev != path.parent.stat().st_dev
    except OSError:
        return False


class SecretFiles:
    """The tmpfs holding every sandbox's read-only files.

    Args:
        root: where to mount the tmpfs (created if missing).
        size: the tmpfs size limit, as ``mount -o size=`` takes it.
    """

    def __init__(self, root: Path, *, size: str = "64m") -> None:
        self.root = root
        self._size = size

    def mount(self) -> None:
        """Mount the tmpfs unless it is mounted already (after a restart).

        Raises:
            RuntimeUnavailable: the mount failed (not root?).
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if _is_tmpfs(self.root):
            return
        options = f"mode=0700,size={self._size}".encode()
        flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
        result = _libc().mount(b"tmpfs", str(self.root).encode(), b"tmpfs", flags, options)
        if result != 0:
            code = ctypes.get_errno()
            raise RuntimeUnavailable(
                f"cannot mount the credentials tmpfs at {self.root}: {os.strerror(code)}"
                + (" (ephemerd must run as root)" if code == errno.EPERM else "")
            )

    def unmount(self) -> None:
        """Detach the tmpfs (lazily, so a straggling bind mount cannot block it)."""
        if _is_tmpfs(self.root):
            _libc().umount2(str(self.root).encode(), _MNT_DETACH)

    def write(self, name: str, files: Sequence[ClaimFile]) -> list[FileMount]:
        """Write *files* for sandbox *name*; return the bind mounts to put in its spec.

        Raises:
            SandboxError: a path is not absolute, or the tmpfs is full.
        """
        if not files:
            return []
        directory = self.root / name
        directory.mkdir(mode=0o700, exist_ok=True)
        mounts: list[FileMount] = []
        for index, item in enumerate(files):
            if not item.path.startswith("/"):
                raise SandboxError(f"sandbox {name}: file path {item.path!r} is not absolute")
            host = directory / f"f{index}"
            try:
                fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, item.mode & 0o777)
                try:
                    os.write(fd, item.content)
                finally:
                    os.close(fd)
                os.chmod(host, item.mode & 0o777)
            except OSError as error:
                raise SandboxError(f"sandbox {name}: cannot write {item.path}: {error}") from None
            mounts.append((str(host), item.path))
        return mounts

    def remove(self, name: str) -> None:
        """Delete sandbox *name*'s files. Idempotent."""
        shutil.rmtree(self.root / name, ignore_errors=True)

    def names(self) -> list[str]:
        """Sandboxes that still have files here."""
        try:
            return sorted(entry.name for entry in self.root.iterdir() if entry.is_dir())
        except OSError:
            return []
