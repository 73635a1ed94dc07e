"""Read-only views of the daemon's state, as the control plane and the TUI show them."""

from __future__ import annotations

import enum

import msgspec

from ._events import JobKey

__all__ = ["DaemonStatus", "JobChange", "JobState", "JobView", "ProviderState", "ProviderView"]


class JobState(enum.Enum):
    """Where a job stands inside ephemerd."""

    PENDING = "pending"  # waiting on the forge, shown only: no slot, not claimed here
    PARKED = "parked"  # accepted, waiting for a concurrency slot
    CLAIMING = "claiming"  # registering a runner on the forge
    STARTING = "starting"  # creating and starting the sandbox
    RUNNING = "running"
    STOPPING = "stopping"  # sandbox being destroyed, runner released
    RETRYING = "retrying"  # a claim or start failed; waiting on the retry ladder
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ELSEWHERE = "elsewhere"  # a pending job another runner picked up or that ended

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.ELSEWHERE})


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """One job as an operator sees it. Times are Unix seconds; 0 means "not yet"."""

    key: JobKey
    kind: str
    state: JobState
    repo: str = ""
    job_name: str = ""
    run_id: str = ""
    runner_name: str = ""
    sandbox: str = ""
    image: str = ""
    labels: tuple[str, ...] = ()
    queued_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int | None = None
    detail: str = ""


class ProviderState(enum.Enum):
    STARTING = "starting"
    OK = "ok"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


class ProviderView(msgspec.Struct, frozen=True, kw_only=True):
    instance: str
    kind: str
    state: ProviderState
    webhook: bool = False
    last_error: str = ""
    last_ok_at: float = 0.0
    active_jobs: int = 0


class DaemonStatus(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    version: str
    started_at: float
    active_jobs: int
    parked_jobs: int
    max_concurrent: int
    cordoned: bool
    draining: bool
    providers: tuple[ProviderView, ...] = ()


class JobChange(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the watch stream: a job's new view, or its removal from the table."""

    job: JobView
    removed: bool = False
