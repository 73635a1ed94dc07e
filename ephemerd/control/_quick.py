"""A blocking gRPC client for ``Status`` alone, because ``ephemerd status`` must start fast.

Scripts poll ``ephemerd status``; the asyncio + grpclib + betterproto client costs
about 300 ms of imports before it sends a byte. This module speaks the same wire to the
same server with ``_socket`` (``socket`` adds ~5 ms of imports we do not use) and
``_hpack``: one HTTP/2 connection on the unix socket, one unary call, then the
``StatusResponse`` decoded by hand into ``DaemonStatus``. The request is fixed, so it
is built from literal HPACK fields; the reply needs a real HPACK decoder (the server
uses Huffman coding and its dynamic table). Errors mean what they mean for the Trio
client: a non-zero ``grpc-status`` maps as in ``_status_map``, socket trouble is
``DaemonNotRunning``. Tests check each part against the grpclib/betterproto path.
"""

from __future__ import annotations

import _socket
import os
import struct
import time
from pathlib import Path

from ephemerd._errors import ControlError, Cordoned, DaemonNotRunning, EphemerdError, JobNotFound
from ephemerd.capabilities import DaemonStatus, ProviderState, ProviderView

from ._hpack import HpackDecoder, HpackError

__all__ = ["fetch_status"]

_PATH = "/ephemerd.v1.Control/Status"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _CONTINUATION = 0, 1, 3, 4, 6, 7, 9
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_MAX_WINDOW = 2**31 - 1
_MAX_REPLY = 16 * 2**20  # far beyond any status; a bound on what a broken peer can make us hold

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
# Wire values are ProviderState's order, from 1; anything else reads as STARTING.
_PROVIDER_STATES = dict(enumerate(ProviderState, start=1))


class _Malformed(Exception):
    """The reply does not follow HTTP/2, gRPC or the ``StatusResponse`` schema."""


def fetch_status(socket_path: Path, *, call_timeout: float = 10.0) -> DaemonStatus:
    """The daemon's status, from synchronous code that runs no event loop.

    Raises:
        DaemonNotRunning: no socket, nothing answers on it, or the connection was lost.
        JobNotFound, Cordoned: the daemon answered with the matching status code.
        ControlError: anything else (no answer within *call_timeout*, a refusal, ...).
    """
    if not os.path.exists(socket_path):
        raise DaemonNotRunning(f"ephemerd is not running (no socket at {socket_path})")
    deadline = time.monotonic() + call_timeout
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(call_timeout)
            sock.connect(os.fspath(socket_path))
            sock.sendall(_request(call_timeout))
            headers, body = _Connection(sock, deadline).exchange()
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
        return status_from_bytes(_unframe(body))
    except _Malformed as error:
        raise ControlError(f"ephemerd sent a malformed reply on {socket_path}: {error}") from None


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


def status_from_bytes(data: bytes) -> DaemonStatus:
    """Decode a serialized ``StatusResponse``, as ``status_from_pb`` would see it.

    Raises:
        _Malformed: *data* is not a ``StatusResponse``.
    """
    f = _fields(data)
    return DaemonStatus(
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


# -- HTTP/2 --------------------------------------------------------------------------------


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


def _literal(name: str, value: str) -> bytes:
    """An HPACK "literal without indexing, new name" field, no Huffman coding."""
    name_b, value_b = name.encode(), value.encode()
    assert len(name_b) < 127 and len(value_b) < 127
    return bytes([0, len(name_b)]) + name_b + bytes([len(value_b)]) + value_b


def _request(call_timeout: float) -> bytes:
    """Preface, SETTINGS (a wide-open receive window), and the whole call on stream 1."""
    fields = (
        (":method", "POST"),
        (":scheme", "http"),
        (":path", _PATH),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", f"{max(1, min(int(call_timeout * 1000), 99_999_999))}m"),
    )
    settings = struct.pack(">HI", 0x4, _MAX_WINDOW)  # SETTINGS_INITIAL_WINDOW_SIZE
    return b"".join(
        (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            _frame(_SETTINGS, 0, 0, settings),
            _frame(8, 0, 0, struct.pack(">I", _MAX_WINDOW - 65535)),  # WINDOW_UPDATE
            _frame(_HEADERS, _END_HEADERS, 1, b"".join(_literal(n, v) for n, v in fields)),
            _frame(_DATA, _END_STREAM, 1, b"\0\0\0\0\0"),  # an empty, uncompressed StatusRequest
        )
    )


class _Connection:
    """Reads frames off the socket until stream 1 ends; answers SETTINGS and PING."""

    def __init__(self, sock: _socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._buffer = bytearray()
        self._decoder = HpackDecoder()

    def exchange(self) -> tuple[dict[str, str], bytes]:
        """Response headers and trailers merged, and the DATA payload of stream 1."""
        headers: dict[str, str] = {}
        body = bytearray()
        block = bytearray()
        end_stream = False
        while True:
            kind, flags, stream, payload = self._read_frame()
            if kind == _SETTINGS and not flags & _ACK:
                self._sock.sendall(_frame(_SETTINGS, _ACK, 0))
            elif kind == _PING and not flags & _ACK:
                self._sock.sendall(_frame(_PING, _ACK, 0, payload))
            elif kind == _GOAWAY:
                raise ConnectionResetError("GOAWAY")
            elif stream != 1:
                continue
            elif kind == _RST_STREAM:
                raise ConnectionResetError("RST_STREAM")
            elif kind == _DATA:
                body += _unpad(flags, payload)
                if len(body) > _MAX_REPLY:
                    raise _Malformed("reply too large")
            elif kind in (_HEADERS, _CONTINUATION):
                if kind == _HEADERS:
                    payload = _unpad(flags, payload)
                    if flags & _PRIORITY:
                        payload = payload[5:]
                    end_stream = bool(flags & _END_STREAM)
                block += payload
                if flags & _END_HEADERS:
                    try:
                        headers.update(self._decoder.decode(bytes(block)))
                    except HpackError as error:
                        raise _Malformed(f"bad header block ({error})") from None
                    block.clear()
                    if end_stream:
                        return headers, bytes(body)
            if kind == _DATA and flags & _END_STREAM:
                raise _Malformed("stream ended without trailers")

    def _read_frame(self) -> tuple[int, int, int, bytes]:
        head = self._read(9)
        length = int.from_bytes(head[:3], "big")
        kind, flags, stream = struct.unpack(">BBI", head[3:])
        return kind, flags, stream & 0x7FFFFFFF, self._read(length)

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(left)
            chunk = self._sock.recv(65536)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def _unpad(flags: int, payload: bytes) -> bytes:
    if not flags & _PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise _Malformed("bad padding")
    return payload[1 : len(payload) - payload[0]]


# -- gRPC ----------------------------------------------------------------------------------


def _check_status(headers: dict[str, str]) -> None:
    if headers.get(":status") != "200":
        raise _Malformed(f"HTTP status {headers.get(':status')}")
    code = headers.get("grpc-status")
    if code is None or not code.isdigit():
        raise _Malformed("no grpc-status")
    if int(code) != 0:
        from urllib.parse import unquote

        raise error_for_status(int(code), unquote(headers.get("grpc-message", "")))


def _unframe(body: bytes) -> bytes:
    """The one message of a unary reply, out of its 5-byte length-prefixed frame."""
    if len(body) < 5 or body[0] != 0 or int.from_bytes(body[1:5], "big") != len(body) - 5:
        raise _Malformed("not one uncompressed gRPC message")
    return body[5:]


# -- protobuf ------------------------------------------------------------------------------

_Value = int | bytes
_Fields = dict[int, list[_Value]]


def _last(fields: _Fields, number: int, default: _Value) -> _Value:
    values = fields.get(number)
    return values[-1] if values else default  # proto3: the last one wins


def _fields(data: bytes) -> _Fields:
    """Every field of one message by number: ints for varints, bytes for the rest."""
    fields: _Fields = {}
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        wire = key & 7
        value: _Value
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos : pos + size], pos + size
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        else:
            raise _Malformed(f"unsupported wire type {wire}")
        if pos > end:
            raise _Malformed("truncated message")
        fields.setdefault(key >> 3, []).append(value)
    return fields


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 64:
        if pos >= len(data):
            raise _Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise _Malformed("varint too long")


def _varint_value(value: _Value) -> int:
    if not isinstance(value, int):
        raise _Malformed("a length-delimited or fixed field where a varint belongs")
    return value


def _int32(value: _Value) -> int:
    return ((_varint_value(value) & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000


def _uint32(value: _Value) -> int:
    return _varint_value(value) & 0xFFFFFFFF


def _double(value: _Value) -> float:
    if not isinstance(value, bytes) or len(value) != 8:
        raise _Malformed("a double that is not 8 bytes")
    return struct.unpack("<d", value)[0]


def _text(value: _Value) -> str:
    if not isinstance(value, bytes):
        raise _Malformed("a varint where a string belongs")
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise _Malformed("a string that is not UTF-8") from None


def _provider(raw: _Value) -> ProviderView:
    if not isinstance(raw, bytes):
        raise _Malformed("a varint where a Provider belongs")
    f = _fields(raw)
    return ProviderView(
        instance=_text(_last(f, 1, b"")),
        kind=_text(_last(f, 2, b"")),
        state=_PROVIDER_STATES.get(_varint_value(_last(f, 3, 0)), ProviderState.STARTING),
        webhook=bool(_varint_value(_last(f, 4, 0))),
        last_error=_text(_last(f, 5, b"")),
        last_ok_at=_double(_last(f, 6, b"\0" * 8)),
        active_jobs=_uint32(_last(f, 7, 0)),
    )
