"""Spare runners: ours, dispatched for a job that the forge gave to another runner.

Runners of one host are fungible (GitHub hands any queued job to any runner with
matching labels), so a spare is kept while a queued job of the same provider may still
need it, and retired as soon as none can: the newest spares are kept, one per job still
waiting for a runner of its own.
"""

from __future__ import annotations

import logging

from ._core import Core

__all__ = ["retire_spares"]


def retire_spares(core: Core, instance: str) -> int:
    """Retire *instance*'s surplus spare runners; return how many were retired."""
    if not core.reports_runner_names(instance):
        return 0
    # Only a job the forge says another named runner took makes a spare: an event
    # without a runner name proves nothing about our runner.
    spares = [
        r
        for r in core.table.maybe_spares
        if r.key.instance == instance
        and r.runner_up
        and r.bound_job is None
        and r.started_on not in ("", r.runner_name)
        and not r.retired
    ]
    if not spares:
        return 0
    live = list(core.table.live_records(instance))
    demand = sum(
        1 for r in live if not r.observed_started and not (r.runner_up and r.bound_job is None)
    ) + sum(1 for key in core.table.stranded if key.instance == instance)
    spares.sort(key=lambda r: r.runner_up_at, reverse=True)
    retired = 0
    for record in spares[demand:]:
        if record.attempt_scope is None:
            continue
        record.retired = True
        core.log_job(logging.INFO, record, "retiring discharged runner %s", record.runner_name)
        record.attempt_scope.cancel()
        retired += 1
    return retired
