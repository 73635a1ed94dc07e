"""HTTP details of the registry client: error bodies, bounded reads, raw chunk streams.

Registries answer errors as ``{"errors": [{"code": …, "message": …}]}``; the first
message becomes the one-line ``ImagePullError`` (``manifest unknown``), and 5xx/429 become
``TransientPullError`` so the caller retries them.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncGenerator, AsyncIterator

import httpx
import msgspec

from ephemerd._errors import ImagePullError

__all__ = [
    "TransientPullError",
    "describe",
    "first_pull_error",
    "is_loopback",
    "one_line",
    "raw_chunks",
    "read_limited",
    "status_error",
]

_MAX_ERROR_BODY = 8 << 10
_CHUNK = 1 << 20


class TransientPullError(ImagePullError):
    """A pull failed for a reason that may pass (5xx, 429, network); worth retrying."""

    retryable = True


def describe(err: BaseException) -> str:
    """``Type: message`` of a foreign exception, on one line."""
    text = str(err)
    return one_line(f"{type(err).__name__}: {text}" if text else type(err).__name__)


class _ErrorItem(msgspec.Struct, frozen=True):
    code: str = ""
    message: str = ""


class _Errors(msgspec.Struct, frozen=True):
    errors: list[_ErrorItem] = msgspec.field(default_factory=list[_ErrorItem])


def one_line(text: str, limit: int = 200) -> str:
    """*text* made printable, on one line, at most *limit* characters."""
    clean = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return clean[:limit]


def is_loopback(host: str) -> bool:
    """Whether *host* (a name or an IP, brackets allowed) is this machine's loopback."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def read_limited(response: httpx.Response, limit: int, what: str) -> bytes:
    """The raw body of a streamed *response*, refusing more than *limit* bytes.

    Raises:
        ImagePullError: the body is larger than *limit*.
        TransientPullError: the connection broke.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ImagePullError(f"{what} is {declared} bytes, more than the {limit} allowed")
    body = bytearray()
    chunks = response.aiter_raw()
    try:
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                raise ImagePullError(f"{what} is more than the {limit} bytes allowed")
    except httpx.TransportError as err:
        raise TransientPullError(f"reading {what} failed: {describe(err)}") from None
    finally:
        await _close(chunks)
    return bytes(body)


async def raw_chunks(response: httpx.Response) -> AsyncGenerator[bytes]:
    """The undecoded body of *response* (its digest is over these bytes), in 1 MiB chunks."""
    chunks = response.aiter_raw(_CHUNK)
    try:
        async for chunk in chunks:
            yield chunk
    except httpx.TransportError as err:
        raise TransientPullError(f"download interrupted: {describe(err)}") from None
    finally:
        await _close(chunks)


async def _close(chunks: AsyncIterator[bytes], *, drain: int = 64 << 10) -> None:
    """Close httpx's body iterator now, not when it is collected.

    A body left unread is first read on for up to *drain* bytes: a short remainder read to
    its end frees the connection for reuse, and ends httpx's nested stream iterators by
    themselves (closing the outer one does not close those inside it).
    """
    with contextlib.suppress(httpx.TransportError):
        async for chunk in chunks:
            drain -= len(chunk)
            if drain < 0:
                break
    if isinstance(chunks, AsyncGenerator):
        await chunks.aclose()


async def status_error(response: httpx.Response, what: str) -> ImagePullError:
    """The error for a non-200 answer, using the registry's own error message if any."""
    status = response.status_code
    detail = ""
    try:
        if response.is_stream_consumed:
            body = response.content[:_MAX_ERROR_BODY]
        else:
            body = await read_limited(response, _MAX_ERROR_BODY, "error body")
        items = msgspec.json.decode(body, type=_Errors).errors
        if items:
            detail = one_line(items[0].message or items[0].code.lower().replace("_", " "))
    except (ImagePullError, msgspec.DecodeError):
        pass
    host = response.request.url.host
    if status >= 500 or status == 429:
        return TransientPullError(f"{host} answered HTTP {status} for {what}")
    if status == 404:
        return ImagePullError(detail or f"{what} unknown")
    if status == 401:
        return ImagePullError(f"unauthorized: {detail or 'authentication required'}")
    if status == 403:
        return ImagePullError(f"denied: {detail or 'access to the resource is denied'}")
    suffix = f": {detail}" if detail else ""
    return ImagePullError(f"{host} answered HTTP {status} for {what}{suffix}")


def first_pull_error(group: BaseExceptionGroup[BaseException]) -> ImagePullError | None:
    """The first ``ImagePullError`` in a (nested) exception group, if any."""
    for exc in group.exceptions:
        if isinstance(exc, ImagePullError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = first_pull_error(exc)  # pyright: ignore[reportUnknownArgumentType]
            if found is not None:
                return found
    return None
