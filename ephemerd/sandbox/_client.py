"""A thin, typed client for containerd's gRPC API, callable from Trio.

Every call runs on grpclib (asyncio) through ``ephemerd._aio`` and carries the
``containerd-namespace`` header, so everything ephemerd creates lives in its own
namespace. grpclib errors become ephemerd errors here, at the boundary:
``NOT_FOUND`` → ``SandboxNotFound``, ``ALREADY_EXISTS`` → ``AlreadyExists``, a socket
that does not answer → ``RuntimeUnavailable``, anything else → ``SandboxError``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar, cast

import betterproto
import grpclib.client
import grpclib.const
import grpclib.exceptions

from ephemerd._aio import aio_stream, run_aio
from ephemerd._errors import RuntimeUnavailable, SandboxError, SandboxNotFound
from ephemerd._proto.containerd.services.containers import v1 as containers_v1
from ephemerd._proto.containerd.services.content import v1 as content_v1
from ephemerd._proto.containerd.services.diff import v1 as diff_v1
from ephemerd._proto.containerd.services.events import v1 as events_v1
from ephemerd._proto.containerd.services.images import v1 as images_v1
from ephemerd._proto.containerd.services.leases import v1 as leases_v1
from ephemerd._proto.containerd.services.snapshots import v1 as snapshots_v1
from ephemerd._proto.containerd.services.tasks import v1 as tasks_v1
from ephemerd._proto.containerd.services.version import v1 as version_v1

if TYPE_CHECKING:
    from ._embedded import EmbeddedContainerd

__all__ = [
    "FOREIGN_ERRORS",
    "MANAGED_LABEL",
    "NAMESPACE",
    "SNAPSHOTTER",
    "AlreadyExists",
    "ContainerdClient",
    "Metadata",
    "translate",
]

NAMESPACE = "ephemerd"
MANAGED_LABEL = "ephemerd.io/managed"
SNAPSHOTTER = "overlayfs"

R = TypeVar("R")
S = TypeVar("S", bound=betterproto.Message)
Metadata = dict[str, str]
_Method = Callable[..., Awaitable[R]]


class AlreadyExists(SandboxError):
    """containerd already has an object with that id (``ALREADY_EXISTS``)."""


def translate(error: Exception, what: str) -> SandboxError:
    """Turn a grpclib or socket error into the matching ephemerd error."""
    if isinstance(error, grpclib.exceptions.GRPCError):
        detail = " ".join((error.message or error.status.name).split())  # one line
        message = f"containerd {what}: {detail}"
        if error.status is grpclib.const.Status.NOT_FOUND:
            return SandboxNotFound(message)
        if error.status is grpclib.const.Status.ALREADY_EXISTS:
            return AlreadyExists(message)
        if error.status is grpclib.const.Status.UNAVAILABLE:
            return RuntimeUnavailable(message)
        return SandboxError(message)
    return RuntimeUnavailable(f"containerd {what}: not answering ({type(error).__name__}: {error})")


FOREIGN_ERRORS = (grpclib.exceptions.GRPCError, grpclib.exceptions.StreamTerminatedError, OSError)


class ContainerdClient:
    """Stubs for the containerd services ephemerd uses, bound to one namespace.

    Create it inside a running asyncio loop (``run_aio``), as grpclib requires; use
    ``open_containerd`` rather than building one by hand.
    """

    def __init__(
        self,
        channel: grpclib.client.Channel,
        *,
        address: str,
        namespace: str,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.address = address
        # every call runs in the loop the channel was made in: a reconnect (containerd
        # restarted) from a task of another loop fails otherwise
        self._loop = loop
        self.namespace = namespace
        self._channel = channel
        self.embedded: EmbeddedContainerd | None = None
        """The private containerd behind this client, or ``None`` for an external one."""
        self.containers = containers_v1.ContainersStub(channel)
        self.content = content_v1.ContentStub(channel)
        self.diff = diff_v1.DiffStub(channel)
        self.events = events_v1.EventsStub(channel)
        self.images = images_v1.ImagesStub(channel)
        self.leases = leases_v1.LeasesStub(channel)
        self.snapshots = snapshots_v1.SnapshotsStub(channel)
        self.tasks = tasks_v1.TasksStub(channel)
        self.version = version_v1.VersionStub(channel)

    @classmethod
    async def connect(cls, address: str, *, namespace: str = NAMESPACE) -> ContainerdClient:
        """Build a client for the unix socket *address* (no I/O happens yet)."""

        async def build() -> ContainerdClient:
            path = address.removeprefix("unix://")
            channel = grpclib.client.Channel(path=path)
            loop = asyncio.get_running_loop()
            return cls(channel, address=address, namespace=namespace, loop=loop)

        return await run_aio(build)

    async def aclose(self) -> None:
        """Close the channel."""

        async def close() -> None:
            self._channel.close()

        await run_aio(close, loop=self._loop)

    async def run(self, fn: Callable[[], Awaitable[R]]) -> R:
        """Await the asyncio coroutine function *fn* in the channel's loop (raw streams)."""
        return await run_aio(fn, loop=self._loop)

    def metadata(self, lease: str | None = None) -> Metadata:
        """The headers of a call: the namespace, and a lease when one holds new objects."""
        md = {"containerd-namespace": self.namespace}
        if lease:
            md["containerd-lease"] = lease
        return md

    async def call(
        self,
        method: _Method[R],
        request: betterproto.Message,
        *,
        lease: str | None = None,
        rpc_timeout: float | None = 60.0,
    ) -> R:
        """Call the unary stub *method* with *request*.

        Raises:
            SandboxNotFound: containerd answered ``NOT_FOUND``.
            AlreadyExists: containerd answered ``ALREADY_EXISTS``.
            RuntimeUnavailable: containerd is not answering.
            SandboxError: any other refusal.

        Cancellation: the RPC is cancelled on the asyncio side too.
        """
        fn = functools.partial(method, request, metadata=self.metadata(lease), timeout=rpc_timeout)
        try:
            return await run_aio(fn, loop=self._loop)
        except FOREIGN_ERRORS as error:
            raise translate(error, _name(method)) from None

    @asynccontextmanager
    async def stream(
        self,
        method: Callable[..., AsyncIterator[R]],
        request: betterproto.Message,
        *,
        rpc_timeout: float | None = None,
    ) -> AsyncGenerator[AsyncIterator[R]]:
        """Iterate a server-streaming call; the stream is closed whatever happens.

        Raises:
            The same errors as ``call``, while iterating.
        """
        # betterproto's streaming stubs are async generators, as aio_stream needs
        agen = cast(
            AsyncGenerator[R], method(request, metadata=self.metadata(), timeout=rpc_timeout)
        )
        try:
            async with aio_stream(agen, loop=self._loop) as messages:
                yield messages
        except FOREIGN_ERRORS as error:
            raise translate(error, _name(method)) from None

    async def open_raw_stream(
        self,
        route: str,
        request_type: type[S],
        reply_type: type[R],
        *,
        lease: str | None = None,
    ) -> grpclib.client.Stream[S, R]:
        """Open a bidirectional stream (content writes); the caller drives it with ``run``."""

        async def open_() -> grpclib.client.Stream[S, R]:
            stream = self._channel.request(
                route,
                grpclib.const.Cardinality.STREAM_STREAM,
                request_type,
                reply_type,
                metadata=self.metadata(lease),
            )
            await stream.__aenter__()
            return stream

        try:
            return await run_aio(open_, loop=self._loop)
        except FOREIGN_ERRORS as error:
            raise translate(error, route) from None


def _name(method: Callable[..., object]) -> str:
    return getattr(method, "__qualname__", repr(method)).replace("Stub.", ".")
