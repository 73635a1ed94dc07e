"""The ``ephemerd.v1.Control`` service: grpclib handlers whose bodies run in Trio.

grpclib calls each handler as an asyncio task. The handler only decodes the request,
then hands the whole body to Trio (``run_trio_from_aio``); a server-streaming body sends
each message back through ``run_aio(stream.send_message, ...)``. So every read of the
daemon's state happens on the Trio side, where ``ControlTarget`` lives.

Cancellation crosses the bridge the other way: when a client goes away, grpclib cancels
the asyncio task, which cancels the Trio task running the body, which exits its
``target.watch()`` subscription. A watcher only ever waits on its own subscription (the
target coalesces changes for slow readers), so a stuck client never blocks the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import grpclib.const
import grpclib.server
import trio

from ephemerd._aio import run_aio, run_trio_from_aio
from ephemerd._errors import ControlError, EphemerdError, JobNotFound
from ephemerd._proto.ephemerd import v1 as pb
from ephemerd.capabilities import CustomExecutor, DaemonStatus, JobKey

from ._convert import job_to_pb, status_to_pb, update_to_pb
from ._executor import ExecutorBodies
from ._status_map import error_to_grpc
from ._target import ControlTarget

__all__ = ["ControlService", "resolve_job"]

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Rep = TypeVar("Rep")
Send = Callable[[Rep], Awaitable[None]]

_PREFIX = "/ephemerd.v1.Control/"
LOG_CHUNK = 32 * 1024
# How often a follower re-reads a log file that has no new bytes yet.
LOG_POLL_INTERVAL = 0.2
# How often a watcher compares the daemon's status with what it last sent, so cordon
# and capacity changes reach the TUI even when no job changes.
STATUS_CHECK_INTERVAL = 1.0


def resolve_job(target: ControlTarget, ref: pb.JobRef) -> JobKey:
    """The key of the job *ref* names; a bare id must match exactly one instance.

    Raises:
        ControlError: no id given, or a bare id matches jobs of several instances.
        JobNotFound: a bare id matches no job (a full key is checked by the target).
    """
    if not ref.job_id:
        raise ControlError("a job id is required")
    if ref.instance:
        return JobKey(ref.instance, ref.job_id)
    matches = sorted(view.key for view in target.jobs() if view.key.job_id == ref.job_id)
    if not matches:
        raise JobNotFound(f"job {ref.job_id} not found")
    if len(matches) > 1:
        names = ", ".join(str(key) for key in matches)
        raise ControlError(f"job id {ref.job_id} is ambiguous ({names}); use <instance>/<id>")
    return matches[0]


def _first_leaf(group: ExceptionGroup[EphemerdError]) -> EphemerdError:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, ExceptionGroup) else first


class ControlService:
    """The gRPC face of a ``ControlTarget``; pass it to a grpclib ``Server``.

    *executors* (instance name to ``CustomExecutor``) serve ``ephemerd gitlab-executor``.
    """

    def __init__(
        self, target: ControlTarget, executors: Mapping[str, CustomExecutor] | None = None
    ) -> None:
        self._target = target
        self._executor = ExecutorBodies(target, executors or {})

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        unary, streaming = self._unary, self._streaming
        return dict(
            [
                unary("Status", self._status, pb.StatusRequest, pb.StatusResponse),
                unary("ListJobs", self._list_jobs, pb.ListJobsRequest, pb.ListJobsResponse),
                unary("GetJob", self._get_job, pb.GetJobRequest, pb.Job),
                unary("KillJob", self._kill_job, pb.KillJobRequest, pb.Job),
                streaming("GetJobLogs", self._get_job_logs, pb.GetJobLogsRequest, pb.LogChunk),
                unary("Cordon", self._cordon, pb.CordonRequest, pb.StatusResponse),
                unary("Uncordon", self._uncordon, pb.UncordonRequest, pb.StatusResponse),
                streaming("WatchJobs", self._watch_jobs, pb.WatchJobsRequest, pb.JobUpdate),
                *self._executor_handlers(),
            ]
        )

    def _executor_handlers(self) -> list[tuple[str, grpclib.const.Handler]]:
        bodies = self._executor
        return [
            self._unary(
                "ExecutorPrepare",
                bodies.prepare,
                pb.ExecutorPrepareRequest,
                pb.ExecutorPrepareResponse,
            ),
            self._streaming("ExecutorRun", bodies.run, pb.ExecutorRunRequest, pb.ExecutorOutput),
            self._unary(
                "ExecutorCleanup",
                bodies.cleanup,
                pb.ExecutorCleanupRequest,
                pb.ExecutorCleanupResponse,
            ),
        ]

    # -- the asyncio side: decode, cross into Trio, map errors ---------------------------

    @staticmethod
    async def _in_trio(fn: Callable[..., Awaitable[Rep]], *args: object) -> Rep:
        try:
            return await run_trio_from_aio(fn, *args)
        except EphemerdError as error:
            raise error_to_grpc(error) from None
        except ExceptionGroup as group:  # from a body's nursery
            matched, rest = group.split(EphemerdError)
            if matched is None or rest is not None:
                raise
            raise error_to_grpc(_first_leaf(matched)) from None

    def _unary(
        self,
        name: str,
        body: Callable[[Req], Awaitable[Rep]],
        request: type[Req],
        reply: type[Rep],
    ) -> tuple[str, grpclib.const.Handler]:
        async def handle(stream: grpclib.server.Stream[Req, Rep]) -> None:
            message = await stream.recv_message()
            assert message is not None
            await stream.send_message(await self._in_trio(body, message))

        cardinality = grpclib.const.Cardinality.UNARY_UNARY
        return _PREFIX + name, grpclib.const.Handler(handle, cardinality, request, reply)

    def _streaming(
        self,
        name: str,
        body: Callable[[Req, Send[Rep]], Awaitable[None]],
        request: type[Req],
        reply: type[Rep],
    ) -> tuple[str, grpclib.const.Handler]:
        async def handle(stream: grpclib.server.Stream[Req, Rep]) -> None:
            message = await stream.recv_message()
            assert message is not None

            async def send(item: Rep) -> None:  # called from Trio
                await run_aio(stream.send_message, item)

            await self._in_trio(body, message, send)

        cardinality = grpclib.const.Cardinality.UNARY_STREAM
        return _PREFIX + name, grpclib.const.Handler(handle, cardinality, request, reply)

    # -- the Trio side: one body per RPC ----------------------------------------------

    async def _status(self, _: pb.StatusRequest) -> pb.StatusResponse:
        return status_to_pb(self._target.status())

    async def _list_jobs(self, _: pb.ListJobsRequest) -> pb.ListJobsResponse:
        jobs = sorted(self._target.jobs(), key=lambda view: view.key)
        return pb.ListJobsResponse(jobs=[job_to_pb(view) for view in jobs])

    async def _get_job(self, request: pb.GetJobRequest) -> pb.Job:
        return job_to_pb(self._target.job(resolve_job(self._target, request.job)))

    async def _kill_job(self, request: pb.KillJobRequest) -> pb.Job:
        return job_to_pb(await self._target.kill_job(resolve_job(self._target, request.job)))

    async def _cordon(self, _: pb.CordonRequest) -> pb.StatusResponse:
        return status_to_pb(self._target.cordon())

    async def _uncordon(self, _: pb.UncordonRequest) -> pb.StatusResponse:
        return status_to_pb(self._target.uncordon())

    async def _watch_jobs(self, _: pb.WatchJobsRequest, send: Send[pb.JobUpdate]) -> None:
        target = self._target
        async with target.watch() as batches:
            try:
                first = await batches.receive()
            except trio.EndOfChannel:
                return
            sent: DaemonStatus = target.status()
            await send(update_to_pb(first, sent, snapshot=True))
            while True:
                changes = None
                with trio.move_on_after(STATUS_CHECK_INTERVAL):
                    try:
                        changes = await batches.receive()
                    except trio.EndOfChannel:
                        return  # the daemon is shutting down: end the stream cleanly
                status = target.status()
                if not changes and status == sent:
                    continue
                sent = status
                await send(update_to_pb(changes or [], status, snapshot=False))

    async def _get_job_logs(self, request: pb.GetJobLogsRequest, send: Send[pb.LogChunk]) -> None:
        key = resolve_job(self._target, request.job)
        self._target.job(key)  # JobNotFound before anything is streamed
        finished = trio.Event()
        async with trio.open_nursery() as nursery:
            if request.follow:
                nursery.start_soon(self._set_when_finished, key, finished)
            await self._send_log(key, send, follow=request.follow, finished=finished)
            nursery.cancel_scope.cancel()

    async def _set_when_finished(self, key: JobKey, finished: trio.Event) -> None:
        # A job that left the table is as finished as it gets.
        with contextlib.suppress(JobNotFound):
            await self._target.wait_job_finished(key)
        finished.set()

    async def _send_log(
        self, key: JobKey, send: Send[pb.LogChunk], *, follow: bool, finished: trio.Event
    ) -> None:
        fd: int | None = None
        try:
            while True:
                last_pass = finished.is_set()
                if fd is None:
                    fd = self._open_log(key, follow=follow)
                if fd is not None:
                    while data := await trio.to_thread.run_sync(os.read, fd, LOG_CHUNK):
                        await send(pb.LogChunk(data=data))
                if not follow or last_pass:
                    return
                with trio.move_on_after(LOG_POLL_INTERVAL):
                    await finished.wait()
        finally:
            if fd is not None:
                os.close(fd)

    def _open_log(self, key: JobKey, *, follow: bool) -> int | None:
        """The job's log file opened for reading, or ``None`` while a follower waits for it."""
        try:
            path = self._target.job_log_path(key)
        except JobNotFound:
            if follow:
                return None  # removed while we followed; the finished event ends the stream
            raise
        if path is None:
            if follow:
                return None
            raise JobNotFound(f"job {key} has no log yet")
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if follow:
                return None
            raise JobNotFound(f"job {key} has no log file") from None
        except OSError as error:
            raise ControlError(f"cannot read the log of job {key}: {error.strerror}") from None
