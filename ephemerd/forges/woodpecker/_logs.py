"""Step output to Woodpecker log entries: split into lines, numbered, masked, batched.

Each step numbers its lines from 0 across stdout and stderr, in the order they were
written; ``time`` is seconds since the step started, as the agent reports it. Secret
values are replaced before a line leaves the host. One shipper task per workflow sends
batches in order (every ``flush_interval``, or early once ``batch_lines`` are waiting), so
the server sees lines in the order the step wrote them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import trio

from ephemerd._proto import proto as pb

__all__ = ["LogShipper", "StepLog"]

STDOUT, STDERR = 0, 1
_TYPES = {"stdout": STDOUT, "stderr": STDERR}
MAX_LINE = 64 * 1024
MASK = "********"

SendBatch = Callable[[list[pb.LogEntry]], Awaitable[None]]


class LogShipper:
    """Collects entries of one workflow and sends them in batches through *send*.

    Args:
        send: delivers one batch (retrying as it sees fit); called from one task only.
        flush_interval: seconds between batches.
        batch_lines: send early once this many entries wait.
        masked: secret values to hide in every line.
    """

    def __init__(
        self,
        send: SendBatch,
        *,
        flush_interval: float,
        batch_lines: int,
        masked: Sequence[str] = (),
    ) -> None:
        self._send = send
        self._interval = flush_interval
        self._batch_lines = batch_lines
        self.masked = tuple(masked)
        self._pending: list[pb.LogEntry] = []
        self._wakeup = trio.Event()
        self._sending = trio.Lock()  # one batch at a time, so lines arrive in order, once
        self.sent_lines = 0

    def enqueue(self, entry: pb.LogEntry) -> None:
        self._pending.append(entry)
        if len(self._pending) >= self._batch_lines:
            self._wakeup.set()

    async def run(self) -> None:
        """Ship batches until cancelled. Cancellation: pending lines stay for ``flush``."""
        while True:
            with trio.move_on_after(self._interval):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            await self._ship()

    async def flush(self) -> None:
        """Send every pending entry now."""
        await self._ship()

    async def _ship(self) -> None:
        async with self._sending:
            while self._pending:
                batch = self._pending[: self._batch_lines]
                await self._send(batch)
                del self._pending[: len(batch)]
                self.sent_lines += len(batch)


class StepLog:
    """The line writer of one step: turns output chunks into numbered entries."""

    def __init__(self, shipper: LogShipper, step_uuid: str) -> None:
        self._shipper = shipper
        self._uuid = step_uuid
        self._started = trio.current_time()
        self._line = 0
        self._partial: dict[str, bytes] = {}

    async def write(self, stream: str, chunk: bytes) -> None:
        """An ``OutputSink``: split *chunk* into lines; keep a trailing partial line."""
        data = self._partial.pop(stream, b"") + chunk
        *lines, rest = data.split(b"\n")
        for line in lines:
            self._emit(stream, line)
        while len(rest) > MAX_LINE:
            self._emit(stream, rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        if rest:
            self._partial[stream] = rest
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Emit what is left of unterminated lines."""
        for stream, rest in sorted(self._partial.items()):
            self._emit(stream, rest)
        self._partial.clear()

    def _emit(self, stream: str, line: bytes) -> None:
        for start in range(0, max(len(line), 1), MAX_LINE):
            part = line[start : start + MAX_LINE]
            self._shipper.enqueue(
                pb.LogEntry(
                    step_uuid=self._uuid,
                    time=int(trio.current_time() - self._started),
                    line=self._line,
                    type=_TYPES.get(stream, STDOUT),
                    data=self._mask(part.rstrip(b"\r")),
                )
            )
            self._line += 1

    def _mask(self, data: bytes) -> bytes:
        for secret in self._shipper.masked:
            data = data.replace(secret.encode(), MASK.encode())
        return data
