"""``Status`` over plain asyncio, for ``ephemerd status``, whose start-up time matters.

The Trio client (``open_control_client``) costs the import of trio and trio-asyncio,
about as long again as the whole call; an operator's ``ephemerd status`` (and scripts
that poll it) skip both. The wire, the conversion and the error mapping are the same
modules the Trio client uses.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpclib.client

from ephemerd._proto.ephemerd import v1 as pb
from ephemerd.capabilities import DaemonStatus

from ._convert import status_from_pb
from ._status_map import check_socket, translate_errors

__all__ = ["fetch_status"]


def fetch_status(socket_path: Path, *, call_timeout: float = 10.0) -> DaemonStatus:
    """The daemon's status, from synchronous code that runs no event loop yet.

    Raises:
        DaemonNotRunning: no socket, or nothing answers on it.
        ControlError: anything else that went wrong on the way.
    """
    check_socket(socket_path)

    async def call() -> pb.StatusResponse:
        channel = grpclib.client.Channel(path=str(socket_path))
        try:
            return await pb.ControlStub(channel).status(pb.StatusRequest(), timeout=call_timeout)
        finally:
            channel.close()

    with translate_errors(socket_path):
        return status_from_pb(asyncio.run(call()))
