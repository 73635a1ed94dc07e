"""One gRPC call over HTTP/2 on a blocking socket: the wire under the quick client.

``_quick`` must not import asyncio, grpclib or h2, so this speaks just enough HTTP/2
for one call on a fresh connection: stream 1, a request of one message (sent in frames
that respect the server's flow-control windows and frame size), and a reply of any
number of messages, each handed over as soon as it is complete so a streaming call's
output is not held back. We announce a receive window of 2**31 - 1 and top it up, so the
server never waits on us. The request headers are HPACK literals; replies need the real
decoder in ``_hpack`` (servers use Huffman coding and the dynamic table).

Closing the socket ends the call: the server sees the connection go and cancels the
handler (grpclib cancels it on connection loss as on RST_STREAM).
"""

from __future__ import annotations

import _socket
import struct
import time
from collections.abc import Callable

from ._hpack import HpackDecoder, HpackError

__all__ = ["Malformed", "grpc_call"]

# Frame types (RFC 9113 section 6).
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
_WINDOW_UPDATE, _CONTINUATION = 0x8, 0x9
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_INITIAL_WINDOW_SIZE, _MAX_FRAME_SIZE = 0x4, 0x5
_MAX_WINDOW = 2**31 - 1
_TOP_UP = 2**30  # received bytes after which the windows are replenished
_MAX_MESSAGE = 16 * 2**20  # far beyond any reply; bounds what a broken peer makes us hold
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Malformed(Exception):
    """The reply does not follow HTTP/2 or gRPC."""


def grpc_call(
    sock: _socket.socket,
    path: str,
    message: bytes,
    *,
    deadline: float | None,
    on_message: Callable[[bytes], None],
) -> dict[str, str]:
    """Call *path* with one serialized request on the connected *sock*.

    Each reply message goes to *on_message* as it arrives; returns the response headers
    and trailers merged (``:status``, ``grpc-status``, ...) once the stream ends.

    Raises:
        Malformed: the peer broke HTTP/2 or gRPC framing.
        ConnectionResetError, EOFError: the stream or the connection went away.
        TimeoutError: *deadline* (``time.monotonic``) passed.
    """
    return _Call(sock, deadline, on_message).run(path, message)


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


def _literal(name: str, value: str) -> bytes:
    """An HPACK "literal without indexing, new name" field, no Huffman coding."""
    name_b, value_b = name.encode(), value.encode()
    return b"".join((b"\0", _hpack_int(len(name_b)), name_b, _hpack_int(len(value_b)), value_b))


def _hpack_int(value: int) -> bytes:
    """An HPACK integer with a 7-bit prefix (the string length of a plain literal)."""
    if value < 127:
        return bytes([value])
    out = bytearray([127])
    value -= 127
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class _Call:
    """The state of one call: both flow-control directions and the reply so far."""

    def __init__(
        self, sock: _socket.socket, deadline: float | None, on_message: Callable[[bytes], None]
    ) -> None:
        self._sock = sock
        self._deadline = deadline
        self._on_message = on_message
        self._buffer = bytearray()  # socket bytes not yet framed
        self._decoder = HpackDecoder()
        self._connection_window = self._stream_window = self._initial_window = 65535
        self._max_frame = 16384
        self._unacked = 0  # DATA bytes received since the windows were last topped up
        self._pending = bytearray()  # gRPC bytes of stream 1 not yet a whole message
        self._headers: dict[str, str] = {}
        self._block = bytearray()
        self._end_stream = False
        self._ended = False

    def run(self, path: str, message: bytes) -> dict[str, str]:
        fields = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        if self._deadline is not None:
            left = max(1, min(int((self._deadline - time.monotonic()) * 1000), 99_999_999))
            fields.append(("grpc-timeout", f"{left}m"))
        block = b"".join(_literal(n, v) for n, v in fields)
        # The opening goes out with the first DATA frame: one write for a small request.
        opening = b"".join(
            (
                _PREFACE,
                _frame(_SETTINGS, 0, 0, struct.pack(">HI", _INITIAL_WINDOW_SIZE, _MAX_WINDOW)),
                _frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", _MAX_WINDOW - 65535)),
                _frame(_HEADERS, _END_HEADERS, 1, block),
            )
        )
        body = struct.pack(">BI", 0, len(message)) + message
        sent = 0
        while sent < len(body) and not self._ended:  # an early answer ends the request
            room = min(self._connection_window, self._stream_window, self._max_frame)
            if room <= 0:
                self._pump()
                continue
            chunk = body[sent : sent + room]
            sent += len(chunk)
            self._send(opening, _frame(_DATA, _END_STREAM if sent == len(body) else 0, 1, chunk))
            opening = b""
            self._connection_window -= len(chunk)
            self._stream_window -= len(chunk)
        while not self._ended:
            self._pump()
        if self._pending:
            raise Malformed("the stream ended inside a message")
        return self._headers

    # -- frames in -----------------------------------------------------------------------

    def _pump(self) -> None:
        """Read and act on one frame."""
        kind, flags, stream, payload = self._read_frame()
        if stream == 0:
            self._connection_frame(kind, flags, payload)
        elif stream != 1:
            return
        elif kind == _RST_STREAM:
            raise ConnectionResetError("RST_STREAM")
        elif kind == _WINDOW_UPDATE:
            self._stream_window += _increment(payload)
        elif kind == _DATA:
            self._credit(len(payload))
            self._pending += _unpad(flags, payload)
            self._deliver()
            if flags & _END_STREAM:
                raise Malformed("stream ended without trailers")
        elif kind in (_HEADERS, _CONTINUATION):
            if kind == _HEADERS:
                payload = _unpad(flags, payload)
                if flags & _PRIORITY:
                    payload = payload[5:]
                self._end_stream = bool(flags & _END_STREAM)
            self._block += payload
            if flags & _END_HEADERS:
                try:
                    self._headers.update(self._decoder.decode(bytes(self._block)))
                except HpackError as error:
                    raise Malformed(f"bad header block ({error})") from None
                self._block.clear()
                self._ended = self._end_stream

    def _connection_frame(self, kind: int, flags: int, payload: bytes) -> None:
        if kind == _SETTINGS and not flags & _ACK:
            for at in range(0, len(payload) - 5, 6):
                key, value = struct.unpack(">HI", payload[at : at + 6])
                if key == _INITIAL_WINDOW_SIZE:  # applies to open streams as a delta
                    self._stream_window += value - self._initial_window
                    self._initial_window = value
                elif key == _MAX_FRAME_SIZE:
                    self._max_frame = value
            self._send(_frame(_SETTINGS, _ACK, 0))
        elif kind == _PING and not flags & _ACK:
            self._send(_frame(_PING, _ACK, 0, payload))
        elif kind == _WINDOW_UPDATE:
            self._connection_window += _increment(payload)
        elif kind == _GOAWAY:
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF if len(payload) >= 4 else 0
            if last < 1:  # stream 1 was not taken; otherwise it still runs to its end
                raise ConnectionResetError("GOAWAY")

    def _credit(self, size: int) -> None:
        self._unacked += size
        if self._unacked >= _TOP_UP:
            increment = struct.pack(">I", self._unacked)
            self._send(
                _frame(_WINDOW_UPDATE, 0, 0, increment), _frame(_WINDOW_UPDATE, 0, 1, increment)
            )
            self._unacked = 0

    def _deliver(self) -> None:
        """Hand every whole message in ``_pending`` to ``on_message``."""
        pending = self._pending
        while len(pending) >= 5:
            if pending[0] != 0:
                raise Malformed("a compressed message")
            size = int.from_bytes(pending[1:5], "big")
            if size > _MAX_MESSAGE:
                raise Malformed("reply too large")
            if len(pending) < 5 + size:
                return
            message = bytes(pending[5 : 5 + size])
            del pending[: 5 + size]
            self._on_message(message)

    def _read_frame(self) -> tuple[int, int, int, bytes]:
        head = self._read(9)
        length = int.from_bytes(head[:3], "big")
        if length > _MAX_MESSAGE:
            raise Malformed("frame too large")
        kind, flags, stream = struct.unpack(">BBI", head[3:])
        return kind, flags, stream & 0x7FFFFFFF, self._read(length)

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._sock.settimeout(self._left())
            chunk = self._sock.recv(65536)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    # -- frames out ----------------------------------------------------------------------

    def _send(self, *parts: bytes) -> None:
        self._sock.settimeout(self._left())
        self._sock.sendall(b"".join(parts))

    def _left(self) -> float | None:
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left


def _increment(payload: bytes) -> int:
    if len(payload) != 4:
        raise Malformed("bad WINDOW_UPDATE")
    return int.from_bytes(payload, "big") & 0x7FFFFFFF


def _unpad(flags: int, payload: bytes) -> bytes:
    if not flags & _PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise Malformed("bad padding")
    return payload[1 : len(payload) - payload[0]]
