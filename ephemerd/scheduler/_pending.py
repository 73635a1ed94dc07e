"""Pending jobs: waiting on the forge, shown to the operator, never claimed here.

Some forges decide themselves which runner gets a job (GitLab hands it to whichever
gitlab-runner asks first). Their hooks still say early that a job waits, so the job is shown
as pending before a runner takes it. A pending record holds no slot, runs no task, writes
no journal row and is not counted as work: drain and cordon ignore it. It ends when:

- the job is announced QUEUED here (our runner took it): an ordinary admission replaces it;
- the forge says another runner picked it up, or that it completed: it is finished,
  ``ELSEWHERE``, and pruned like any finished job;
- no event kept it for ``pending_retention``, or more than ``pending_keep`` are pending:
  it is forgotten, so lost deliveries cannot grow the table.
"""

from __future__ import annotations

import logging

import trio

from ephemerd.capabilities import JobAction, JobChange, JobEvent, JobState

from ._admission import Verdict
from ._core import Core
from ._records import JobRecord

__all__ = ["end_pending", "expire_pending", "show_pending"]

log = logging.getLogger("ephemerd.scheduler")

# Verdicts that still show a job: cordon stops claiming, not the view of the forge.
_SHOWN = (Verdict.ADMIT, Verdict.CORDONED)


def show_pending(core: Core, event: JobEvent) -> None:
    """Show (or refresh) the pending job *event* names, unless it is or was handled here."""
    key = event.key
    now = trio.current_time()
    record = core.table.pending(key)
    if record is not None:
        record.seen_at = now
        if record.event != event:
            record.event = event
            core.changed(record)
        return
    if core.table.get(key) is not None:
        return  # admitted, or finished: a late or replayed delivery
    verdict = core.admission.check(key, event.labels, tracked=False, now=now)
    if verdict not in _SHOWN:
        log.debug("not showing pending job %s: %s", key, verdict.value)
        return
    provider = core.providers[event.instance]
    record = JobRecord.pending(event, kind=provider.kind, queued_at=core.wall_clock(), now=now)
    core.table.add_pending(record)
    log.debug("job %s (%s): pending on the forge", key, event.repo)
    core.changed(record)
    _forget(core, core.table.expire_pending(seen_before=-1.0, keep=core.options.pending_keep))


def end_pending(core: Core, event: JobEvent) -> None:
    """An in_progress or completed event for a job shown pending here.

    In_progress without a runner name proves nothing (the runner may be ours, about to
    announce the job): the record stays pending.
    """
    record = core.table.pending(event.key)
    if record is None:
        return
    record.seen_at = trio.current_time()
    if event.action is JobAction.IN_PROGRESS:
        if not event.runner_name:
            if record.detail != "picked up by a runner":
                core.set_state(record, JobState.PENDING, "picked up by a runner")
            return
        detail = f"picked up by {event.runner_name}"
    else:
        record.conclusion = event.conclusion or "completed"
        on = f" on {event.runner_name}" if event.runner_name else ""
        detail = f"{record.conclusion}{on}, not run here"
    record.started_on = event.runner_name
    record.finished_at = core.wall_clock()
    core.table.end_pending(record)
    record.finished.set()
    log.debug("job %s: %s", record.key, detail)
    core.set_state(record, JobState.ELSEWHERE, detail)


def expire_pending(core: Core) -> None:
    """Forget pending records no event kept within ``pending_retention``."""
    seen_before = trio.current_time() - core.options.pending_retention
    _forget(
        core, core.table.expire_pending(seen_before=seen_before, keep=core.options.pending_keep)
    )


def _forget(core: Core, gone: list[JobRecord]) -> None:
    for record in gone:
        record.finished.set()
        core.hub.publish(JobChange(job=core.view(record), removed=True))
