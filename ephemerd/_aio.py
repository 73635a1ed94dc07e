"""The one bridge between Trio and asyncio, for grpclib.

grpclib only runs on asyncio; ephemerd runs on Trio. trio-asyncio runs an asyncio loop
inside Trio. Two traps were measured and both are handled here, so no other module
touches trio-asyncio directly:

1. grpclib ``Server``/``Channel`` objects must be created inside the running asyncio loop:
   create them in a function passed to ``run_aio``.
2. Cancelling a Trio scope while ``async for msg in aio_as_trio(stream)`` runs leaves the
   asyncio side streaming. ``aio_stream`` closes the asyncio generator under a shielded
   cancel scope whatever happens.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar, cast

import trio
import trio_asyncio

__all__ = ["aio_stream", "open_aio_loop", "run_aio", "run_trio_from_aio"]

T = TypeVar("T")


@asynccontextmanager
async def open_aio_loop() -> AsyncIterator[None]:
    """Run an asyncio loop inside the current Trio task tree for the block's duration."""
    async with trio_asyncio.open_loop():
        yield


async def run_aio(fn: Callable[..., Awaitable[T]], *args: object) -> T:
    """Await the asyncio coroutine function *fn* from Trio."""
    return cast(T, await trio_asyncio.aio_as_trio(fn)(*args))


async def run_trio_from_aio(fn: Callable[..., Awaitable[T]], *args: object) -> T:
    """Await the Trio coroutine function *fn* from asyncio code (e.g. a grpclib handler)."""
    return cast(T, await trio_asyncio.trio_as_aio(fn)(*args))


@asynccontextmanager
async def aio_stream(agen: AsyncGenerator[T, None]) -> AsyncIterator[AsyncIterator[T]]:
    """Iterate the asyncio async generator *agen* from Trio, and always close it.

    Usage::

        async with aio_stream(stub.watch_jobs(request)) as messages:
            async for message in messages:
                ...

    Cancellation: the asyncio generator is closed under a shielded scope, so the server
    sees the stream end even when the Trio side is cancelled mid-iteration.
    """
    try:
        yield cast(AsyncIterator[T], trio_asyncio.aio_as_trio(agen))
    finally:
        with trio.CancelScope(shield=True):
            await trio_asyncio.aio_as_trio(agen.aclose)()
