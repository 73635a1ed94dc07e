"""The gRPC control plane on a unix socket; the CLI and the TUI are its clients.

The daemon serves a ``ControlTarget`` with ``open_control_server``; the CLI talks to it
with ``open_control_client`` (Trio), or with the quick synchronous calls for commands
that must start fast: ``fetch_status`` and ``executor_prepare``/``executor_run``/
``executor_cleanup`` (what ``ephemerd gitlab-executor`` runs for gitlab-runner). Both
ends speak the capabilities views (``DaemonStatus``, ``JobView``, ``JobChange``), except
the quick calls, which answer plain tuples (``StatusReply``, whose ``of`` converts a
``DaemonStatus``; ``PreparedJob``). ``ephemerd.v1`` messages never leave this package.

Names are imported on first use: the quick calls must not pay for importing trio,
grpclib or msgspec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._client import ControlClient, open_control_client, parse_job_ref
    from ._convert import StageOutput, WatchUpdate
    from ._pidfile import pid_file, read_pid_file, remove_pid_file, write_pid_file
    from ._quick import (
        PreparedJob,
        executor_cleanup,
        executor_prepare,
        executor_run,
        fetch_status,
    )
    from ._reply import ProviderReply, StatusReply
    from ._server import SOCKET_NAME, open_control_server
    from ._target import ControlTarget

__all__ = [
    "SOCKET_NAME",
    "ControlClient",
    "ControlTarget",
    "PreparedJob",
    "ProviderReply",
    "StageOutput",
    "StatusReply",
    "WatchUpdate",
    "executor_cleanup",
    "executor_prepare",
    "executor_run",
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
    "PreparedJob": "._quick",
    "ProviderReply": "._reply",
    "StageOutput": "._convert",
    "StatusReply": "._reply",
    "WatchUpdate": "._convert",
    "executor_cleanup": "._quick",
    "executor_prepare": "._quick",
    "executor_run": "._quick",
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
    # The import statement's own path (importlib.import_module bypasses it), so that
    # ``python -X importtime`` lists the module it loads.
    module = __import__(home.lstrip("."), globals(), None, (name,), 1)
    value: object = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
