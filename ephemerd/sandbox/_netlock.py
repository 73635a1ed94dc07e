"""One owner per job network on a host: a ``flock`` on ``/run/ephemerd/net-<name>.lock``.

The bridge ``<name>0``, the nft table ``inet <name>`` and the namespaces ``<name>-*`` are
host-wide, while address leases live in each data dir. Two ephemerds (different data
dirs) on one network name would hand out the same addresses on one bridge, and each
one's start-up sweep would remove the other's namespaces. The lock is taken before any
network change; the second one stops with a line naming the first (pid, data dir) and
the keys that separate them. The kernel drops the lock when its holder dies, even by
``kill -9``, so a stale lock cannot exist (a file left by a killed owner is just
locked again); an owner that exits normally removes the file.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

from ephemerd._errors import ConfigError, SandboxError

__all__ = ["LOCK_DIR", "hold_network"]

LOCK_DIR = Path("/run/ephemerd")


@contextmanager
def hold_network(name: str, *, data_dir: Path, lock_dir: Path = LOCK_DIR) -> Generator[Path]:
    """Own job network *name* on this host for the block; yield the lock file's path.

    The file holds the owner's pid and data dir (for the message of the next one).

    Raises:
        ConfigError: another ephemerd owns the network; the message names it and the
            ``[sandbox]`` keys to set.
        SandboxError: the lock file cannot be created.
    """
    path = lock_dir / f"net-{name}.lock"
    fd = _lock(path, name)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {data_dir.resolve()}\n".encode(), 0)
        yield path
    finally:
        # removed while still locked; a waiter that opened it meanwhile sees the unlink
        # (the inode check in ``_lock``) and starts over with a fresh file
        path.unlink(missing_ok=True)
        os.close(fd)


def _lock(path: Path, name: str) -> int:
    """Open and lock *path*, the file that is there now; return the descriptor."""
    while True:
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SandboxError(f"cannot create the network lock {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            os.close(fd)
            raise ConfigError(
                f"job network {name!r} (bridge {name}0) is in use by {owner}; give this"
                " ephemerd its own network: [sandbox] network_name and subnet in its config"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)  # its owner removed it on release: lock the new one


def _owner(fd: int) -> str:
    """ "ephemerd pid N (data dir D)", from the lock file's content, as far as known."""
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    pid, _, data_dir = text.partition(" ")
    if not pid.isdigit():
        return "another ephemerd"
    return f"ephemerd pid {pid} (data dir {data_dir})" if data_dir else f"ephemerd pid {pid}"
