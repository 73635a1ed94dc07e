"""How every forge's REST answer and transport failure becomes an ephemerd error.

The forges differ in how they word errors and signal rate limits, not in what an HTTP
status means; each client reads its own body and rate-limit headers, then hands the
status here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import httpx

from ephemerd._errors import (
    ForgeAuthError,
    ForgeConflict,
    ForgeError,
    ForgeNotFound,
    ForgePermissionError,
    ForgeProtocolError,
    ForgeRateLimited,
    ForgeUnavailable,
)

__all__ = ["error_for_status", "map_transport_errors"]


def error_for_status(
    status: int, *, what: str, message: str = "", retry_after: str = ""
) -> ForgeError:
    """The error a non-2xx answer to request *what* stands for.

    Args:
        status: the HTTP status.
        what: the request, as the message names it (never a secret).
        message: the forge's own one-line explanation, if it gave one.
        retry_after: the ``Retry-After`` header of a 429, if any.
    """
    said = f": {message}" if message else ""
    text = f"{what}: HTTP {status}{said}"
    if status == 401:
        return ForgeAuthError(text)
    if status == 403:
        return ForgePermissionError(text)
    if status in (404, 405):
        return ForgeNotFound(text)
    if status == 409:
        return ForgeConflict(text)
    if status == 429:
        delay = float(retry_after) if retry_after.isdigit() else None
        return ForgeRateLimited(text, retry_after=delay)
    if status >= 500:
        return ForgeUnavailable(text)
    if status < 400:
        return ForgeProtocolError(f"{what}: unexpected HTTP {status}")
    error = ForgeError(text)
    # 400/422 and other 4xx: the request itself is wrong; sending it again changes nothing
    error.retryable = False
    return error


@asynccontextmanager
async def map_transport_errors(what: str) -> AsyncGenerator[None]:
    """Turn httpx's network and protocol failures into ``ForgeUnavailable``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ForgeUnavailable(f"{what}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise ForgeUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    except httpx.HTTPError as exc:  # pragma: no cover - other client-side failures
        raise ForgeProtocolError(f"{what}: {type(exc).__name__}: {exc}") from exc
