from __future__ import annotations

import trio
import trio.testing

from ephemerd.scheduler._slots import Slots


async def test_fifo_by_enqueue_order(autojump_clock):
    slots = Slots(1)
    order: list[int] = []
    owners = list(range(5))
    for owner in owners:
        slots.enqueue(owner)
    assert (slots.borrowed, slots.waiting) == (1, 4)

    async def job(owner: int) -> None:
        await slots.acquire(owner)
        order.append(owner)
        await trio.sleep(1)
        slots.release(owner)

    async with trio.open_nursery() as nursery:
        for owner in reversed(owners):
            nursery.start_soon(job, owner)
    assert order == owners


async def test_cancelled_waiter_leaves_queue(autojump_clock):
    slots = Slots(1)
    await slots.acquire("a")
    with trio.move_on_after(1):
        await slots.acquire("b")
    assert slots.waiting == 0
    slots.release("a")
    await slots.acquire("c")
    assert slots.borrowed == 1
