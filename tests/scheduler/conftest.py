"""Helpers for scheduler tests: a scheduler on memory doubles, run in a nursery."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from ephemerd.capabilities import JobEvent, JobKey, JobState, Provider
from ephemerd.scheduler import HostLabels, Journal, Scheduler, SchedulerOptions
from ephemerd.testing import MemoryProvider, MemorySandbox

LABELS = HostLabels(arch="x86_64", extra=("big",))


def options(**overrides: object) -> SchedulerOptions:
    base: dict[str, object] = {"labels": LABELS, "poll_interval": 5.0}
    base.update(overrides)
    return SchedulerOptions(**base)  # type: ignore[arg-type]


class Env:
    """A scheduler with its doubles."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.sandbox = MemorySandbox(log_dir=tmp_path / "logs")
        self.journal_path = tmp_path / "journal.sqlite"
        self.journal = Journal(self.journal_path)
        self.wall = 1_000_000.0

    def clock(self) -> float:
        return self.wall + trio.current_time()

    def scheduler(self, providers: Sequence[Provider], **overrides: object) -> Scheduler:
        return Scheduler(
            providers=providers,
            sandbox=self.sandbox,
            journal=self.journal,
            options=options(**overrides),
            wall_clock=self.clock,
            rng=random.Random(7),
        )

    @asynccontextmanager
    async def running(self, scheduler: Scheduler) -> AsyncIterator[Scheduler]:
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            yield scheduler
            nursery.cancel_scope.cancel()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.journal.close()


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider("gh", webhook_secret="s3cret")


async def wait_state(scheduler: Scheduler, key: JobKey, *states: JobState) -> None:
    """Wait until the job reaches one of *states*, following the watch stream."""
    async with scheduler.watch() as changes:
        async for batch in changes:
            for change in batch:
                if change.job.key == key and change.job.state in states:
                    return


async def settle() -> None:
    """Let every task run until all are blocked (before the mock clock jumps)."""
    await trio.testing.wait_all_tasks_blocked()


def submit_all(scheduler: Scheduler, events: Sequence[JobEvent]) -> None:
    for event in events:
        scheduler.submit_nowait(event)
