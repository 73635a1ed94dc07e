"""Translation of Gitea/Forgejo answers and httpx failures into ephemerd's error tree.

Connect errors are classified by their JSON ``code``, never by the HTTP status: the
status of one code differs between connect-go versions, and old Gitea reports bad runner
credentials as HTTP 500 ``unknown``. Bodies that are not Connect errors (a proxy's 502
page) are classified by status, as the Connect protocol prescribes.
"""

from __future__ import annotations

import httpx
import msgspec

from ephemerd._errors import (
    ForgeAuthError,
    ForgeConflict,
    ForgeError,
    ForgeNotFound,
    ForgePermissionError,
    ForgeRateLimited,
    ForgeUnavailable,
)
from ephemerd.forges._http import error_for_status, map_transport_errors

__all__ = ["connect_code_for_status", "connect_error", "map_transport_errors", "rest_error"]

# What old servers say in plain errors (code "unknown") when runner credentials are bad.
_AUTH_MESSAGES = ("unregistered runner", "runner token not found", "runner registration token")


class _ConnectBody(msgspec.Struct):
    code: str = ""
    message: str = ""


class _RestBody(msgspec.Struct):
    message: str = ""


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def connect_code_for_status(status: int) -> str:
    """The Connect code a non-Connect error body stands for (Connect protocol's table)."""
    return {
        400: "internal",
        401: "unauthenticated",
        403: "permission_denied",
        404: "unimplemented",
        429: "unavailable",
        502: "unavailable",
        503: "unavailable",
        504: "unavailable",
    }.get(status, "unknown")


def _classify(code: str, text: str, message: str) -> ForgeError:
    lowered = message.lower()
    if code == "unauthenticated" or (
        code in ("unknown", "internal") and any(m in lowered for m in _AUTH_MESSAGES)
    ):
        return ForgeAuthError(text)
    if code == "permission_denied":
        return ForgePermissionError(text)
    if code in ("not_found", "unimplemented"):
        return ForgeNotFound(text)
    if code in ("already_exists", "aborted"):
        return ForgeConflict(text)
    if code == "resource_exhausted":
        return ForgeRateLimited(text)
    if code in ("invalid_argument", "failed_precondition", "out_of_range"):
        error = ForgeError(text)
        error.retryable = False  # the same request fails the same way
        return error
    # unavailable, deadline_exceeded, canceled, internal, unknown, data_loss
    return ForgeUnavailable(text)


def connect_error(response: httpx.Response, *, what: str) -> ForgeError:
    """The error a non-200 Connect answer stands for; the message names *what* and the code."""
    code, message = "", ""
    if response.headers.get("content-type", "").startswith("application/json"):
        try:
            body = msgspec.json.decode(response.content, type=_ConnectBody)
            code, message = body.code, _one_line(body.message)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
    if not code:
        code = connect_code_for_status(response.status_code)
    said = f": {message}" if message else ""
    return _classify(code, f"{what}: {code} (HTTP {response.status_code}){said}", message)


def rest_error(response: httpx.Response, *, what: str) -> ForgeError:
    """The error a non-2xx ``/api/v1`` answer stands for."""
    status = response.status_code
    try:
        message = _one_line(msgspec.json.decode(response.content, type=_RestBody).message)
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = ""
    retry_after = response.headers.get("retry-after", "")
    return error_for_status(status, what=what, message=message, retry_after=retry_after)
