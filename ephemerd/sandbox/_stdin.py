"""Feeding bytes to an exec'd process's standard input through a FIFO.

The runc shim opens the FIFO named in the exec request when the process starts and
copies it into the process's stdin until end-of-file, then closes that stdin. A read
end is held here from the start, so the write end opens without waiting for the shim
and nothing written is lost if the shim opens late; end-of-file reaches the shim once
everything is written and the write end is closed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import trio

from ephemerd._errors import SandboxError

__all__ = ["StdinFifo"]


class StdinFifo:
    """A FIFO at *path* that will deliver *data*, then end-of-file.

    Raises ``SandboxError`` when the FIFO cannot be made.
    """

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = str(path)
        self._data = data
        self._fds: list[int] = []
        try:
            os.mkfifo(path, 0o600)
            self._fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            self._fds.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError as error:
            self.close()
            raise SandboxError(f"cannot create the stdin FIFO {path}: {error}") from None

    async def feed(self) -> None:
        """Write all of the data, then close the write end (the process sees end-of-file).

        A process that stops reading early is no error. Cancellation: the write end is
        closed all the same.
        """
        writer = self._fds.pop()
        stream = trio.lowlevel.FdStream(writer)
        try:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(self._data)
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def close(self) -> None:
        """Close what is still open and remove the FIFO. Idempotent."""
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
