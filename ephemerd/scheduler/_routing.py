"""What each forge event does: admit a queued job, bind a runner, tear one down.

A pending event only shows the job (see ``_pending``); a later queued event admits it.

Runners are fungible: a forge may give the runner dispatched for job A to job B. When the
provider reports runner names, in_progress binds the named runner to the job and
completed tears down *the named runner*, not the one dispatched for the job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ephemerd.capabilities import JobAction, JobEvent, JobState

from ._admission import Verdict
from ._core import Core
from ._observer import EventSource
from ._pending import end_pending, show_pending
from ._records import JobRecord
from ._spares import retire_spares

__all__ = ["route_event"]

log = logging.getLogger("ephemerd.scheduler")

_WAITING = (JobState.PARKED, JobState.RETRYING)

_IGNORED = {
    Verdict.LABELS: "its labels ask for more than this host offers",
    Verdict.TRACKED: "job already parked, running or retrying",
    Verdict.RECENT: "recently handled",
    Verdict.CORDONED: "the daemon is cordoned",
}


def route_event(
    core: Core, event: JobEvent, spawn: Callable[[JobRecord], None], source: EventSource
) -> None:
    """Apply one event. Synchronous, so admission is atomic; *spawn* starts a job task."""
    core.counters.events[event.action.value] = core.counters.events.get(event.action.value, 0) + 1
    core.observer.event_seen(event, source)
    tracker = core.trackers.get(event.instance)
    if tracker is None:
        core.counters.events_ignored += 1
        log.warning("ignoring an event from unknown provider instance %r", event.instance)
        return
    tracker.last_ok_at = core.wall_clock()
    match event.action:
        case JobAction.QUEUED:
            _queued(core, event, spawn)
        case JobAction.PENDING:
            show_pending(core, event)
        case JobAction.IN_PROGRESS:
            _in_progress(core, event)
            end_pending(core, event)
        case JobAction.COMPLETED:
            _completed(core, event)
            end_pending(core, event)


def _queued(core: Core, event: JobEvent, spawn: Callable[[JobRecord], None]) -> None:
    key = event.key
    now = trio.current_time()
    tracked = core.table.live(key) is not None
    verdict = core.admission.check(key, event.labels, tracked=tracked, now=now)
    if verdict is not Verdict.ADMIT:
        core.counters.events_ignored += 1
        level = logging.INFO if verdict is Verdict.CORDONED else logging.DEBUG
        log.log(level, "ignoring queued event for %s: %s", key, _IGNORED[verdict])
        return
    provider = core.providers[event.instance]
    record = JobRecord(event, kind=provider.kind, queued_at=core.wall_clock(), now=now)
    core.admission.stamp(key, now)
    core.table.stranded.discard(key)
    core.counters.jobs_admitted += 1
    core.add(record)
    core.slots.enqueue(record)
    log.info("job %s (%s): admitted", key, event.repo)
    spawn(record)


def _observe_started(core: Core, event: JobEvent) -> JobRecord | None:
    """Mark the job picked up; a job still waiting for a slot or a retry is dropped."""
    core.table.stranded.discard(event.key)
    record = core.table.live(event.key)
    if record is None:
        return None
    record.observed_started = True
    record.started_on = event.runner_name or record.started_on
    if record.started_on not in ("", record.runner_name):
        core.table.maybe_spares.add(record)
    if record.state in _WAITING and record.park_scope is not None:
        record.park_scope.cancel()
    return record


def _in_progress(core: Core, event: JobEvent) -> None:
    _observe_started(core, event)
    if core.reports_runner_names(event.instance) and event.runner_name:
        owner = core.table.by_runner(event.instance, event.runner_name)
        if owner is not None and owner.live:
            core.table.bind_job(owner, event.key)
            if owner.key != event.key:
                log.info(
                    "runner picked up a different job than it was dispatched for: "
                    "%s dispatched for %s runs %s",
                    owner.runner_name,
                    owner.key,
                    event.key,
                )
            core.changed(owner)
    mine = core.table.live(event.key)
    if mine is not None:
        core.changed(mine)
    retire_spares(core, event.instance)


def _completed(core: Core, event: JobEvent) -> None:
    record = _observe_started(core, event)
    if record is not None:
        record.conclusion = event.conclusion or "completed"
    target: JobRecord | None = None
    if not core.reports_runner_names(event.instance):
        target = record
    elif event.runner_name:
        owner = core.table.by_runner(event.instance, event.runner_name)
        target = owner if owner is not None and owner.live else None  # foreign: nothing
    elif record is not None and record.bound_job in (None, event.key):
        target = record
    if target is not None and target.attempt_scope is not None and target.runner_name:
        target.ended_by_forge = event.conclusion or "completed"
        core.table.bind_job(target, event.key)
        log.info("job %s completed on %s; tearing it down", event.key, target.runner_name)
        target.attempt_scope.cancel()
    retire_spares(core, event.instance)
