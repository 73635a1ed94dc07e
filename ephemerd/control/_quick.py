"""A blocking gRPC client for the calls whose command must start fast.

Scripts poll ``ephemerd status``, and gitlab-runner starts ``ephemerd gitlab-executor``
about a dozen times per job; the asyncio + grpclib + betterproto client costs about
300 ms of imports before it sends a byte. This client speaks the same wire to the same
server with ``_socket`` (``socket`` adds ~5 ms of imports we do not use) and ``_h2``
(one call on its own HTTP/2 connection), and encodes and decodes the few messages it
needs by hand (no msgspec either): ``Status`` and the three custom-executor calls.
Errors mean what they mean for the Trio client: a non-zero ``grpc-status`` maps as in
``_status_map``, socket trouble is ``DaemonNotRunning``. Tests check each part against
the grpclib/betterproto path.
"""

from __future__ import annotations

import _socket
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple, TypeVar

from ephemerd._errors import ControlError, Cordoned, DaemonNotRunning, EphemerdError, JobNotFound

from ._h2 import Malformed as _Malformed
from ._h2 import grpc_call
from ._pbwire import Value as _Value
from ._pbwire import bytes_field as _bytes
from ._pbwire import double as _double
from ._pbwire import field as _field
from ._pbwire import fields as _fields
from ._pbwire import int32 as _int32
from ._pbwire import last as _last
from ._pbwire import message as _message
from ._pbwire import string as _string
from ._pbwire import text as _text
from ._pbwire import uint32 as _uint32
from ._pbwire import varint_value as _varint_value
from ._reply import ProviderReply, StatusReply

__all__ = [
    "PreparedJob",
    "error_for_status",
    "executor_cleanup",
    "executor_prepare",
    "executor_run",
    "fetch_status",
]

_SERVICE = "/ephemerd.v1.Control/"
T = TypeVar("T")

# grpc-status codes by number, for messages; the mapping is ``_status_map``'s.
_CODES = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
]
_FROM_STATUS: dict[int, type[EphemerdError]] = {5: JobNotFound, 9: Cordoned}
# ProviderState values by wire number (``ephemerd.v1.ProviderState``); anything else,
# 0 included, reads as "starting", as in ``_convert``.
_PROVIDER_STATES = {1: "starting", 2: "ok", 3: "backing_off", 4: "stopped"}


class _SinkFailed(Exception):
    """Carries an ``OSError`` of the output callback past the connection's error mapping."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class PreparedJob(NamedTuple):
    """What ``executor_prepare`` answers: where the job runs."""

    sandbox: str
    image: str


def fetch_status(socket_path: Path, *, call_timeout: float = 10.0) -> StatusReply:
    """The daemon's status, from synchronous code that runs no event loop.

    Raises:
        DaemonNotRunning: no socket, nothing answers on it, or the connection was lost.
        JobNotFound, Cordoned: the daemon answered with the matching status code.
        ControlError: anything else (no answer within *call_timeout*, a refusal, ...).
    """
    reply = _unary(socket_path, "Status", b"", timeout=call_timeout)
    return _decoded(socket_path, status_from_bytes, reply)


def executor_prepare(
    socket_path: Path,
    job_id: str,
    *,
    instance: str = "",
    variables: Mapping[str, str],
    job_response: bytes = b"",
) -> PreparedJob:
    """Admit a custom-executor job; return once its sandbox runs (no time limit).

    Raises:
        Cordoned: the daemon is cordoned or draining.
        DaemonNotRunning, ControlError: as for ``fetch_status``; the daemon's reason why
            the job did not start, in one line.
    """
    request = prepare_request(
        instance=instance, job_id=job_id, variables=variables, job_response=job_response
    )
    reply = _unary(socket_path, "ExecutorPrepare", request, timeout=None)
    return _decoded(socket_path, prepared_from_bytes, reply)


def executor_run(
    socket_path: Path,
    job_id: str,
    *,
    instance: str = "",
    script: bytes,
    stage: str,
    on_output: Callable[[str, bytes], None],
) -> int:
    """Run one stage's script in the job's sandbox; its exit code (no time limit).

    Each chunk of output goes to *on_output* (``"stdout"`` or ``"stderr"``, the bytes) as
    it arrives.

    Raises:
        JobNotFound: the job is not running here.
        DaemonNotRunning, ControlError: as for ``fetch_status``, or no exit status came.
    Cancellation: an exception raised meanwhile (a signal handler's) closes the
        connection, and the daemon kills the script.
    """
    codes: list[int] = []

    def on_message(message: bytes) -> None:
        stream, data, code = output_from_bytes(message)
        if code is not None:
            codes.append(code)
        elif data:
            try:
                on_output(stream, data)
            except OSError as error:  # our own output failed, not the connection
                raise _SinkFailed(error) from error

    request = run_request(instance=instance, job_id=job_id, script=script, stage=stage)
    try:
        _call(socket_path, "ExecutorRun", request, timeout=None, on_message=on_message)
    except _SinkFailed as failed:
        raise failed.error from None
    if not codes:
        raise ControlError(f"the daemon ended stage {stage} without an exit status")
    return codes[-1]


def executor_cleanup(socket_path: Path, job_id: str, *, instance: str = "") -> bool:
    """End the job; return once its sandbox is gone. Whether the daemon knew the job.

    Raises:
        DaemonNotRunning, ControlError: as for ``fetch_status``.
    """
    request = cleanup_request(instance=instance, job_id=job_id)
    reply = _unary(socket_path, "ExecutorCleanup", request, timeout=None)
    return _decoded(socket_path, known_from_bytes, reply)


def error_for_status(code: int, message: str) -> EphemerdError:
    """The ephemerd error for a non-zero ``grpc-status``, as ``error_from_grpc`` makes it."""
    name = _CODES[code] if 0 <= code < len(_CODES) else "UNKNOWN"
    message = (message or name.lower().replace("_", " ")).splitlines()[0]
    cls = _FROM_STATUS.get(code)
    if cls is not None:
        return cls(message)
    if name == "UNIMPLEMENTED":
        return ControlError(f"the daemon does not support this request ({message})")
    if name == "DEADLINE_EXCEEDED":
        return ControlError(f"the daemon did not answer in time ({message})")
    return ControlError(message)


def status_from_bytes(data: bytes) -> StatusReply:
    """Decode a serialized ``StatusResponse``: ``StatusReply.of(status_from_pb(...))``.

    Raises:
        Malformed: *data* is not a ``StatusResponse``.
    """
    f = _fields(data)
    return StatusReply(
        pid=_int32(_last(f, 1, 0)),
        version=_text(_last(f, 2, b"")),
        started_at=_double(_last(f, 3, b"\0" * 8)),
        active_jobs=_uint32(_last(f, 5, 0)),
        parked_jobs=_uint32(_last(f, 6, 0)),
        max_concurrent=_uint32(_last(f, 7, 0)),
        cordoned=bool(_varint_value(_last(f, 8, 0))),
        draining=bool(_varint_value(_last(f, 9, 0))),
        providers=tuple(_provider(raw) for raw in f.get(10, ())),
    )


# -- the call ----------------------------------------------------------------------------


def _unary(socket_path: Path, method: str, request: bytes, *, timeout: float | None) -> bytes:
    messages: list[bytes] = []
    _call(socket_path, method, request, timeout=timeout, on_message=messages.append)
    if len(messages) != 1:
        raise ControlError(
            f"ephemerd sent a malformed reply on {socket_path}: {len(messages)} messages"
        )
    return messages[0]


def _call(
    socket_path: Path,
    method: str,
    request: bytes,
    *,
    timeout: float | None,
    on_message: Callable[[bytes], None],
) -> None:
    """One call on a connection of its own; every failure as an ``EphemerdError``."""
    if not os.path.exists(socket_path):
        raise DaemonNotRunning(f"ephemerd is not running (no socket at {socket_path})")
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(os.fspath(socket_path))
            headers = grpc_call(
                sock, _SERVICE + method, request, deadline=deadline, on_message=on_message
            )
        finally:
            sock.close()
    except (FileNotFoundError, ConnectionRefusedError):
        raise DaemonNotRunning(f"ephemerd is not running (no answer on {socket_path})") from None
    except PermissionError:
        raise ControlError(
            f"permission denied on {socket_path} (the control socket is for root only)"
        ) from None
    except (ConnectionResetError, BrokenPipeError, EOFError):
        raise DaemonNotRunning(f"lost the connection to ephemerd on {socket_path}") from None
    except TimeoutError:
        raise ControlError(f"ephemerd did not answer in time on {socket_path}") from None
    except OSError as error:
        raise ControlError(f"cannot reach ephemerd on {socket_path}: {error}") from None
    except _Malformed as error:
        raise ControlError(f"ephemerd sent a malformed reply on {socket_path}: {error}") from None
    try:
        _check_status(headers)
    except _Malformed as error:
        raise ControlError(f"ephemerd sent a malformed reply on {socket_path}: {error}") from None


def _decoded(socket_path: Path, decode: Callable[[bytes], T], data: bytes) -> T:
    try:
        return decode(data)
    except _Malformed as error:
        raise ControlError(f"ephemerd sent a malformed reply on {socket_path}: {error}") from None


def _check_status(headers: dict[str, str]) -> None:
    if headers.get(":status") != "200":
        raise _Malformed(f"HTTP status {headers.get(':status')}")
    code = headers.get("grpc-status")
    if code is None or not code.isdigit():
        raise _Malformed("no grpc-status")
    if int(code) != 0:
        from urllib.parse import unquote

        raise error_for_status(int(code), unquote(headers.get("grpc-message", "")))


# -- the executor messages ---------------------------------------------------------------


def prepare_request(
    *, instance: str, job_id: str, variables: Mapping[str, str], job_response: bytes
) -> bytes:
    """A serialized ``ExecutorPrepareRequest``."""
    entries = (_field(3, _string(1, k) + _string(2, v)) for k, v in variables.items())
    return b"".join((_string(1, instance), _string(2, job_id), *entries, _bytes(4, job_response)))


def run_request(*, instance: str, job_id: str, script: bytes, stage: str) -> bytes:
    """A serialized ``ExecutorRunRequest``."""
    return _string(1, instance) + _string(2, job_id) + _bytes(3, script) + _string(4, stage)


def cleanup_request(*, instance: str, job_id: str) -> bytes:
    """A serialized ``ExecutorCleanupRequest``."""
    return _string(1, instance) + _string(2, job_id)


def known_from_bytes(data: bytes) -> bool:
    """The ``known`` flag of a serialized ``ExecutorCleanupResponse``."""
    return bool(_varint_value(_last(_fields(data), 1, 0)))


def prepared_from_bytes(data: bytes) -> PreparedJob:
    """The sandbox and image of a serialized ``ExecutorPrepareResponse``'s job."""
    job = _fields(b"".join(_message(raw) for raw in _fields(data).get(1, ())))  # messages merge
    return PreparedJob(sandbox=_text(_last(job, 9, b"")), image=_text(_last(job, 10, b"")))


def output_from_bytes(data: bytes) -> tuple[str, bytes, int | None]:
    """A serialized ``ExecutorOutput`` as ``output_from_pb`` reads it: stream, data, exit."""
    f = _fields(data)
    if _varint_value(_last(f, 3, 0)):
        return "", b"", _int32(_last(f, 4, 0))
    stderr = _message(_last(f, 2, b""))
    if stderr:
        return "stderr", stderr, None
    return "stdout", _message(_last(f, 1, b"")), None


# -- the status messages -----------------------------------------------------------------


def _provider(raw: _Value) -> ProviderReply:
    if not isinstance(raw, bytes):
        raise _Malformed("a varint where a Provider belongs")
    f = _fields(raw)
    return ProviderReply(
        instance=_text(_last(f, 1, b"")),
        kind=_text(_last(f, 2, b"")),
        state=_PROVIDER_STATES.get(_varint_value(_last(f, 3, 0)), "starting"),
        webhook=bool(_varint_value(_last(f, 4, 0))),
        last_error=_text(_last(f, 5, b"")),
        last_ok_at=_double(_last(f, 6, b"\0" * 8)),
        active_jobs=_uint32(_last(f, 7, 0)),
    )
