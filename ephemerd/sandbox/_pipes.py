"""Process output through pipes: how a sandbox process's stdout and stderr reach ephemerd.

runc hands the process the write ends directly (its stdio passes through); ephemerd
reads the other ends and hands each chunk on as it comes, to an exec's ``OutputSink`` or
to the job's log file. If ephemerd dies, the process gets EPIPE on its next write; the
sweep at the next start reclaims the sandbox either way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import trio

from ephemerd._errors import SandboxError
from ephemerd.capabilities import OutputSink

__all__ = ["OutputPipes", "log_sink"]

log = logging.getLogger(__name__)


class OutputPipes:
    """One pipe per stream name in *streams*; the write ends go to the process.

    Raises ``SandboxError`` when the pipes cannot be made (out of file descriptors).
    """

    def __init__(self, streams: Sequence[str] = ("stdout", "stderr")) -> None:
        self._streams = tuple(streams)
        self._readers: list[int] = []
        self._writers: list[int] = []
        try:
            for _ in self._streams:
                reader, writer = os.pipe2(os.O_CLOEXEC)
                self._readers.append(reader)
                self._writers.append(writer)
        except OSError as error:
            self.close()
            raise SandboxError(f"cannot create output pipes: {error.strerror}") from None

    def writer(self, index: int = 0) -> int:
        """The write end of stream *index*, for the process."""
        return self._writers[index]

    def release_writers(self) -> None:
        """Drop our write ends (once the process holds its own), so end-of-file comes."""
        for fd in self._writers:
            os.close(fd)
        self._writers.clear()

    async def pump(
        self, output: OutputSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Forward every stream to *output* until all reach end-of-file; then close all."""
        readers, self._readers = self._readers, []
        try:
            async with trio.open_nursery() as nursery:
                for fd, stream in zip(readers, self._streams, strict=True):
                    nursery.start_soon(_forward, trio.lowlevel.FdStream(fd), stream, output)
                readers.clear()  # the streams own them now
                task_status.started()
        finally:
            for fd in readers:
                os.close(fd)
            self.close()

    def close(self) -> None:
        """Close whatever is still open. Idempotent."""
        for fd in (*self._readers, *self._writers):
            os.close(fd)
        self._readers.clear()
        self._writers.clear()


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
