"""What every fake server's ASGI app needs: lifespan, the whole body, a loopback server."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

__all__ = ["answer_lifespan", "read_body", "serve_on_loopback"]


async def answer_lifespan(receive: Any, send: Any) -> None:
    """Acknowledge hypercorn's lifespan startup and shutdown; return at shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Any) -> bytes:
    """The request's whole body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


@asynccontextmanager
async def serve_on_loopback(app: Any, host: str = "127.0.0.1") -> AsyncGenerator[str, None]:
    """Serve *app* on an ephemeral port of *host* for the block; yield its base URL."""
    config = Config()
    config.bind = [f"{host}:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.1
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, app, config, shutdown_trigger=stop.wait)
        )
        try:
            yield binds[0].rstrip("/")
        finally:
            stop.set()
