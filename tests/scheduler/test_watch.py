from __future__ import annotations

import pytest
import trio

from ephemerd.capabilities import JobChange, JobKey, JobState, JobView
from ephemerd.scheduler._watch import WatchHub


def _change(job_id: str, state: JobState) -> JobChange:
    return JobChange(job=JobView(key=JobKey("gh", job_id), kind="x", state=state))


async def test_slow_watcher_gets_coalesced_batches_and_never_blocks(autojump_clock):
    hub = WatchHub(lambda: [_change("0", JobState.RUNNING)])
    async with hub.watch() as changes:
        assert [c.job.key.job_id for c in await changes.receive()] == ["0"]
        for i in range(1000):  # never blocks, however many
            hub.publish(_change("1", JobState.PARKED if i % 2 else JobState.RUNNING))
        hub.publish(_change("2", JobState.FAILED))
        batch = await changes.receive()
        assert [(c.job.key.job_id, c.job.state) for c in batch] == [
            ("1", JobState.PARKED),
            ("2", JobState.FAILED),
        ]
        with trio.move_on_after(1) as scope:
            await changes.receive()
        assert scope.cancelled_caught
    assert hub.watchers == 0


async def test_empty_snapshot_is_still_sent(autojump_clock):
    hub = WatchHub(list)
    async with hub.watch() as changes:
        assert await changes.receive() == []


async def test_an_error_in_the_watchers_block_is_not_swallowed():
    hub = WatchHub(list)
    with pytest.RaisesGroup(KeyError):
        async with hub.watch() as changes:
            await changes.receive()
            raise KeyError("the watcher's own error")
    assert hub.watchers == 0
