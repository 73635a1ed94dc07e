"""The scheduler: provider- and sandbox-agnostic admission, concurrency, retry, drain, journal.

It knows forges and sandboxes only through ``ephemerd.capabilities``. The daemon builds
one ``Scheduler`` and runs it under its nursery::

    with Journal(data_dir / "journal.sqlite") as journal:
        scheduler = Scheduler(providers=providers, sandbox=backend, journal=journal,
                              options=SchedulerOptions(max_concurrent=4))
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)   # sweeps leftovers, then polls
            ...                                  # webhook deliveries: await scheduler.submit(e)
            await scheduler.drain()              # SIGTERM; a second call stops now

``Scheduler`` satisfies ``ephemerd.control.ControlTarget``; ``Scheduler.statistics()``
is the frozen snapshot ``/metrics`` renders.
"""

from ._journal import Journal, JournalRunner, JournalSandbox
from ._labels import HostLabels, label_set_key
from ._metrics import DURATION_BUCKETS, SchedulerStatistics
from ._names import runner_name, sanitize_id
from ._observer import ClaimOutcome, EventSource, JobResult, NullObserver, SchedulerObserver
from ._options import SchedulerOptions
from ._scheduler import Scheduler
from ._sweep import SweepReport

__all__ = [
    "DURATION_BUCKETS",
    "ClaimOutcome",
    "EventSource",
    "HostLabels",
    "JobResult",
    "Journal",
    "JournalRunner",
    "JournalSandbox",
    "NullObserver",
    "Scheduler",
    "SchedulerObserver",
    "SchedulerOptions",
    "SchedulerStatistics",
    "SweepReport",
    "label_set_key",
    "runner_name",
    "sanitize_id",
]
