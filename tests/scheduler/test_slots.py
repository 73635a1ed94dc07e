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


async def test_instances_take_turns(autojump_clock):
    """A burst on one forge does not starve another: freed slots alternate between them."""
    slots: Slots[tuple[str, int]] = Slots(2, group=lambda owner: owner[0])
    burst = [("github", n) for n in range(6)]
    late = [("forgejo", n) for n in range(2)]
    for owner in [*burst, *late]:
        slots.enqueue(owner)
    rounds: dict[float, set[tuple[str, int]]] = {}

    async def job(owner: tuple[str, int]) -> None:
        await slots.acquire(owner)
        rounds.setdefault(trio.current_time(), set()).add(owner)
        await trio.sleep(1)
        slots.release(owner)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for owner in [*burst, *late]:
            nursery.start_soon(job, owner)
    # first come took the free slots; then each freed pair of slots is shared
    assert [rounds[start + n] for n in range(4)] == [
        {("github", 0), ("github", 1)},
        {("github", 2), ("forgejo", 0)},
        {("github", 3), ("forgejo", 1)},
        {("github", 4), ("github", 5)},
    ]


async def test_free_counts_waiters_and_every_change_is_told(autojump_clock):
    told: list[int] = []
    slots: Slots[str] = Slots(2, on_change=lambda: told.append(slots.free))
    slots.enqueue("a")
    slots.enqueue("b")
    slots.enqueue("c")  # waits: a free slot is promised to nobody
    assert (slots.free, slots.waiting) == (0, 1)
    with trio.move_on_after(1):
        await slots.acquire("d")
    slots.release("a")  # "c" takes it
    slots.release("b")
    slots.release("nobody")  # not a holder: nothing changed, nothing told
    assert told == [1, 0, 0, 0, 0, 0, 1]
    assert slots.free == 1
