"""The PID file ``<data-dir>/ephemerd.pid``: decimal pid, no newline, mode 0644.

It is a hint for ``ephemerd drain``, never proof: drain signals the pid only after the
control socket confirms the daemon answering there has that pid, so a stale file cannot
get an unrelated process killed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from pathlib import Path

from ephemerd._errors import ControlError, DaemonNotRunning

__all__ = ["pid_file", "read_pid_file", "remove_pid_file", "write_pid_file"]


def write_pid_file(path: Path, pid: int | None = None) -> None:
    """Write *pid* (default: this process) atomically, so a reader never sees half of it."""
    pid = os.getpid() if pid is None else pid
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(str(pid))
    tmp.chmod(0o644)
    tmp.replace(path)


def remove_pid_file(path: Path, pid: int | None = None) -> None:
    """Remove the file if it still names *pid* (default: this process); a newer daemon's
    file is left alone."""
    pid = os.getpid() if pid is None else pid
    try:
        if path.read_text().strip() == str(pid):
            path.unlink()
    except FileNotFoundError:
        pass


def read_pid_file(path: Path) -> int:
    """The pid in *path*.

    Raises:
        DaemonNotRunning: the file does not exist.
        ControlError: it cannot be read or holds no valid pid.
    """
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise DaemonNotRunning(f"ephemerd is not running (no pid file at {path})") from None
    except OSError as error:
        raise ControlError(f"cannot read pid file {path}: {error.strerror}") from None
    if not text.isdigit() or int(text) <= 0:
        raise ControlError(f"invalid pid file {path}: {text[:20]!r} is not a pid")
    return int(text)


@contextlib.contextmanager
def pid_file(path: Path) -> Generator[Path]:
    """Hold the PID file for this process for the block's duration."""
    write_pid_file(path)
    try:
        yield path
    finally:
        remove_pid_file(path)
