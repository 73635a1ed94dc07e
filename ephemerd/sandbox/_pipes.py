"""Process output through FIFO pairs: how a task's stdout and stderr reach ephemerd.

The runc shim copies a process's output into the FIFOs named in the task request;
ephemerd reads them and hands each chunk on as it comes, to an exec's ``OutputSink`` or
to the job's log file. (containerd's ``file://`` log URI was measured to drop a quick
process's stderr now and then, so the log goes through here too.) The shim keeps a read
end of each FIFO open itself, so a process never gets EPIPE if ephemerd stops reading;
it blocks once the pipe is full, until someone reads again or the sandbox is destroyed.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import trio

from ephemerd._errors import SandboxError
from ephemerd.capabilities import OutputSink

__all__ = ["FifoPair", "log_sink"]

log = logging.getLogger(__name__)


class FifoPair:
    """``out`` and ``err`` FIFOs in their own 0700 directory, opened for reading.

    Raises ``SandboxError`` when the directory exists already (the process it was for
    has not been cleaned up). Until ``release_writers`` is called, a write end of each
    is held too, so reads do not see end-of-file before the shim has opened its own.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(mode=0o700)
        except OSError as error:
            raise SandboxError(f"cannot create output FIFOs in {directory}: {error}") from None
        self.stdout = str(directory / "out")
        self.stderr = str(directory / "err")
        self._readers: list[int] = []
        self._writers: list[int] = []
        try:
            for path in (self.stdout, self.stderr):
                os.mkfifo(path, 0o600)
                self._readers.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
                self._writers.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except BaseException:
            self.close()
            raise

    def release_writers(self) -> None:
        """Drop our write ends (once the shim has opened its own)."""
        for fd in self._writers:
            os.close(fd)
        self._writers.clear()

    async def pump(
        self, output: OutputSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Forward both streams to *output* until both reach end-of-file; then close all."""
        readers, self._readers = self._readers, []
        try:
            async with trio.open_nursery() as nursery:
                for fd, stream in zip(readers, ("stdout", "stderr"), strict=True):
                    nursery.start_soon(_forward, trio.lowlevel.FdStream(fd), stream, output)
                readers.clear()  # the streams own them now
                task_status.started()
        finally:
            for fd in readers:
                os.close(fd)
            self.close()

    def close(self) -> None:
        """Close whatever is still open and remove the directory. Idempotent."""
        for fd in (*self._readers, *self._writers):
            os.close(fd)
        self._readers.clear()
        self._writers.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


async def _forward(reader: trio.lowlevel.FdStream, stream: str, output: OutputSink) -> None:
    try:
        while chunk := await reader.receive_some(65536):
            await output(stream, chunk)
    finally:
        with trio.CancelScope(shield=True):
            await reader.aclose()


def log_sink(path: Path) -> OutputSink:
    """An ``OutputSink`` that appends every chunk, whatever the stream, to *path*.

    A write that fails (the log disk is full, say) drops the chunk with one warning per
    log and a note when writing works again: the job must not stall or fail because its
    log cannot be kept, and the pipe must keep draining.
    """
    failing = False

    async def write(stream: str, chunk: bytes) -> None:
        nonlocal failing
        # O_APPEND writes of a pipe-sized chunk to a local file do not block for long
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, chunk)
            finally:
                os.close(fd)
        except OSError as error:
            if not failing:
                log.warning(
                    "job log %s: %s; dropping output until it can be written",
                    path,
                    error.strerror or error,
                )
            failing = True
            return
        if failing:
            log.warning("job log %s: writing again (some output was dropped)", path)
            failing = False

    return write
