"""Translation of GitHub HTTP answers and httpx failures into ephemerd's error tree.

This is the one place that knows what a GitHub status code means; everything above it
catches ``ForgeError`` subclasses only.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import httpx
import msgspec

from ephemerd._errors import (
    ForgeAuthError,
    ForgeConflict,
    ForgeError,
    ForgeNotFound,
    ForgePermissionError,
    ForgeProtocolError,
    ForgeUnavailable,
)

from ._ratelimit import RateLimitGate

__all__ = ["API_VERSION", "error_for", "map_transport_errors"]

API_VERSION = "2022-11-28"


class _Message(msgspec.Struct):
    message: str = ""


def _message(body: bytes) -> str:
    try:
        text = msgspec.json.decode(body, type=_Message).message
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = ""
    # one line, bounded: an HTML error page must not flood the log
    return " ".join(text.split())[:200]


def error_for(response: httpx.Response, gate: RateLimitGate, *, what: str) -> ForgeError:
    """The error a non-2xx GitHub answer stands for; closes the gate on a rate limit.

    Args:
        response: the answer, body already read.
        gate: the client's rate-limit gate.
        what: a short description of the request for the message (never a secret).
    """
    status = response.status_code
    message = _message(response.content)
    said = f": {message}" if message else ""
    text = f"GitHub {what}: HTTP {status}{said}"
    limited = gate.limited(status, response.headers, message)
    if limited is not None:
        return limited
    if status == 401:
        return ForgeAuthError(text)
    if status == 403:
        return ForgePermissionError(text)
    if status == 404:
        return ForgeNotFound(text)
    if status == 409:
        return ForgeConflict(text)
    if status >= 500:
        return ForgeUnavailable(text)
    if status < 400:
        return ForgeProtocolError(f"GitHub {what}: unexpected HTTP {status}")
    error = ForgeError(text)
    # 400/422 and other 4xx: the request itself is wrong; sending it again changes nothing
    error.retryable = False
    return error


@asynccontextmanager
async def map_transport_errors(what: str) -> AsyncGenerator[None, None]:
    """Turn httpx's network and protocol failures into ``ForgeUnavailable``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ForgeUnavailable(f"GitHub {what}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise ForgeUnavailable(f"GitHub {what}: {type(exc).__name__}: {exc}") from exc
    except httpx.HTTPError as exc:  # pragma: no cover - other client-side failures
        raise ForgeProtocolError(f"GitHub {what}: {type(exc).__name__}: {exc}") from exc
