"""Translation of GitHub HTTP answers and httpx failures into ephemerd's error tree.

This is the one place that knows what a GitHub status code means; everything above it
catches ``ForgeError`` subclasses only.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import httpx
import msgspec

from ephemerd._errors import (
    ForgeError,
)
from ephemerd.forges._http import error_for_status
from ephemerd.forges._http import map_transport_errors as _map_transport_errors

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
    limited = gate.limited(status, response.headers, message)
    if limited is not None:
        return limited
    return error_for_status(status, what=f"GitHub {what}", message=message)


def map_transport_errors(what: str) -> AbstractAsyncContextManager[None]:
    """Turn httpx's network and protocol failures into ``ForgeUnavailable``."""
    return _map_transport_errors(f"GitHub {what}")
