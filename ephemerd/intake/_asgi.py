"""The little of ASGI the intake needs: one request/response exchange, and the lifespan.

No framework: the intake has three routes, and the one subtle part (stopping a body read
early) is easier to get right by hand than through a framework's abstractions.

Stopping early needs care under hypercorn: the server queues request-body chunks for the app
in a small bounded channel, and the end of our response pushes an ``http.disconnect`` into
that same channel. If the app stopped reading with the channel full, sending the response's
last message would wait forever. So a response sent before the body was read to its end is
sent while a helper task discards what is still queued, until the disconnect arrives. That
discards at most the queue's few chunks: once the response is out the server closes the
connection and reads nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope

__all__ = ["ClientGone", "Exchange", "serve_lifespan"]

# Bound on the discard task, should the disconnect never come.
_DRAIN_TIMEOUT = 5.0


class ClientGone(Exception):
    """The client disconnected before sending its whole request; there is no one to answer."""


class Exchange:
    """One HTTP request and its response.

    Attributes:
        method: the request method, upper-case.
        path: the decoded path, without the query string.
        headers: lower-cased names; repeated headers joined with ``", "``.
        started: whether the response has begun (no second response may be sent).
    """

    def __init__(self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable):
        self.method = scope["method"].upper()
        self.path = scope["path"]
        self.headers = _headers(scope["headers"])
        self.started = False
        self._receive = receive
        self._send = send
        self._body_done = False
        self._http1 = scope["http_version"].startswith("1")
        self._has_body = (
            "transfer-encoding" in self.headers
            or self.headers.get("content-length", "0").strip() != "0"
        )

    async def read_body(self, *, limit: int) -> bytes | None:
        """The whole request body, or ``None`` as soon as it exceeds *limit* bytes.

        Once over the limit nothing more is read; the caller answers 413.

        Raises:
            ClientGone: the client disconnected mid-body.
        """
        chunks: list[bytes] = []
        size = 0
        while not self._body_done:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._body_done = True
                raise ClientGone
            if message["type"] != "http.request":
                continue
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            self._body_done = not message.get("more_body", False)
        return b"".join(chunks)

    async def respond(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = "text/plain; charset=utf-8",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send the whole response (status, headers, body) in one go.

        A request body left unread closes the connection after the response.

        Raises:
            ClientGone: the client disconnected before its request was complete.
        """
        self.started = True
        raw = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode("ascii")),
        ]
        raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers)
        if not self._body_done and not self._has_body:
            await self.read_body(limit=0)  # only the empty end-of-request message is due
        if not self._body_done and self._http1:
            raw.append((b"connection", b"close"))
        if self._body_done:
            await self._send_response(status, raw, body)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._discard_until_disconnect)
            await self._send_response(status, raw, body)

    async def _send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes):
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def _discard_until_disconnect(self) -> None:
        with trio.move_on_after(_DRAIN_TIMEOUT):
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    break
        self._body_done = True


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


async def serve_lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Acknowledge startup and shutdown; the intake holds nothing that needs them."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
