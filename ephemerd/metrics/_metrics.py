"""ephemerd's own metrics, one ``Metrics`` object per daemon.

The composition root creates one ``Metrics`` and hands it to whoever records; nothing here is
global. Every name below is always exposed, so dashboards never see a metric appear late
(labelled families show their series once first recorded):

==========================================  =========  ===============================
name                                        type       labels (values)
==========================================  =========  ===============================
``ephemerd_jobs_total``                     counter    instance, result (``JobResult``)
``ephemerd_jobs_active``                    gauge      -
``ephemerd_jobs_parked``                    gauge      -
``ephemerd_events_total``                   counter    instance, action (``JobAction``
                                                       value), source (``EventSource``)
``ephemerd_claims_total``                   counter    instance, outcome (``ClaimOutcome``)
``ephemerd_job_duration_seconds``           histogram  instance
``ephemerd_job_startup_seconds``            histogram  instance (claimed -> runner started)
``ephemerd_webhook_deliveries_total``       counter    instance, status (HTTP status code)
``ephemerd_poll_errors_total``              counter    instance
``ephemerd_capacity``                       gauge      -
``ephemerd_cordoned``                       gauge      - (0 or 1)
``ephemerd_uptime_seconds``                 gauge      - (computed at scrape time)
==========================================  =========  ===============================

Record through the typed methods (``job_finished``, ``job_started``, ``event_seen``,
``claim``, ``webhook_delivery``, ``poll_error``, ``observe_status``): their ``Literal``
parameters keep label values inside fixed sets. Repository names never become labels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from ephemerd.capabilities import DaemonStatus, JobEvent

from ._registry import DEFAULT_MAX_SERIES, Registry

__all__ = [
    "ClaimOutcome",
    "EventSource",
    "JobResult",
    "Metrics",
]

JobResult = Literal["succeeded", "failed", "cancelled"]
"""How a job ended inside ephemerd (the finished ``JobState`` values)."""

EventSource = Literal["poll", "webhook", "longpoll", "reconcile"]
"""Where a ``JobEvent`` came from."""

ClaimOutcome = Literal["claimed", "conflict", "rate_limited", "rejected", "error"]
"""What one claim attempt on a forge came to."""


class Metrics:
    """The daemon's metric families and the methods that record into them.

    Args:
        clock: Unix time, for the uptime; injectable for tests.
        max_series: label combinations allowed per family before new ones are dropped.

    The families are public attributes (``jobs_total``...) for reading in tests; record with
    the methods.
    """

    DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
    STARTUP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_series: int = DEFAULT_MAX_SERIES,
    ) -> None:
        self._clock = clock
        self._started_at = clock()
        r = self.registry = Registry(max_series=max_series)
        self.jobs_total = r.counter(
            "ephemerd_jobs_total", "Jobs finished, by how they ended.", ("instance", "result")
        )
        self.jobs_active = r.gauge("ephemerd_jobs_active", "Jobs holding a concurrency slot.")
        self.jobs_parked = r.gauge("ephemerd_jobs_parked", "Jobs waiting for a slot.")
        self.events_total = r.counter(
            "ephemerd_events_total",
            "Job events received from forges.",
            ("instance", "action", "source"),
        )
        self.claims_total = r.counter(
            "ephemerd_claims_total", "Claim attempts on forges.", ("instance", "outcome")
        )
        self.job_duration_seconds = r.histogram(
            "ephemerd_job_duration_seconds",
            "Time from runner start to job end.",
            ("instance",),
            buckets=self.DURATION_BUCKETS,
        )
        self.job_startup_seconds = r.histogram(
            "ephemerd_job_startup_seconds",
            "Time from claim to runner started.",
            ("instance",),
            buckets=self.STARTUP_BUCKETS,
        )
        self.webhook_deliveries_total = r.counter(
            "ephemerd_webhook_deliveries_total",
            "Webhook deliveries received, by HTTP status answered.",
            ("instance", "status"),
        )
        self.poll_errors_total = r.counter(
            "ephemerd_poll_errors_total", "Failed poll cycles.", ("instance",)
        )
        self.capacity = r.gauge("ephemerd_capacity", "Maximum concurrent jobs.")
        self.cordoned = r.gauge("ephemerd_cordoned", "1 while cordoned or draining.")
        self.uptime_seconds = r.gauge("ephemerd_uptime_seconds", "Seconds since start.")
        r.on_render(self._refresh_uptime)

    def _refresh_uptime(self) -> None:
        self.uptime_seconds.set(max(0.0, self._clock() - self._started_at))

    def job_finished(self, instance: str, result: JobResult, *, duration: float | None) -> None:
        """Count a finished job; *duration* is runner start to end, ``None`` if it never ran."""
        self.jobs_total.inc(instance=instance, result=result)
        if duration is not None:
            self.job_duration_seconds.observe(duration, instance=instance)

    def job_started(self, instance: str, *, startup: float) -> None:
        """Record the time from claim to runner started."""
        self.job_startup_seconds.observe(startup, instance=instance)

    def event_seen(self, event: JobEvent, source: EventSource) -> None:
        self.events_total.inc(instance=event.instance, action=event.action.value, source=source)

    def claim(self, instance: str, outcome: ClaimOutcome) -> None:
        self.claims_total.inc(instance=instance, outcome=outcome)

    def webhook_delivery(self, instance: str, status: int) -> None:
        """Count one delivery; *instance* is ``""`` when the path named no known instance."""
        self.webhook_deliveries_total.inc(instance=instance, status=str(status))

    def poll_error(self, instance: str) -> None:
        self.poll_errors_total.inc(instance=instance)

    def observe_status(self, status: DaemonStatus) -> None:
        """Copy the gauges that mirror the daemon's state from one status snapshot.

        The intake calls this on every scrape when it has a status source, so these gauges
        are never stale; a scheduler may also set them itself.
        """
        self._started_at = status.started_at
        self.jobs_active.set(status.active_jobs)
        self.jobs_parked.set(status.parked_jobs)
        self.capacity.set(status.max_concurrent)
        self.cordoned.set(1.0 if status.cordoned or status.draining else 0.0)

    def render(self) -> str:
        """The exposition text (Prometheus format 0.0.4) of every family."""
        return self.registry.render()
