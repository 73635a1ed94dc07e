"""The control-plane client: typed Trio methods that return the capabilities views.

Usage::

    async with open_control_client(data_dir / "ephemerd.sock") as control:
        status = await control.status()
        async with control.watch_jobs() as updates:
            async for update in updates:
                ...

Every failure is an ephemerd error with a one-line message: a missing socket or a refused
connection is ``DaemonNotRunning``, a daemon that goes away mid-call too; what the daemon
answers is mapped back by ``_status_map`` (``JobNotFound`` ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Generic, TypeVar, cast

import grpclib.client
from grpclib.config import Configuration

from ephemerd._aio import aio_stream, open_aio_loop, run_aio
from ephemerd._errors import ControlError
from ephemerd._proto.ephemerd import v1 as pb
from ephemerd.capabilities import DaemonStatus, JobKey, JobView

from ._convert import (
    StageOutput,
    WatchUpdate,
    job_from_pb,
    output_from_pb,
    status_from_pb,
    update_from_pb,
)
from ._status_map import check_socket, translate_errors

__all__ = ["ControlClient", "open_control_client", "parse_job_ref"]

T = TypeVar("T")
M = TypeVar("M")

DEFAULT_TIMEOUT = 10.0


def parse_job_ref(ref: str | JobKey) -> pb.JobRef:
    """``instance/id`` or a bare ``id`` (the daemon resolves it if it is unique).

    Raises:
        ControlError: *ref* is empty or has an empty part.
    """
    if isinstance(ref, JobKey):
        return pb.JobRef(instance=ref.instance, job_id=ref.job_id)
    instance, slash, job_id = ref.strip().partition("/")
    if not slash:
        instance, job_id = "", instance
    if not job_id or (slash and not instance):
        raise ControlError(f"invalid job reference {ref!r}: expected <instance>/<id> or <id>")
    return pb.JobRef(instance=instance, job_id=job_id)


class ControlClient:
    """One connection to the daemon's control socket. Make it with ``open_control_client``."""

    def __init__(
        self, stub: pb.ControlStub, socket_path: Path, *, call_timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._stub = stub
        self._path = socket_path
        self._timeout = call_timeout

    async def _call(
        self, method: Callable[..., Awaitable[T]], request: object, *, unbounded: bool = False
    ) -> T:
        with translate_errors(self._path):
            timeout = None if unbounded else self._timeout
            return await run_aio(_call_with_deadline, method, request, timeout)

    async def status(self) -> DaemonStatus:
        return status_from_pb(await self._call(self._stub.status, pb.StatusRequest()))

    async def jobs(self) -> list[JobView]:
        reply = await self._call(self._stub.list_jobs, pb.ListJobsRequest())
        return [job_from_pb(job) for job in reply.jobs]

    async def job(self, ref: str | JobKey) -> JobView:
        """Raises: JobNotFound; ControlError for an ambiguous bare id."""
        request = pb.GetJobRequest(job=parse_job_ref(ref))
        return job_from_pb(await self._call(self._stub.get_job, request))

    async def kill_job(self, ref: str | JobKey) -> JobView:
        """Cancel the job; the daemon still destroys its sandbox and releases its runner.

        Raises: JobNotFound; ControlError for an ambiguous bare id.
        """
        request = pb.KillJobRequest(job=parse_job_ref(ref))
        return job_from_pb(await self._call(self._stub.kill_job, request))

    async def cordon(self) -> DaemonStatus:
        return status_from_pb(await self._call(self._stub.cordon, pb.CordonRequest()))

    async def uncordon(self) -> DaemonStatus:
        return status_from_pb(await self._call(self._stub.uncordon, pb.UncordonRequest()))

    async def executor_prepare(
        self,
        job_id: str,
        *,
        instance: str = "",
        variables: Mapping[str, str],
        job_response: bytes = b"",
    ) -> JobView:
        """Admit a custom-executor job; return its view once its sandbox runs.

        Not bounded by the call timeout: a job may wait for a slot (the caller bounds it).

        Raises:
            Cordoned: the daemon is cordoned or draining.
            ControlError: anything else that kept the job from running, in one line.
        """
        request = pb.ExecutorPrepareRequest(
            instance=instance, job_id=job_id, variables=dict(variables), job_response=job_response
        )
        reply = await self._call(self._stub.executor_prepare, request, unbounded=True)
        return job_from_pb(reply.job)

    @contextlib.asynccontextmanager
    async def executor_run(
        self, job_id: str, *, instance: str = "", script: bytes, stage: str
    ) -> AsyncGenerator[AsyncIterator[StageOutput]]:
        """Run one stage's script in the job's sandbox: its output, then its exit code.

        Raises: JobNotFound (while iterating) when the job is not running there.
        Cancellation: leaving the block ends the call; the daemon kills the script.
        """
        request = pb.ExecutorRunRequest(
            instance=instance, job_id=job_id, script=script, stage=stage
        )
        async with self._stream(self._stub.executor_run(request)) as messages:
            yield _Mapped(messages, output_from_pb)

    async def executor_cleanup(self, job_id: str, *, instance: str = "") -> bool:
        """End the job; return once its sandbox is gone. Whether the daemon knew the job."""
        request = pb.ExecutorCleanupRequest(instance=instance, job_id=job_id)
        reply = await self._call(self._stub.executor_cleanup, request, unbounded=True)
        return reply.known

    @contextlib.asynccontextmanager
    async def job_logs(
        self, ref: str | JobKey, *, follow: bool = False
    ) -> AsyncGenerator[AsyncIterator[bytes]]:
        """The job's log as chunks of bytes; with *follow*, until the job finishes.

        Raises: JobNotFound (while iterating), and what ``translate_errors`` raises.
        """
        request = pb.GetJobLogsRequest(job=parse_job_ref(ref), follow=follow)
        async with self._stream(self._stub.get_job_logs(request)) as chunks:
            yield _Mapped(chunks, _chunk_data)

    @contextlib.asynccontextmanager
    async def watch_jobs(self) -> AsyncGenerator[AsyncIterator[WatchUpdate]]:
        """A snapshot of every job, then every change, each with the daemon's status.

        Cancellation: leaving the block closes the stream on both sides.
        """
        async with self._stream(self._stub.watch_jobs(pb.WatchJobsRequest())) as updates:
            yield _Mapped(updates, update_from_pb)

    @contextlib.asynccontextmanager
    async def _stream(self, call: AsyncIterator[M]) -> AsyncGenerator[AsyncIterator[M]]:
        # betterproto types its streaming calls as iterators; they are async generators.
        with translate_errors(self._path):
            async with aio_stream(cast(AsyncGenerator[M], call)) as messages:
                yield messages


class _Mapped(Generic[M, T]):
    """*source* with *fn* applied to each item (a class, not a generator, so nothing is
    left for the garbage collector to finalize when the caller stops early)."""

    def __init__(self, source: AsyncIterator[M], fn: Callable[[M], T]) -> None:
        self._source = source
        self._fn = fn

    def __aiter__(self) -> _Mapped[M, T]:
        return self

    async def __anext__(self) -> T:
        return self._fn(await self._source.__anext__())


def _chunk_data(chunk: pb.LogChunk) -> bytes:
    return chunk.data


async def _call_with_deadline(
    method: Callable[..., Awaitable[T]], request: object, seconds: float | None
) -> T:
    return await method(request, timeout=seconds)


# HTTP/2 pings on a quiet connection: a watch whose daemon went away without closing
# the socket (a frozen process, a lost peer) ends within about 15 s instead of never.
_KEEPALIVE = Configuration(_keepalive_time=10.0, _keepalive_timeout=5.0)


def _make_stub(socket_path: Path) -> tuple[grpclib.client.Channel, pb.ControlStub]:
    # Must run inside the asyncio loop (grpclib binds the running loop).
    channel = grpclib.client.Channel(path=str(socket_path), config=_KEEPALIVE)
    return channel, pb.ControlStub(channel)


@contextlib.asynccontextmanager
async def open_control_client(
    socket_path: Path, *, call_timeout: float = DEFAULT_TIMEOUT
) -> AsyncGenerator[ControlClient]:
    """Connect to the daemon's control socket for the block's duration.

    The connection is made by the first call; *call_timeout* bounds each unary call.

    Raises:
        DaemonNotRunning: there is no socket at *socket_path* (or, from a call, nothing
            answers there).
    """
    socket_path = Path(socket_path)
    check_socket(socket_path)
    async with open_aio_loop():
        channel, stub = await run_aio(_as_coroutine, _make_stub, socket_path)
        try:
            yield ControlClient(stub, socket_path, call_timeout=call_timeout)
        finally:
            channel.close()


async def _as_coroutine(fn: Callable[..., T], *args: object) -> T:
    return fn(*args)
