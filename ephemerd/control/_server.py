"""Serve the control plane on ``<data-dir>/ephemerd.sock``.

The socket is bound, chmod'ed to 0600 and only then listened on: until ``listen()`` a
connect is refused, so no one can reach the socket while it still has the umask's mode.
A leftover socket file is removed only after a connect to it was refused; if a daemon
answers there, startup fails with "ephemerd is already running (pid N)".

grpclib runs on an asyncio loop of its own (``open_aio_loop``) inside the caller's Trio
task tree; leaving the block stops the server, cancels every open call and removes the
socket, shielded and bounded by ``SHUTDOWN_TIMEOUT``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import weakref
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path

import grpclib.server
import trio
from grpclib.protocol import H2Protocol

from ephemerd._aio import open_aio_loop, run_aio
from ephemerd._errors import ControlError, DaemonAlreadyRunning, EphemerdError
from ephemerd.capabilities import CustomExecutor

from ._client import open_control_client
from ._handlers import ControlService
from ._target import ControlTarget

__all__ = ["SOCKET_NAME", "open_control_server"]

log = logging.getLogger(__name__)

SOCKET_NAME = "ephemerd.sock"
SHUTDOWN_TIMEOUT = 5.0
PROBE_TIMEOUT = 3.0
_MAX_UNIX_PATH = 107  # sun_path is 108 bytes with the terminating NUL


@contextlib.asynccontextmanager
async def open_control_server(
    target: ControlTarget,
    *,
    socket_path: Path,
    executors: Mapping[str, CustomExecutor] | None = None,
) -> AsyncGenerator[Path]:
    """Serve *target* on the unix socket *socket_path* for the block's duration.

    *executors* (provider instance name to ``CustomExecutor``) answer the custom-executor
    RPCs of ``ephemerd gitlab-executor``.

    Yields the socket path once clients can connect.

    Raises:
        DaemonAlreadyRunning: a daemon answers on *socket_path*.
        ControlError: the socket cannot be created (path too long, not a socket, ...).

    Cancellation: safe; the server stops and the socket file is removed, shielded.
    """
    socket_path = Path(socket_path)
    if len(os.fsencode(socket_path)) > _MAX_UNIX_PATH:
        raise ControlError(f"control socket path is too long for a unix socket: {socket_path}")
    await _clear_stale_socket(socket_path)
    sock = _bind(socket_path)
    identity = os.stat(socket_path)
    try:
        async with open_aio_loop():
            server = await run_aio(_start, ControlService(target, executors), sock)
            try:
                log.info("control socket listening on %s", socket_path)
                yield socket_path
            finally:
                with trio.move_on_after(SHUTDOWN_TIMEOUT) as scope:
                    scope.shield = True
                    await run_aio(_stop, server)
                if scope.cancelled_caught:
                    log.warning("control server did not stop within %.0fs", SHUTDOWN_TIMEOUT)
    finally:
        sock.close()
        _unlink_if_same(socket_path, identity)


class _Server(grpclib.server.Server):
    """grpclib's server, which also closes the open connections when it stops.

    ``Server.close`` cancels the running calls but leaves their connections open (asyncio
    closes client connections only from Python 3.12), so a watching client would wait
    forever for a daemon that is gone. Closing them makes it see the daemon leave.
    """

    def __init__(self, service: ControlService) -> None:
        super().__init__([service])
        self._protocols: weakref.WeakSet[H2Protocol] = weakref.WeakSet()

    def _protocol_factory(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        self._protocols.add(protocol)
        return protocol

    def close_connections(self) -> None:
        for protocol in list(self._protocols):
            connection = getattr(protocol, "connection", None)
            if connection is not None:
                connection.close()


async def _start(service: ControlService, sock: socket.socket) -> _Server:
    server = _Server(service)
    await server.start(sock=sock)  # listen() happens here, after the chmod
    return server


async def _stop(server: _Server) -> None:
    server.close()
    server.close_connections()
    await server.wait_closed()
    # A connection accepted while the listener was closing got a protocol after the
    # first sweep; the listener is gone now, so this sweep is the last one needed.
    server.close_connections()


def _bind(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        os.chmod(path, 0o600)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise DaemonAlreadyRunning(
                f"ephemerd is already running (another daemon took {path})"
            ) from None
        raise ControlError(f"cannot create control socket {path}: {error.strerror}") from None
    return sock


async def _clear_stale_socket(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse if a daemon answers there."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"{path} exists and is not a socket; remove it or pick another data dir")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale control socket %s", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as error:
        raise ControlError(f"cannot check control socket {path}: {error.strerror}") from None
    finally:
        probe.close()
    pid = await _probe_pid(path)
    if pid is None:
        raise DaemonAlreadyRunning(
            f"something listens on {path} but does not answer as ephemerd; not replacing it"
        )
    raise DaemonAlreadyRunning(f"ephemerd is already running (pid {pid})")


async def _probe_pid(path: Path) -> int | None:
    """The pid of the daemon answering on *path*, or ``None`` if nothing answers in time."""
    # Bounded on the Trio side too: the grpclib deadline does not cover connecting.
    with trio.move_on_after(PROBE_TIMEOUT):
        try:
            async with open_control_client(path, call_timeout=PROBE_TIMEOUT) as client:
                return (await client.status()).pid
        except EphemerdError:
            return None
    return None


def _unlink_if_same(path: Path, identity: os.stat_result) -> None:
    # Only remove the socket we bound, never one a newer daemon put in its place.
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return
    if (now.st_dev, now.st_ino) == (identity.st_dev, identity.st_ino):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
