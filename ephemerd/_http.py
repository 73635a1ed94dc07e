"""The one HTTP client factory: every forge and registry client is made here."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from . import __version__

__all__ = ["USER_AGENT", "open_http_client"]

USER_AGENT = f"ephemerd/{__version__}"


def open_http_client(
    *,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    connect_timeout: float = 10.0,
    http2: bool = True,
    verify: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` with ephemerd's defaults; use it as an async context manager.

    Args:
        base_url: prefix of every relative request URL.
        headers: sent with every request (authentication, API versions).
        timeout: read/write/pool timeout in seconds; nothing waits forever.
        connect_timeout: TCP+TLS connect timeout in seconds.
        http2: offer HTTP/2 where the server supports it (TLS only).
        verify: check TLS certificates.
        transport: a custom transport (e.g. a unix socket).
    """
    merged = {"User-Agent": USER_AGENT}
    if headers:
        merged.update(headers)
    return httpx.AsyncClient(
        base_url=base_url,
        headers=merged,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        http2=http2,
        verify=verify,
        transport=transport,
        follow_redirects=False,
    )
