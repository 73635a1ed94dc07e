"""Job-change subscriptions for ``ephemerd jobs --watch`` and the TUI.

Each watcher gets a snapshot first, then batches of changes. Changes to the same job
are coalesced while a watcher is busy, so a slow reader never blocks the scheduler and
never grows an unbounded queue: it just sees fewer, newer views.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager

import trio

from ephemerd.capabilities import JobChange, JobKey

__all__ = ["WatchHub"]


class _Watcher:
    def __init__(self) -> None:
        self.pending: dict[JobKey, JobChange] = {}
        self.wakeup = trio.Event()

    def push(self, change: JobChange) -> None:
        self.pending[change.job.key] = change
        self.wakeup.set()


class WatchHub:
    """Fans job changes out to every open watcher."""

    def __init__(self, snapshot: Callable[[], list[JobChange]]) -> None:
        self._snapshot = snapshot
        self._watchers: set[_Watcher] = set()

    def publish(self, change: JobChange) -> None:
        """Queue *change* for every watcher. Never blocks."""
        for watcher in self._watchers:
            watcher.push(change)

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    @asynccontextmanager
    async def watch(self) -> AsyncGenerator[trio.MemoryReceiveChannel[list[JobChange]]]:
        """Subscribe; the first batch is every job, later ones what changed since."""
        send, receive = trio.open_memory_channel[list[JobChange]](0)
        watcher = _Watcher()
        for change in self._snapshot():
            watcher.pending[change.job.key] = change
        watcher.wakeup.set()
        first = True
        self._watchers.add(watcher)

        async def pump() -> None:
            nonlocal first
            async with send:
                while True:
                    await watcher.wakeup.wait()
                    watcher.wakeup = trio.Event()
                    batch = list(watcher.pending.values())
                    watcher.pending.clear()
                    if batch or first:
                        first = False
                        try:
                            await send.send(batch)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            return

        try:
            # ``receive`` is closed synchronously: its ``aclose`` would checkpoint inside the
            # cancelled nursery, and that Cancelled would swallow the body's own exception
            async with trio.open_nursery() as nursery:
                with receive:
                    nursery.start_soon(pump)
                    try:
                        yield receive
                    finally:
                        nursery.cancel_scope.cancel()
        finally:
            self._watchers.discard(watcher)
