"""Map errors at the control plane's edges: ephemerd errors to gRPC status codes on the
server, status codes and socket errors back to ephemerd errors on the client.

The server answers an ``EphemerdError`` with the status code of the nearest class in
``_TO_STATUS`` and the error's one-line message. The client turns a status code back
into the error class ``_FROM_STATUS`` names, so ``ephemerd jobs kill`` sees the same
``JobNotFound`` the scheduler raised. Anything unmapped becomes a ``ControlError`` with
the server's message, which is still one line fit for an operator. Socket trouble on
the client (no socket, refused, connection lost) is ``DaemonNotRunning``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from pathlib import Path

from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from ephemerd._errors import (
    ConfigError,
    ControlError,
    Cordoned,
    DaemonNotRunning,
    EphemerdError,
    ForgeError,
    JobNotFound,
    SandboxError,
    SandboxNotFound,
)

__all__ = [
    "check_socket",
    "error_from_grpc",
    "error_to_grpc",
    "status_for",
    "translate_errors",
]

# Most specific first: the first class the error is an instance of wins.
_TO_STATUS: tuple[tuple[type[EphemerdError], Status], ...] = (
    (JobNotFound, Status.NOT_FOUND),
    (SandboxNotFound, Status.NOT_FOUND),
    (Cordoned, Status.FAILED_PRECONDITION),
    (ConfigError, Status.INVALID_ARGUMENT),
    (DaemonNotRunning, Status.UNAVAILABLE),
    (ControlError, Status.INVALID_ARGUMENT),
    (ForgeError, Status.UNAVAILABLE),
    (SandboxError, Status.INTERNAL),
)

_FROM_STATUS: dict[Status, type[EphemerdError]] = {
    Status.NOT_FOUND: JobNotFound,
    Status.FAILED_PRECONDITION: Cordoned,
}


def status_for(error: EphemerdError) -> Status:
    """The gRPC status code that carries *error* (``UNKNOWN`` when none fits)."""
    for cls, status in _TO_STATUS:
        if isinstance(error, cls):
            return status
    return Status.UNKNOWN


def error_to_grpc(error: EphemerdError) -> GRPCError:
    """The ``GRPCError`` a handler raises for *error*, keeping its one-line message."""
    return GRPCError(status_for(error), str(error))


def error_from_grpc(error: GRPCError) -> EphemerdError:
    """The ephemerd error a client raises for a ``GRPCError`` the daemon answered."""
    message = (error.message or error.status.name.lower().replace("_", " ")).splitlines()[0]
    cls = _FROM_STATUS.get(error.status)
    if cls is not None:
        return cls(message)
    if error.status is Status.UNIMPLEMENTED:
        return ControlError(f"the daemon does not support this request ({message})")
    if error.status is Status.DEADLINE_EXCEEDED:
        return ControlError(f"the daemon did not answer in time ({message})")
    return ControlError(message)


@contextlib.contextmanager
def translate_errors(socket_path: Path) -> Generator[None]:
    """Turn grpclib and socket errors into ephemerd errors naming *socket_path*."""
    try:
        yield
    except GRPCError as error:
        raise error_from_grpc(error) from None
    except (FileNotFoundError, ConnectionRefusedError):
        raise DaemonNotRunning(f"ephemerd is not running (no answer on {socket_path})") from None
    except PermissionError:
        raise ControlError(
            f"permission denied on {socket_path} (the control socket is for root only)"
        ) from None
    except (StreamTerminatedError, ConnectionResetError, BrokenPipeError, ProtocolError):
        raise DaemonNotRunning(f"lost the connection to ephemerd on {socket_path}") from None
    except TimeoutError:
        raise ControlError(f"ephemerd did not answer in time on {socket_path}") from None
    except OSError as error:
        raise ControlError(f"cannot reach ephemerd on {socket_path}: {error}") from None


def check_socket(socket_path: Path) -> None:
    """Raises: DaemonNotRunning with the operator's message when there is no socket."""
    if not os.path.exists(socket_path):
        raise DaemonNotRunning(f"ephemerd is not running (no socket at {socket_path})")
