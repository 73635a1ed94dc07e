"""Map the capabilities views to the wire messages of ``ephemerd.v1`` and back.

The daemon speaks ``DaemonStatus``/``JobView``/``JobChange``; the wire speaks the
betterproto messages. Every crossing goes through this module, on both sides, so the
two vocabularies meet in exactly one place.
"""

from __future__ import annotations

import time

import msgspec

from ephemerd._proto.ephemerd import v1 as pb
from ephemerd.capabilities import (
    DaemonStatus,
    JobChange,
    JobKey,
    JobState,
    JobView,
    ProviderState,
    ProviderView,
)

__all__ = [
    "StageOutput",
    "WatchUpdate",
    "change_from_pb",
    "change_to_pb",
    "job_from_pb",
    "job_to_pb",
    "output_from_pb",
    "provider_from_pb",
    "provider_to_pb",
    "status_from_pb",
    "status_to_pb",
    "update_from_pb",
    "update_to_pb",
]

# Wire enum values are the view enum's order (UNSPECIFIED = 0 on the wire only).
_JOB_STATES: dict[JobState, pb.JobState] = {state: pb.JobState[state.name] for state in JobState}
_JOB_STATES_BACK = {wire: state for state, wire in _JOB_STATES.items()}
_PROVIDER_STATES: dict[ProviderState, pb.ProviderState] = {
    state: pb.ProviderState[state.name] for state in ProviderState
}
_PROVIDER_STATES_BACK = {wire: state for state, wire in _PROVIDER_STATES.items()}


def job_to_pb(view: JobView) -> pb.Job:
    return pb.Job(
        instance=view.key.instance,
        job_id=view.key.job_id,
        kind=view.kind,
        state=_JOB_STATES[view.state],
        repo=view.repo,
        job_name=view.job_name,
        run_id=view.run_id,
        runner_name=view.runner_name,
        sandbox=view.sandbox,
        image=view.image,
        labels=list(view.labels),
        queued_at=view.queued_at,
        started_at=view.started_at,
        finished_at=view.finished_at,
        exit_code=view.exit_code,
        detail=view.detail,
    )


def job_from_pb(message: pb.Job) -> JobView:
    # A state only a newer daemon knows reads as PARKED rather than failing the call.
    state = _JOB_STATES_BACK.get(message.state, JobState.PARKED)
    return JobView(
        key=JobKey(message.instance, message.job_id),
        kind=message.kind,
        state=state,
        repo=message.repo,
        job_name=message.job_name,
        run_id=message.run_id,
        runner_name=message.runner_name,
        sandbox=message.sandbox,
        image=message.image,
        labels=tuple(message.labels),
        queued_at=message.queued_at,
        started_at=message.started_at,
        finished_at=message.finished_at,
        exit_code=message.exit_code,
        detail=message.detail,
    )


def provider_to_pb(view: ProviderView) -> pb.Provider:
    return pb.Provider(
        instance=view.instance,
        kind=view.kind,
        state=_PROVIDER_STATES[view.state],
        webhook=view.webhook,
        last_error=view.last_error,
        last_ok_at=view.last_ok_at,
        active_jobs=view.active_jobs,
    )


def provider_from_pb(message: pb.Provider) -> ProviderView:
    return ProviderView(
        instance=message.instance,
        kind=message.kind,
        state=_PROVIDER_STATES_BACK.get(message.state, ProviderState.STARTING),
        webhook=message.webhook,
        last_error=message.last_error,
        last_ok_at=message.last_ok_at,
        active_jobs=message.active_jobs,
    )


def status_to_pb(view: DaemonStatus, *, now: float | None = None) -> pb.StatusResponse:
    """*now* is the daemon's wall clock, for ``uptime_seconds`` (default: ``time.time()``)."""
    now = time.time() if now is None else now
    return pb.StatusResponse(
        pid=view.pid,
        version=view.version,
        started_at=view.started_at,
        uptime_seconds=max(now - view.started_at, 0.0),
        active_jobs=view.active_jobs,
        parked_jobs=view.parked_jobs,
        max_concurrent=view.max_concurrent,
        cordoned=view.cordoned,
        draining=view.draining,
        providers=[provider_to_pb(p) for p in view.providers],
    )


def status_from_pb(message: pb.StatusResponse) -> DaemonStatus:
    return DaemonStatus(
        pid=message.pid,
        version=message.version,
        started_at=message.started_at,
        active_jobs=message.active_jobs,
        parked_jobs=message.parked_jobs,
        max_concurrent=message.max_concurrent,
        cordoned=message.cordoned,
        draining=message.draining,
        providers=tuple(provider_from_pb(p) for p in message.providers),
    )


def change_to_pb(change: JobChange) -> pb.JobChange:
    return pb.JobChange(job=job_to_pb(change.job), removed=change.removed)


def change_from_pb(message: pb.JobChange) -> JobChange:
    return JobChange(job=job_from_pb(message.job), removed=message.removed)


class WatchUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One message of the watch stream, as a client sees it.

    Attributes:
        snapshot: the first update of a stream; ``changes`` then hold every job.
        changes: job views that changed (or left the table) since the previous update.
        status: the daemon's status when the update was sent (capacity, cordon, drain).
    """

    snapshot: bool
    changes: tuple[JobChange, ...]
    status: DaemonStatus


def update_to_pb(changes: list[JobChange], status: DaemonStatus, *, snapshot: bool) -> pb.JobUpdate:
    return pb.JobUpdate(
        snapshot=snapshot,
        changes=[change_to_pb(c) for c in changes],
        status=status_to_pb(status),
    )


def update_from_pb(message: pb.JobUpdate) -> WatchUpdate:
    return WatchUpdate(
        snapshot=message.snapshot,
        changes=tuple(change_from_pb(c) for c in message.changes),
        status=status_from_pb(message.status),
    )


class StageOutput(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a custom-executor stage: a chunk of output, or the script's end.

    Attributes:
        stream: ``"stdout"`` or ``"stderr"`` for a chunk; ``""`` for the end.
        data: the chunk.
        exit_code: the script's exit code, on the last message only.
    """

    stream: str = ""
    data: bytes = b""
    exit_code: int | None = None


def output_from_pb(message: pb.ExecutorOutput) -> StageOutput:
    if message.exited:
        return StageOutput(exit_code=message.exit_code)
    if message.stderr:
        return StageOutput(stream="stderr", data=message.stderr)
    return StageOutput(stream="stdout", data=message.stdout)
