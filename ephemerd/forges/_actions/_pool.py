"""The warm pool: idle ephemeral runners for servers that cannot list waiting jobs.

Each pool slot is a pseudo-job (``pool-<n>``) reported as queued; claiming it registers
an ephemeral runner whose sandbox takes whatever job the server gives it. A slot is
outstanding from the moment it is reported until its runner is released; a report the
scheduler never claimed (cordoned, full) expires so the pool refills.

Pool sandboxes always run the runner image: the job, and so its ``container:`` image, is
unknown until the runner fetches it, when the sandbox already runs. A workflow that needs
its container image wants a server with a job list (REST discovery).
"""

from __future__ import annotations

import itertools

from ephemerd.capabilities import JobAction, JobEvent

__all__ = ["POOL_PREFIX", "WarmPool"]

POOL_PREFIX = "pool-"


class WarmPool:
    """Bookkeeping of outstanding pool slots.

    Args:
        instance: the provider instance name stamped on events.
        size: idle runners to keep.
        unclaimed_ttl: seconds a reported but unclaimed slot counts as outstanding.
    """

    def __init__(self, instance: str, *, size: int, unclaimed_ttl: float) -> None:
        self._instance = instance
        self.size = size
        self._ttl = unclaimed_ttl
        self._ids = itertools.count(1)
        self._reported: dict[str, float] = {}  # slot job id -> when reported
        self._claimed: dict[str, str] = {}  # runner name -> slot job id

    @staticmethod
    def is_slot(job_id: str) -> bool:
        return job_id.startswith(POOL_PREFIX)

    @property
    def outstanding(self) -> int:
        return len(self._reported) + len(self._claimed)

    def refill(self, now: float) -> list[JobEvent]:
        """Queued events for the slots missing to reach ``size``."""
        for job_id, at in list(self._reported.items()):
            if now - at > self._ttl:
                del self._reported[job_id]
        events: list[JobEvent] = []
        while self.outstanding < self.size:
            job_id = f"{POOL_PREFIX}{next(self._ids)}"
            self._reported[job_id] = now
            events.append(
                JobEvent(
                    instance=self._instance,
                    action=JobAction.QUEUED,
                    job_id=job_id,
                    job_name="warm runner",
                )
            )
        return events

    def claimed(self, job_id: str, runner_name: str) -> None:
        self._reported.pop(job_id, None)
        self._claimed[runner_name] = job_id

    def released(self, runner_name: str) -> None:
        self._claimed.pop(runner_name, None)
