"""Concurrency slots handed out strictly in admission order.

``trio.CapacityLimiter`` is FIFO by arrival at ``acquire``, but tasks spawned together
reach their first checkpoint in a random order. Jobs here join the queue synchronously
when admitted, so they are claimed in the order the forge reported them.
"""

from __future__ import annotations

from collections import OrderedDict

import trio

__all__ = ["Slots"]


class Slots:
    """*total* slots; owners queue with ``enqueue`` (sync) and wait with ``acquire``."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._holders: set[object] = set()
        self._queue: OrderedDict[object, trio.Event] = OrderedDict()

    @property
    def borrowed(self) -> int:
        return len(self._holders)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def enqueue(self, owner: object) -> None:
        """Take a slot now if one is free and nobody waits; otherwise join the queue."""
        if owner in self._holders or owner in self._queue:
            return
        self._queue[owner] = trio.Event()
        self._grant()

    async def acquire(self, owner: object) -> None:
        """Wait until *owner* holds a slot (joining the queue if it has not yet).

        Cancellation: leaves the queue, or gives back a slot granted meanwhile.
        """
        self.enqueue(owner)
        granted = self._queue.get(owner)
        if granted is None:
            await trio.lowlevel.checkpoint()
            return
        try:
            await granted.wait()
        except BaseException:
            if self._queue.pop(owner, None) is None:
                self.release(owner)
            raise

    def release(self, owner: object) -> None:
        """Give back *owner*'s slot (or its place in the queue)."""
        self._queue.pop(owner, None)
        if owner in self._holders:
            self._holders.discard(owner)
            self._grant()

    def _grant(self) -> None:
        while self._queue and len(self._holders) < self.total:
            owner, event = self._queue.popitem(last=False)
            self._holders.add(owner)
            event.set()
