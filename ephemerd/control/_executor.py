"""The custom-executor RPCs: gitlab-runner's prepare, run and cleanup, served in Trio.

``prepare`` goes through the scheduler like any forge event: the provider turns the
request into a queued ``JobEvent``, the scheduler admits it (labels, dedup, cordon), it
waits for a slot, the provider's ``claim_job`` applies the image policy, and the sandbox
starts with the provider driving it. The RPC follows the job's view and answers once it
is running; a job that fails or is put on the retry ladder instead (an image that cannot
be pulled) is killed, and the RPC fails with the scheduler's reason, so gitlab-runner
reports a system failure at once instead of waiting for the retry.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

import trio

from ephemerd._errors import (
    ControlError,
    Cordoned,
    JobNotFound,
    SandboxError,
    SchedulerError,
)
from ephemerd._proto.ephemerd import v1 as pb
from ephemerd.capabilities import (
    CustomExecutor,
    ExecutorRequest,
    JobChange,
    JobKey,
    JobState,
    JobView,
)

from ._convert import job_to_pb
from ._target import ControlTarget

__all__ = ["ExecutorBodies"]

log = logging.getLogger(__name__)

Send = Callable[[pb.ExecutorOutput], Awaitable[None]]

# How long a failed prepare waits for the job it admitted to be torn down.
KILL_TIMEOUT = 60.0
# States that end a prepare: the sandbox runs, or it will not soon.
_SETTLED = (JobState.RUNNING, JobState.RETRYING)
# Only shown, never admitted here (a Job Hook saw the job waiting): a prepare replaces them.
_SHOWN_ONLY = (JobState.PENDING, JobState.ELSEWHERE)


class ExecutorBodies:
    """The Trio bodies of the three executor RPCs, for ``ControlService``."""

    def __init__(self, target: ControlTarget, executors: Mapping[str, CustomExecutor]) -> None:
        self._target = target
        self._executors = dict(executors)

    def _pick(self, instance: str) -> tuple[str, CustomExecutor]:
        if instance:
            executor = self._executors.get(instance)
            if executor is None:
                raise ControlError(f"provider instance {instance!r} takes no custom executor calls")
            return instance, executor
        if len(self._executors) == 1:
            return next(iter(self._executors.items()))
        if not self._executors:
            raise ControlError(
                "no provider of this daemon takes custom executor calls (configure [gitlab])"
            )
        names = ", ".join(sorted(self._executors))
        raise ControlError(f"several GitLab instances ({names}); pass --instance")

    def _view(self, key: JobKey) -> JobView | None:
        """The job's view, if it was admitted here (a pending one only shown is not)."""
        try:
            view = self._target.job(key)
        except JobNotFound:
            return None
        return None if view.state in _SHOWN_ONLY else view

    async def prepare(self, request: pb.ExecutorPrepareRequest) -> pb.ExecutorPrepareResponse:
        """Admit the job and return once its sandbox runs.

        Raises:
            Cordoned: the daemon is cordoned or draining.
            ControlError: the job was prepared here before.
            SchedulerError: the scheduler did not admit the job (labels, dedup).
            SandboxError: the job failed before it ran; the message says why.
        Cancellation: the admitted job is killed (its sandbox destroyed), shielded.
        """
        _, executor = self._pick(request.instance)
        job = request.job_id
        status = self._target.status()
        if status.draining or status.cordoned:
            why = "draining" if status.draining else "cordoned"
            raise Cordoned(f"ephemerd is {why}: job {job} is not taken here")
        event = executor.expect(
            ExecutorRequest(
                job_id=job, variables=dict(request.variables), job_response=request.job_response
            )
        )
        key = event.key
        admitted = running = False
        try:
            existing = self._view(key)
            if existing is not None:
                raise ControlError(f"job {key} was prepared here before ({existing.state.value})")
            view: JobView | None = None
            # Nothing is raised inside this block: the watch would swallow it.
            async with self._target.watch() as batches:
                self._target.submit_nowait(event)
                admitted = self._view(key) is not None
                if admitted:
                    view = await _settled(batches, key)
            if not admitted:
                raise SchedulerError(
                    f"job {key} was not admitted: its tags ask for labels this host "
                    "lacks, or the daemon is cordoned"
                )
            if view is None:
                raise Cordoned(f"ephemerd is shutting down; job {key} is not taken")
            if view.state is JobState.RUNNING:
                running = True
                log.info("job %s: prepared in sandbox %s (%s)", key, view.sandbox, view.image)
                return pb.ExecutorPrepareResponse(job=job_to_pb(view))
            raise SandboxError(f"job {key} did not start: {view.detail or view.state.value}")
        finally:
            if not running:
                executor.forget(job)
                if admitted:
                    with trio.move_on_after(KILL_TIMEOUT, shield=True):
                        with contextlib.suppress(JobNotFound):
                            await self._target.kill_job(key)

    async def run(self, request: pb.ExecutorRunRequest, send: Send) -> None:
        """Run one stage's script in the job's sandbox, streaming its output, then its exit.

        Raises:
            JobNotFound: the job is not running here.
            SandboxError: the sandbox died or the job was killed.
        Cancellation: the script's process inside the sandbox is killed.
        """
        _, executor = self._pick(request.instance)

        async def output(stream: str, chunk: bytes) -> None:
            if stream == "stderr":
                await send(pb.ExecutorOutput(stderr=chunk))
            else:
                await send(pb.ExecutorOutput(stdout=chunk))

        code = await executor.run(request.job_id, request.script, request.stage, output)
        await send(pb.ExecutorOutput(exited=True, exit_code=code))

    async def cleanup(self, request: pb.ExecutorCleanupRequest) -> pb.ExecutorCleanupResponse:
        """End the job and return once its sandbox is gone. An unknown job is no error."""
        name, executor = self._pick(request.instance)
        known = executor.cleanup(request.job_id)
        key = JobKey(name, request.job_id)
        view = self._view(key)
        if view is None:
            return pb.ExecutorCleanupResponse(known=known)
        if view.state is not JobState.RUNNING and not view.state.finished:
            with contextlib.suppress(JobNotFound):  # never ran: parked, retrying, starting
                view = await self._target.kill_job(key)
        with contextlib.suppress(JobNotFound):
            await self._target.wait_job_finished(key)
            view = self._target.job(key)
        return pb.ExecutorCleanupResponse(known=known, job=job_to_pb(view))


async def _settled(
    batches: trio.MemoryReceiveChannel[list[JobChange]], key: JobKey
) -> JobView | None:
    """The job's view once it runs, waits on the retry ladder, or has finished.

    ``None`` when the daemon ends the watch (it is stopping).
    """
    while True:
        try:
            batch = await batches.receive()
        except trio.EndOfChannel:
            return None
        for change in batch:
            view = change.job
            if view.key != key:
                continue
            if change.removed or view.state in _SETTLED or view.state.finished:
                return view
