"""Concurrency slots: in admission order within a provider instance, in turn across them.

``trio.CapacityLimiter`` is FIFO by arrival at ``acquire``, but tasks spawned together
reach their first checkpoint in a random order. Jobs here join the queue synchronously
when admitted, so each instance's jobs are claimed in the order its forge reported them.
Across instances a freed slot goes to the next instance in turn, not to the oldest
waiter: a burst of fifty jobs on one forge must not hold every slot while another
forge's jobs wait behind it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import trio

__all__ = ["Slots"]

Owner = TypeVar("Owner", bound=Hashable)


def _one_group(owner: object) -> Hashable:
    del owner
    return None


class Slots(Generic[Owner]):
    """*total* slots; owners queue with ``enqueue`` (sync) and wait with ``acquire``.

    Args:
        total: how many owners may hold a slot at once.
        group: the queue an owner waits in; queues take turns at each free slot.
        on_change: called after every change of ``free``, ``borrowed`` or ``waiting``.
    """

    def __init__(
        self,
        total: int,
        *,
        group: Callable[[Owner], Hashable] = _one_group,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.total = total
        self._group = group
        self._on_change = on_change
        self._holders: set[Owner] = set()
        # group -> its waiters in arrival order; the first group is the next to be served
        self._queues: OrderedDict[Hashable, OrderedDict[Owner, trio.Event]] = OrderedDict()
        self._queued: dict[Owner, Hashable] = {}

    @property
    def borrowed(self) -> int:
        return len(self._holders)

    @property
    def waiting(self) -> int:
        return len(self._queued)

    @property
    def free(self) -> int:
        """Slots nobody holds and no waiting owner is about to take."""
        return max(0, self.total - len(self._holders) - len(self._queued))

    def enqueue(self, owner: Owner) -> None:
        """Take a slot now if one is free and nobody waits; otherwise join the queue."""
        if owner in self._holders or owner in self._queued:
            return
        group = self._group(owner)
        self._queues.setdefault(group, OrderedDict())[owner] = trio.Event()
        self._queued[owner] = group
        self._grant()
        self._on_change()

    async def acquire(self, owner: Owner) -> None:
        """Wait until *owner* holds a slot (joining the queue if it has not yet).

        Cancellation: leaves the queue, or gives back a slot granted meanwhile.
        """
        self.enqueue(owner)
        group = self._queued.get(owner)
        if owner not in self._queued:
            await trio.lowlevel.checkpoint()
            return
        granted = self._queues[group][owner]
        try:
            await granted.wait()
        except BaseException:
            if self._leave_queue(owner):
                self._on_change()
            else:
                self.release(owner)
            raise

    def release(self, owner: Owner) -> None:
        """Give back *owner*'s slot (or its place in the queue)."""
        left = self._leave_queue(owner)
        if owner in self._holders:
            self._holders.discard(owner)
            self._grant()
        elif not left:
            return
        self._on_change()

    def _leave_queue(self, owner: Owner) -> bool:
        if owner not in self._queued:
            return False
        group = self._queued.pop(owner)
        queue = self._queues[group]
        del queue[owner]
        if not queue:
            del self._queues[group]
        return True

    def _grant(self) -> None:
        while self._queues and len(self._holders) < self.total:
            group, queue = next(iter(self._queues.items()))
            owner, event = queue.popitem(last=False)
            del self._queued[owner]
            if queue:
                self._queues.move_to_end(group)
            else:
                del self._queues[group]
            self._holders.add(owner)
            event.set()
