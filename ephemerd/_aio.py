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

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar, cast

import trio
import trio_asyncio

from ephemerd._errors import lone_exception

__all__ = ["aio_stream", "open_aio_loop", "run_aio", "run_trio_from_aio", "running_aio_loop"]

T = TypeVar("T")

# trio-asyncio ships no type information; these two bindings are its whole typed surface here.
_Wrap = Callable[..., Callable[..., Awaitable[object]]]
_aio_as_trio = cast(_Wrap, trio_asyncio.aio_as_trio)  # pyright: ignore[reportUnknownMemberType]
_trio_as_aio = cast(_Wrap, trio_asyncio.trio_as_aio)  # pyright: ignore[reportUnknownMemberType]


@asynccontextmanager
async def open_aio_loop() -> AsyncGenerator[None]:
    """Run an asyncio loop inside the current Trio task tree for the block's duration.

    trio-asyncio runs the loop in a nursery, which wraps whatever the block raises in an
    ``ExceptionGroup``; a lone exception is handed back as itself, so ``except
    JobNotFound`` around the block works as it reads.
    """
    try:
        async with trio_asyncio.open_loop():  # pyright: ignore[reportUnknownMemberType]
            yield
    except BaseExceptionGroup as group:
        lone = lone_exception(group)
        if lone is group:
            raise
        raise lone from lone.__cause__


async def run_aio(
    fn: Callable[..., Awaitable[T]], *args: object, loop: asyncio.AbstractEventLoop | None = None
) -> T:
    """Await the asyncio coroutine function *fn* from Trio.

    *loop* is the asyncio loop to run it in; by default the one of the calling Trio
    context (the innermost ``open_aio_loop``). An object whose connections live in one
    loop (a grpclib ``Channel``) must be driven there: reconnecting from another loop's
    task fails with "Future attached to a different loop".
    """
    return cast(T, await _aio_as_trio(fn, loop=loop)(*args))


async def running_aio_loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop ``run_aio`` uses from here (to pin objects to it)."""

    async def get() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    return await run_aio(get)


async def run_trio_from_aio(fn: Callable[..., Awaitable[T]], *args: object) -> T:
    """Await the Trio coroutine function *fn* from asyncio code (e.g. a grpclib handler)."""
    return cast(T, await _trio_as_aio(fn)(*args))


@asynccontextmanager
async def aio_stream(
    agen: AsyncGenerator[T], *, loop: asyncio.AbstractEventLoop | None = None
) -> AsyncGenerator[AsyncIterator[T]]:
    """Iterate the asyncio async generator *agen* from Trio (in *loop*, see ``run_aio``),
    and always close it.

    Usage::

        async with aio_stream(stub.watch_jobs(request)) as messages:
            async for message in messages:
                ...

    Cancellation: the asyncio generator is closed under a shielded scope, so the server
    sees the stream end even when the Trio side is cancelled mid-iteration.
    """
    # trio-asyncio's Trio-side iterator is an async generator too: close it as well, or
    # it is finalized by the garbage collector (a ResourceWarning).
    messages = cast(AsyncGenerator[T], aiter(cast(AsyncIterable[T], _aio_as_trio(agen, loop=loop))))
    try:
        yield messages
    finally:
        with trio.CancelScope(shield=True):
            await messages.aclose()
            await _aio_as_trio(agen.aclose, loop=loop)()
