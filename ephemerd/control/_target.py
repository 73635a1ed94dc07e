"""What the control plane needs from the daemon: the scheduler satisfies this structurally."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

import trio

from ephemerd.capabilities import DaemonStatus, JobChange, JobEvent, JobKey, JobView

__all__ = ["ControlTarget"]


class ControlTarget(Protocol):
    """The daemon as the control plane sees it.

    Jobs are keyed by (provider instance, forge job id) and their views name the runner
    that really runs them, not the one dispatched for them.
    """

    def status(self) -> DaemonStatus: ...

    def jobs(self) -> list[JobView]:
        """Every job the daemon tracks (parked, running, and recently finished)."""
        ...

    def job(self, key: JobKey) -> JobView:
        """Raises: JobNotFound."""
        ...

    async def kill_job(self, key: JobKey) -> JobView:
        """Cancel the job; teardown (sandbox destroy + runner release) still runs.

        Raises: JobNotFound.
        """
        ...

    def job_log_path(self, key: JobKey) -> Path | None:
        """The job's log file, or ``None`` if it has no sandbox yet. Raises: JobNotFound."""
        ...

    async def wait_job_finished(self, key: JobKey) -> None:
        """Return once the job reached a finished state. Raises: JobNotFound."""
        ...

    def submit_nowait(self, event: JobEvent) -> None:
        """Apply one forge event now, as a webhook delivery is (a custom executor's prepare)."""
        ...

    def cordon(self) -> DaemonStatus: ...

    def uncordon(self) -> DaemonStatus: ...

    def watch(self) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[list[JobChange]]]:
        """Subscribe to job changes.

        The first batch received is a snapshot of every job; each later batch holds the
        changes since the previous one. A slow reader gets changes coalesced, never lost.
        """
        ...
