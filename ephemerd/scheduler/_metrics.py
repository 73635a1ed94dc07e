"""Counters the scheduler keeps, and the frozen snapshot the HTTP layer renders."""

from __future__ import annotations

import bisect

import msgspec

__all__ = ["DURATION_BUCKETS", "Counters", "SchedulerStatistics"]

# Upper bounds (seconds) of the job-duration histogram, as Prometheus ``le`` buckets.
DURATION_BUCKETS: tuple[float, ...] = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


class SchedulerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A point-in-time reading of the scheduler, e.g. for ``/metrics``.

    Counters only grow; gauges (``active_jobs``...) are current values. Each histogram
    bucket counts the jobs whose duration was at most the matching ``DURATION_BUCKETS``
    bound (cumulative, Prometheus style); ``job_duration_count`` includes longer ones.
    """

    events: dict[str, int]
    events_ignored: int
    jobs_admitted: int
    claims: int
    claim_failures: int
    start_failures: int
    retries: int
    jobs_finished: dict[str, int]
    job_duration_buckets: tuple[int, ...]
    job_duration_sum: float
    job_duration_count: int
    active_jobs: int
    parked_jobs: int
    retrying_jobs: int
    max_concurrent: int
    cordoned: bool
    draining: bool


class Counters:
    """The mutable counters behind ``SchedulerStatistics``; only the scheduler writes them."""

    def __init__(self) -> None:
        self.events: dict[str, int] = {"queued": 0, "in_progress": 0, "completed": 0}
        self.events_ignored = 0
        self.jobs_admitted = 0
        self.claims = 0
        self.claim_failures = 0
        self.start_failures = 0
        self.retries = 0
        self.jobs_finished: dict[str, int] = {"succeeded": 0, "failed": 0, "cancelled": 0}
        self._buckets = [0] * len(DURATION_BUCKETS)
        self.duration_sum = 0.0
        self.duration_count = 0

    def observe_duration(self, seconds: float) -> None:
        """Add one job's run time to the histogram."""
        self.duration_sum += seconds
        self.duration_count += 1
        for i in range(bisect.bisect_left(DURATION_BUCKETS, seconds), len(DURATION_BUCKETS)):
            self._buckets[i] += 1

    def snapshot(
        self,
        *,
        active: int,
        parked: int,
        retrying: int,
        max_concurrent: int,
        cordoned: bool,
        draining: bool,
    ) -> SchedulerStatistics:
        return SchedulerStatistics(
            events=dict(self.events),
            events_ignored=self.events_ignored,
            jobs_admitted=self.jobs_admitted,
            claims=self.claims,
            claim_failures=self.claim_failures,
            start_failures=self.start_failures,
            retries=self.retries,
            jobs_finished=dict(self.jobs_finished),
            job_duration_buckets=tuple(self._buckets),
            job_duration_sum=self.duration_sum,
            job_duration_count=self.duration_count,
            active_jobs=active,
            parked_jobs=parked,
            retrying_jobs=retrying,
            max_concurrent=max_concurrent,
            cordoned=cordoned,
            draining=draining,
        )
