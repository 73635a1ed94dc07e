"""The wire side of the Woodpecker agent: one gRPC channel, auth, and error translation.

Every call but ``Auth`` carries ``token`` (the access token), ``hostname`` and
``proto-version`` metadata. An UNAUTHENTICATED answer re-authenticates once and repeats
the call; the token is also refreshed on a timer (it lives one hour). grpclib errors
become ephemerd errors here: UNAVAILABLE, timeouts and dropped connections are
``ForgeUnavailable`` (retried by ``call_retrying``), a refused credential is
``ForgeAuthError``, an untrusted TLS certificate a plain ``ForgeError`` (not retried
here). The agent id is kept in a file so a restart does not create another agent record
on the server.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import betterproto
import grpclib.client
import grpclib.const
import grpclib.exceptions
import trio

from ephemerd._aio import run_aio
from ephemerd._errors import (
    ConfigError,
    ForgeAuthError,
    ForgeError,
    ForgeNotFound,
    ForgePermissionError,
    ForgeProtocolError,
    ForgeUnavailable,
)
from ephemerd._proto import proto as pb
from ephemerd._retry import Backoff

from ._options import PROTOCOL_VERSION, WoodpeckerOptions

__all__ = ["AgentClient", "load_agent_id", "save_agent_id"]

log = logging.getLogger("ephemerd.forges.woodpecker")

R = TypeVar("R")

_TRANSIENT = {
    grpclib.const.Status.UNAVAILABLE,
    grpclib.const.Status.DEADLINE_EXCEEDED,
    grpclib.const.Status.ABORTED,
    grpclib.const.Status.DATA_LOSS,
}
_NETWORK = (grpclib.exceptions.StreamTerminatedError, OSError, ConnectionError, TimeoutError)


def translate(error: BaseException, what: str) -> ForgeError:
    """The ephemerd error for a grpclib or network failure of the call *what*."""
    if isinstance(error, grpclib.exceptions.GRPCError):
        message = f"woodpecker {what}: {error.message or error.status.name}"
        status = error.status
        if status in _TRANSIENT:
            return ForgeUnavailable(message)
        if status is grpclib.const.Status.UNAUTHENTICATED:
            return ForgeAuthError(message)
        if status is grpclib.const.Status.PERMISSION_DENIED:
            return ForgePermissionError(message)
        if status is grpclib.const.Status.NOT_FOUND:
            return ForgeNotFound(message)
        if status in (grpclib.const.Status.FAILED_PRECONDITION, grpclib.const.Status.UNIMPLEMENTED):
            return ForgeProtocolError(message)
        return ForgeError(message)
    if isinstance(error, ssl.SSLCertVerificationError):
        # Not transient: retrying at once cannot help; the poll restarts with backoff.
        reason = error.verify_message or error.reason or "verify failed"
        return ForgeError(
            f"woodpecker {what}: the server's TLS certificate is not trusted ({reason}); "
            "set ca_file to the CA that signed it"
        )
    detail = str(error) or type(error).__name__
    return ForgeUnavailable(f"woodpecker {what}: server unreachable ({detail})")


def load_agent_id(path: Path) -> int:
    """The agent id kept in *path*, or -1 (ask the server for a new one)."""
    try:
        value = json.loads(path.read_text()).get("agent_id", -1)
    except (OSError, ValueError, AttributeError):
        return -1
    return value if isinstance(value, int) and value > 0 else -1


def save_agent_id(path: Path, agent_id: int) -> bool:
    """Keep *agent_id* in *path* (0600, atomically); ``False`` if it cannot be written."""
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"agent_id": agent_id}, f)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot keep the woodpecker agent id in %s: %s", path, exc.strerror)
        return False
    return True


def _tls_context(options: WoodpeckerOptions) -> ssl.SSLContext | None:
    """The client TLS context: the system's CAs, or only those of ``ca_file``.

    Raises:
        ConfigError: ``ca_file`` cannot be read or holds no certificate.
    """
    if not options.tls:
        return None
    cafile = options.ca_file
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        detail = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise ConfigError(
            f"woodpecker instance {options.name!r}: cannot load ca_file {cafile}: {detail}"
        ) from None
    context.set_alpn_protocols(["h2"])
    return context


async def _make_channel(
    host: str, port: int, context: ssl.SSLContext | None
) -> grpclib.client.Channel:
    # Must run inside the asyncio loop: grpclib binds the running loop.
    return grpclib.client.Channel(host, port, ssl=context)


class AgentClient:
    """The agent's connection to one Woodpecker server. Build it with ``connect``.

    Attributes:
        agent_id: the server's id of this agent (-1 until authenticated).
        persisted: the agent id is kept on disk (a restart reuses it).
    """

    def __init__(self, channel: grpclib.client.Channel, options: WoodpeckerOptions) -> None:
        self._channel = channel
        self._options = options
        self._stub = pb.WoodpeckerStub(channel)
        self._auth_stub = pb.WoodpeckerAuthStub(channel)
        self._token = ""
        self._auth_lock = trio.Lock()
        self._auth_generation = 0
        self.agent_id = load_agent_id(options.agent_id_path)
        self.persisted = self.agent_id > 0

    @classmethod
    async def connect(cls, options: WoodpeckerOptions) -> AgentClient:
        """A client for *options*' server; no I/O happens until the first call.

        Raises:
            ConfigError: the TLS ``ca_file`` cannot be loaded.
        """
        context = _tls_context(options)
        channel = await run_aio(_make_channel, options.host, options.port, context)
        return cls(channel, options)

    async def aclose(self) -> None:
        async def close() -> None:
            self._channel.close()

        await run_aio(close)

    @property
    def stub(self) -> pb.WoodpeckerStub:
        return self._stub

    def _metadata(self) -> dict[str, str]:
        return {
            "token": self._token,
            "hostname": self._options.hostname,
            "proto-version": str(PROTOCOL_VERSION),
        }

    # -- auth ----------------------------------------------------------------------------

    async def authenticate(self) -> None:
        """Exchange the agent secret or token for an access token; keep the agent id.

        A shared secret with an agent id the server no longer knows (its record was
        deleted) falls back to asking for a new agent.

        Raises:
            ForgeAuthError: the server refused the credential.
            ForgeUnavailable: the server cannot be reached.
        """
        generation = self._auth_generation
        async with self._auth_lock:
            if generation != self._auth_generation and self._token:
                return  # another task refreshed it meanwhile
            try:
                reply = await self._auth(self.agent_id)
            except ForgeAuthError:
                if not (self._options.agent_secret and self.agent_id > 0):
                    raise
                log.warning(
                    "%s: the server does not know agent %d any more; registering a new agent",
                    self._options.name,
                    self.agent_id,
                )
                reply = await self._auth(-1)
            self._token = reply.access_token
            self._auth_generation += 1
            if reply.agent_id > 0 and reply.agent_id != self.agent_id:
                self.agent_id = reply.agent_id
                self.persisted = save_agent_id(self._options.agent_id_path, reply.agent_id)

    async def _auth(self, agent_id: int) -> pb.AuthResponse:
        request = pb.AuthRequest(agent_token=self._options.credential, agent_id=agent_id)
        call = functools.partial(self._auth_stub.auth, request, timeout=self._options.rpc_timeout)
        try:
            reply = await run_aio(call)
        except (grpclib.exceptions.GRPCError, *_NETWORK) as error:
            translated = translate(error, "Auth")
            if isinstance(error, grpclib.exceptions.GRPCError) and not translated.retryable:
                raise ForgeAuthError(f"{translated} (check the agent secret or token)") from None
            if not isinstance(error, grpclib.exceptions.GRPCError):
                raise translated from None  # unreachable, or an untrusted certificate
            raise ForgeAuthError(str(translated)) from None
        if reply.status != "ok" or not reply.access_token:
            raise ForgeAuthError(f"woodpecker Auth: refused (status {reply.status!r})")
        return reply

    # -- calls ---------------------------------------------------------------------------

    async def call(
        self,
        method: Callable[..., Awaitable[R]],
        request: betterproto.Message,
        *,
        rpc_timeout: float | None = None,
        what: str = "",
    ) -> R:
        """Call the unary stub *method*; re-authenticate once on UNAUTHENTICATED.

        Args:
            rpc_timeout: seconds before the call gives up; ``None`` waits for ever (long polls).

        Raises:
            ForgeError: the translated failure (see ``translate``).
        Cancellation: the call is cancelled on the asyncio side as well.
        """
        what = what or getattr(method, "__name__", "call")
        if not self._token:
            await self.authenticate()
        for attempt in (1, 2):
            generation = self._auth_generation
            call = functools.partial(
                method, request, metadata=self._metadata(), timeout=rpc_timeout
            )
            try:
                return await run_aio(call)
            except (grpclib.exceptions.GRPCError, *_NETWORK) as error:
                translated = translate(error, what)
            if isinstance(translated, ForgeAuthError) and attempt == 1:
                if generation == self._auth_generation:
                    await self.authenticate()
                continue
            raise translated
        raise AssertionError("unreachable")  # pragma: no cover

    async def call_retrying(
        self,
        method: Callable[..., Awaitable[R]],
        request: betterproto.Message,
        *,
        rpc_timeout: float | None = None,
        give_up_after: float | None = None,
        what: str = "",
    ) -> R:
        """``call``, retried with backoff while the server is unreachable.

        Args:
            give_up_after: seconds of failures after which the last error is raised;
                ``None`` retries until cancelled.

        Raises:
            ForgeError: a failure that retrying cannot fix, or the last one after
                *give_up_after*.
        """
        backoff = Backoff(self._options.retry)
        began = trio.current_time()
        while True:
            try:
                return await self.call(method, request, rpc_timeout=rpc_timeout, what=what)
            except ForgeUnavailable as exc:
                now = trio.current_time()
                if give_up_after is not None and now - began >= give_up_after:
                    raise
                delay = backoff.next_delay(now) or self._options.retry.schedule[-1]
                log.debug("%s: %s; retrying in %.2fs", self._options.name, exc, delay)
                await trio.sleep(delay)
