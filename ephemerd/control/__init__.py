"""The gRPC control plane on a unix socket; the CLI and the TUI are its clients.

The daemon serves a ``ControlTarget`` with ``open_control_server``; the CLI talks to it
with ``open_control_client`` (Trio) or ``fetch_status`` (a quick synchronous status).
Both ends speak the capabilities views (``DaemonStatus``, ``JobView``, ``JobChange``);
``ephemerd.v1`` messages never leave this package.

Names are imported on first use: ``fetch_status`` must not pay for importing trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._client import ControlClient, open_control_client, parse_job_ref
    from ._convert import WatchUpdate
    from ._pidfile import pid_file, read_pid_file, remove_pid_file, write_pid_file
    from ._quick import fetch_status
    from ._server import SOCKET_NAME, open_control_server
    from ._target import ControlTarget

__all__ = [
    "SOCKET_NAME",
    "ControlClient",
    "ControlTarget",
    "WatchUpdate",
    "fetch_status",
    "open_control_client",
    "open_control_server",
    "parse_job_ref",
    "pid_file",
    "read_pid_file",
    "remove_pid_file",
    "write_pid_file",
]

_HOMES = {
    "SOCKET_NAME": "._server",
    "ControlClient": "._client",
    "ControlTarget": "._target",
    "WatchUpdate": "._convert",
    "fetch_status": "._quick",
    "open_control_client": "._client",
    "open_control_server": "._server",
    "parse_job_ref": "._client",
    "pid_file": "._pidfile",
    "read_pid_file": "._pidfile",
    "remove_pid_file": "._pidfile",
    "write_pid_file": "._pidfile",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
