"""What the scheduler reports as it works, for a metrics backend to count.

A structural Protocol: ``ephemerd.metrics.Metrics`` satisfies it, and the scheduler never
imports it. Calls are synchronous and must be cheap; they run on the scheduler's path.
"""

from __future__ import annotations

from typing import Literal, Protocol

from ephemerd.capabilities import JobEvent

__all__ = ["ClaimOutcome", "EventSource", "JobResult", "NullObserver", "SchedulerObserver"]

JobResult = Literal["succeeded", "failed", "cancelled"]
EventSource = Literal["poll", "webhook", "longpoll", "reconcile"]
ClaimOutcome = Literal["claimed", "conflict", "rate_limited", "rejected", "error"]


class SchedulerObserver(Protocol):
    """Receives the scheduler's countable moments."""

    def job_finished(self, instance: str, result: JobResult, *, duration: float | None) -> None:
        """A job ended; *duration* is runner start to end, ``None`` if it never ran."""
        ...

    def job_started(self, instance: str, *, startup: float) -> None:
        """A job's runner started, *startup* seconds after its claim began."""
        ...

    def event_seen(self, event: JobEvent, source: EventSource) -> None: ...

    def claim(self, instance: str, outcome: ClaimOutcome) -> None:
        """One ``claim_job`` call ended."""
        ...

    def poll_error(self, instance: str) -> None:
        """A provider's poll crashed and will be restarted."""
        ...


class NullObserver:
    """Counts nothing; the default."""

    def job_finished(self, instance: str, result: JobResult, *, duration: float | None) -> None:
        pass

    def job_started(self, instance: str, *, startup: float) -> None:
        pass

    def event_seen(self, event: JobEvent, source: EventSource) -> None:
        pass

    def claim(self, instance: str, outcome: ClaimOutcome) -> None:
        pass

    def poll_error(self, instance: str) -> None:
        pass
