"""The fake Woodpecker server's gRPC face: grpclib handlers on 127.0.0.1.

Each handler checks what the real server's interceptors check (the ``token`` metadata on
every call but ``Auth``, the ``proto-version`` header if present), applies injected
failures, then runs the body on the Trio side (``WoodpeckerState``). ``stop``/``start``
take the server away and bring it back on the same port; ``drop_connections`` cuts every
open connection, so in-flight calls end as dropped streams.
"""

from __future__ import annotations

import ssl
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import grpclib.const
import grpclib.exceptions
import grpclib.server
import trio
from grpclib.protocol import H2Protocol

from ephemerd._aio import open_aio_loop, run_aio, run_trio_from_aio
from ephemerd._proto import proto as pb

from ._state import WoodpeckerState

__all__ = ["FakeWoodpecker", "open_fake_woodpecker"]

_AGENT = "/proto.Woodpecker/"
_Command = tuple[Callable[[], Awaitable[None]], trio.Event]


class _Server(grpclib.server.Server):
    def __init__(self, handlers: list[Any], on_connect: Callable[[], None]) -> None:
        super().__init__(handlers)
        self._protocols: weakref.WeakSet[H2Protocol] = weakref.WeakSet()
        self._on_connect = on_connect

    def _protocol_factory(self) -> H2Protocol:
        # Called per accepted connection, before any TLS handshake.
        self._on_connect()
        protocol = super()._protocol_factory()
        self._protocols.add(protocol)
        return protocol

    def close_connections(self) -> None:
        for protocol in list(self._protocols):
            connection = getattr(protocol, "connection", None)
            if connection is not None:
                connection.close()


class _Handlers:
    def __init__(self, state: WoodpeckerState, check_version: bool) -> None:
        self.state = state
        self.check_version = check_version

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        s = self.state
        table: list[tuple[str, Callable[..., Awaitable[Any]], type, type]] = [
            ("Version", s.version, pb.Empty, pb.VersionResponse),
            ("Next", s.next, pb.NextRequest, pb.NextResponse),
            ("Init", s.init, pb.InitRequest, pb.Empty),
            ("Wait", s.wait, pb.WaitRequest, pb.WaitResponse),
            ("Done", s.done, pb.DoneRequest, pb.Empty),
            ("Extend", s.extend, pb.ExtendRequest, pb.Empty),
            ("Update", s.update, pb.UpdateRequest, pb.Empty),
            ("Log", s.log, pb.LogRequest, pb.Empty),
            ("RegisterAgent", s.register_agent, pb.RegisterAgentRequest, pb.RegisterAgentResponse),
            ("UnregisterAgent", s.unregister_agent, pb.Empty, pb.Empty),
            ("ReportHealth", s.report_health, pb.ReportHealthRequest, pb.Empty),
        ]
        mapping = {
            _AGENT + name: self._handler(name, body, req, rep) for name, body, req, rep in table
        }
        mapping["/proto.WoodpeckerAuth/Auth"] = grpclib.const.Handler(
            self._auth, grpclib.const.Cardinality.UNARY_UNARY, pb.AuthRequest, pb.AuthResponse
        )
        return mapping

    async def _auth(self, stream: grpclib.server.Stream[pb.AuthRequest, pb.AuthResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        failure = self.state.take_failure("Auth")
        if failure is not None:
            raise grpclib.exceptions.GRPCError(failure, "injected")
        await stream.send_message(await run_trio_from_aio(self.state.auth, request))

    def _handler(
        self, name: str, body: Callable[..., Awaitable[Any]], request: type, reply: type
    ) -> grpclib.const.Handler:
        state = self.state

        async def handle(stream: grpclib.server.Stream[Any, Any]) -> None:
            message = await stream.recv_message()
            assert message is not None
            metadata: dict[str, str] = {
                str(k): str(v) for k, v in cast(Any, stream.metadata or {}).items()
            }
            version = metadata.get("proto-version")
            if self.check_version and version is not None:
                if not version.isdigit():
                    raise grpclib.exceptions.GRPCError(
                        grpclib.const.Status.INVALID_ARGUMENT, "invalid proto-version"
                    )
                if int(version) != state.grpc_version:
                    raise grpclib.exceptions.GRPCError(
                        grpclib.const.Status.FAILED_PRECONDITION,
                        f"proto version mismatch: server {state.grpc_version}, agent {version}",
                    )
            token = metadata.get("token")
            agent_id = state.authenticate(token)
            state.calls.append((name, agent_id))
            failure = state.take_failure(name)
            if failure is not None:
                raise grpclib.exceptions.GRPCError(failure, "injected")
            await stream.send_message(await run_trio_from_aio(body, agent_id, message))

        return grpclib.const.Handler(handle, grpclib.const.Cardinality.UNARY_UNARY, request, reply)


class FakeWoodpecker:
    """A running fake server. ``state`` is the server's memory; ``address`` its host:port."""

    def __init__(
        self,
        state: WoodpeckerState,
        commands: trio.MemorySendChannel[_Command],
        *,
        check_version: bool,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.state = state
        self._ssl = ssl_context
        self._commands = commands
        self.port: int = 0
        self.connections = 0  # accepted connections, TLS handshakes included
        self._handlers = _Handlers(state, check_version)
        self._server: _Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # start/stop/drop may be called from any task (a test body runs on another asyncio
    # loop: the provider's); they run on the fake's own loop, in its command task.
    async def serve_commands(self, receive: trio.MemoryReceiveChannel[_Command]) -> None:
        async for fn, finished in receive:
            try:
                await fn()
            finally:
                finished.set()

    async def _on_own_loop(self, fn: Callable[[], Awaitable[None]]) -> None:
        finished = trio.Event()
        await self._commands.send((fn, finished))
        with trio.CancelScope(shield=True):
            await finished.wait()

    async def start(self) -> None:
        """Listen (again, on the same port once one was picked)."""
        await self._on_own_loop(self._start)

    async def _start(self) -> None:
        async def start() -> _Server:
            server = _Server([self._handlers], self._count_connection)
            await server.start("127.0.0.1", self.port, ssl=self._ssl)
            return server

        self._server = await run_aio(start)
        if not self.port:
            listener = cast(Any, self._server)._server  # grpclib keeps the asyncio server here
            self.port = int(listener.sockets[0].getsockname()[1])

    def _count_connection(self) -> None:
        self.connections += 1

    async def stop(self) -> None:
        """Take the server away: stop listening and cut every connection."""
        await self._on_own_loop(self._stop)

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return

        async def stop() -> None:
            server.close()
            server.close_connections()
            await server.wait_closed()

        await run_aio(stop)

    async def drop_connections(self) -> None:
        """Cut every open connection, leaving the server listening."""
        await self._on_own_loop(self._drop)

    async def _drop(self) -> None:
        server = self._server
        if server is None:
            return

        async def drop() -> None:
            server.close_connections()

        await run_aio(drop)


@asynccontextmanager
async def open_fake_woodpecker(
    *,
    agent_secret: str = "",
    lease: float = 60.0,
    check_version: bool = True,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncGenerator[FakeWoodpecker]:
    """A fake Woodpecker server on 127.0.0.1 for the block's duration (TLS with *ssl_context*)."""
    state = WoodpeckerState(agent_secret=agent_secret, lease=lease)
    send, receive = trio.open_memory_channel[_Command](0)
    async with open_aio_loop(), trio.open_nursery() as nursery:
        state.bind(nursery)
        fake = FakeWoodpecker(state, send, check_version=check_version, ssl_context=ssl_context)
        nursery.start_soon(fake.serve_commands, receive)
        await fake.start()
        try:
            yield fake
        finally:
            await fake.stop()
            nursery.cancel_scope.cancel()
