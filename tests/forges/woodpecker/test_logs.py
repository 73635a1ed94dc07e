"""Step output to log entries: lines, numbers, streams, masking and batches."""

from __future__ import annotations

import trio

from ephemerd._proto import proto as pb
from ephemerd.forges.woodpecker._logs import MAX_LINE, LogShipper, StepLog


def shipper(batches: list[list[pb.LogEntry]], **kw: object) -> LogShipper:
    async def send(batch: list[pb.LogEntry]) -> None:
        await trio.lowlevel.checkpoint()
        batches.append(list(batch))

    options: dict[str, object] = {"flush_interval": 1.0, "batch_lines": 100}
    options.update(kw)
    return LogShipper(send, **options)  # type: ignore[arg-type]


async def test_lines_are_split_numbered_across_streams_and_typed() -> None:
    batches: list[list[pb.LogEntry]] = []
    ship = shipper(batches)
    log = StepLog(ship, "u1")
    await log.write("stdout", b"one\ntw")
    await log.write("stderr", b"oops\n")
    await log.write("stdout", b"o\r\nthree")
    log.close()
    await ship.flush()
    entries = [e for batch in batches for e in batch]
    assert [(e.line, e.type, e.data) for e in entries] == [
        (0, 0, b"one"),
        (1, 1, b"oops"),
        (2, 0, b"two"),
        (3, 0, b"three"),
    ]
    assert {e.step_uuid for e in entries} == {"u1"}


async def test_secrets_are_masked_and_long_lines_split() -> None:
    batches: list[list[pb.LogEntry]] = []
    ship = shipper(batches, masked=("hunter2-long", "hunter2"))
    log = StepLog(ship, "u1")
    await log.write("stdout", b"pw=hunter2-long and hunter2\n")
    await log.write("stdout", b"x" * (MAX_LINE * 2 + 5) + b"\n")
    log.close()
    await ship.flush()
    entries = [e for batch in batches for e in batch]
    assert entries[0].data == b"pw=******** and ********"
    assert [len(e.data) for e in entries[1:]] == [MAX_LINE, MAX_LINE, 5]
    assert [e.line for e in entries] == [0, 1, 2, 3]


async def test_batches_are_capped_and_sent_in_order_once() -> None:
    batches: list[list[pb.LogEntry]] = []
    ship = shipper(batches, batch_lines=3, flush_interval=0.01)
    log = StepLog(ship, "u1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ship.run)
        for i in range(10):
            await log.write("stdout", f"{i}\n".encode())
        await ship.flush()  # concurrent with the periodic shipping
        nursery.cancel_scope.cancel()
    entries = [e for batch in batches for e in batch]
    assert [e.line for e in entries] == list(range(10))
    assert all(len(batch) <= 3 for batch in batches)
    assert ship.sent_lines == 10
