"""One owner per data dir: the daemon and ``ephemerd run`` both hold this lock.

Two processes on one data dir would start two containerds on one root and sweep each
other's sandboxes as orphans; an advisory ``flock`` on ``<data-dir>/ephemerd.lock`` makes
the second one stop with a clear error instead. The kernel drops the lock when its
holder dies, even by ``kill -9``, so a stale lock cannot exist.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

from ephemerd._errors import DaemonAlreadyRunning, EphemerdError

__all__ = ["hold_data_dir"]


@contextmanager
def hold_data_dir(data_dir: Path) -> Generator[None]:
    """Own *data_dir* for the block.

    Raises:
        DaemonAlreadyRunning: another process owns it; the message names its pid.
    """
    fd = os.open(data_dir / "ephemerd.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _owner(data_dir)
            raise DaemonAlreadyRunning(
                f"{data_dir} is in use by a running ephemerd{who}; stop it or use another data dir"
            ) from None
        yield
    finally:
        os.close(fd)


def _owner(data_dir: Path) -> str:
    from ephemerd.control import read_pid_file

    try:
        return f" (pid {read_pid_file(data_dir / 'ephemerd.pid')})"
    except EphemerdError:
        return ""
