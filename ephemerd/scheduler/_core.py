"""The state the scheduler's parts share, owned by one ``Scheduler``.

Everything here runs on the Trio thread; there are no locks, because every decision
that must be atomic (admission, binding a runner) happens without a checkpoint.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence

import trio

from ephemerd._errors import SchedulerError
from ephemerd.capabilities import (
    DrivesJob,
    FollowsCapacity,
    FollowsCordon,
    JobChange,
    JobState,
    JobView,
    Provider,
    RunnerNameReporter,
    SandboxBackend,
)

from ._admission import Admission
from ._journal import Journal
from ._metrics import Counters
from ._observer import NullObserver, SchedulerObserver
from ._options import SchedulerOptions
from ._records import JobRecord, JobTable
from ._slots import Slots
from ._supervise import ProviderTracker
from ._watch import WatchHub

__all__ = ["Core"]

log = logging.getLogger("ephemerd.scheduler")


class Core:
    """Shared scheduler state; see ``Scheduler`` for what each piece is for."""

    def __init__(
        self,
        *,
        providers: Sequence[Provider],
        sandbox: SandboxBackend,
        journal: Journal,
        options: SchedulerOptions,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        observer: SchedulerObserver | None = None,
    ) -> None:
        by_name: dict[str, Provider] = {}
        for provider in providers:
            if provider.name in by_name:
                raise SchedulerError(f"two providers are named {provider.name!r}")
            by_name[provider.name] = provider
        self.providers: Mapping[str, Provider] = by_name
        # Protocol isinstance checks cost ~100 µs each: answer them once per provider.
        self.drivers: Mapping[str, DrivesJob] = {
            name: p for name, p in by_name.items() if isinstance(p, DrivesJob)
        }
        self._pullers = [p for p in by_name.values() if isinstance(p, FollowsCapacity)]
        self._told_free = -1
        self._name_reporters = frozenset(
            name
            for name, p in by_name.items()
            if isinstance(p, RunnerNameReporter) and bool(p.reports_runner_names)
        )
        self.trackers = {name: ProviderTracker(p) for name, p in by_name.items()}
        self.backend = sandbox
        self.journal = journal
        self.options = options
        self.wall_clock = wall_clock
        self.rng = rng or random.Random()
        self.observer: SchedulerObserver = observer or NullObserver()
        self.table = JobTable()
        self.admission = Admission(
            options.labels,
            dedup_window=options.dedup_window,
            instance_labels=options.instance_labels,
        )
        self.counters = Counters()
        self.slots: Slots[JobRecord] = Slots(
            options.max_concurrent,
            group=lambda record: record.key.instance,
            on_change=self._slots_changed,
        )
        self._slots_changed()
        self.hub = WatchHub(self.snapshot)
        self.draining = False
        self.jobs_nursery: trio.Nursery | None = None
        self.idle = trio.Event()
        self.idle.set()

    @property
    def cordoned(self) -> bool:
        return self.admission.cordoned

    def set_cordoned(self, cordoned: bool) -> None:
        """Claim no new jobs (or claim again), and tell the providers that pull work."""
        self.admission.cordoned = cordoned
        for provider in self.providers.values():
            if isinstance(provider, FollowsCordon):
                provider.set_cordoned(cordoned)

    def _slots_changed(self) -> None:
        """Tell the providers that pull work how many slots are free, when that changes."""
        free = self.slots.free
        if free != self._told_free:
            self._told_free = free
            for provider in self._pullers:
                provider.set_free_slots(free)

    def reports_runner_names(self, instance: str) -> bool:
        return instance in self._name_reporters

    def view(self, record: JobRecord) -> JobView:
        return record.view(self.table.runner_of)

    def snapshot(self) -> list[JobChange]:
        return [JobChange(job=self.view(r)) for r in self.table.all_records()]

    def changed(self, record: JobRecord) -> None:
        """Publish *record*'s new view to watchers."""
        if self.hub.watchers:
            self.hub.publish(JobChange(job=self.view(record)))

    def set_state(self, record: JobRecord, state: JobState, detail: str = "") -> None:
        record.state = state
        record.detail = detail
        self.changed(record)

    def add(self, record: JobRecord) -> None:
        self.table.add(record)
        self.idle = trio.Event() if self.idle.is_set() else self.idle
        self.changed(record)

    def retire(self, record: JobRecord) -> None:
        self.table.retire(record)
        if not len(self.table):
            self.idle.set()

    def count(self, *states: JobState) -> int:
        return sum(1 for r in self.table.live_records() if r.state in states)

    def wake_parked(self) -> None:
        """Cancel every wait for a slot or a retry, e.g. on cordon; those jobs are abandoned."""
        for record in self.table.live_records():
            if record.park_scope is not None:
                record.park_scope.cancel()

    def log_job(self, level: int, record: JobRecord, message: str, *args: object) -> None:
        log.log(level, "job %s (%s): " + message, record.key, record.event.repo, *args)
