"""Authentication to GitHub: a fixed token, or a GitHub App's installation tokens.

An App signs a short JWT (RS256, ``iss`` = App id) and trades it for an installation token
valid about an hour. The token is minted on first use and again when less than
``refresh_margin`` seconds remain, or when GitHub rejects it. Refreshes are serialised: many
concurrent callers that find the token stale cause one token request, and the fast path
(a fresh token) takes no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import httpx
import jwt
import msgspec
import trio
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ephemerd._errors import ConfigError, ForgeProtocolError

from ._options import GitHubApp
from ._payloads import InstallationToken
from ._ratelimit import RateLimitGate
from ._wire import API_VERSION, error_for, map_transport_errors

__all__ = ["AppAuth", "Credentials", "TokenAuth"]

JWT_BACKDATE = 60.0
"""Seconds the JWT's ``iat`` is backdated, for clock skew (GitHub's advice)."""
JWT_LIFETIME = 540.0
"""Seconds from now to the JWT's ``exp``; GitHub refuses more than ten minutes."""


class Credentials(Protocol):
    """What the REST client needs: an ``Authorization`` value, and a way to drop a bad one."""

    async def authorization(self) -> str: ...

    def invalidate(self, authorization: str) -> None:
        """GitHub answered 401 to *authorization*; do not hand it out again."""
        ...


class TokenAuth:
    """A PAT (or any fixed token)."""

    def __init__(self, token: str) -> None:
        self._value = f"token {token}"

    def __repr__(self) -> str:
        return "TokenAuth(<redacted>)"

    async def authorization(self) -> str:
        return self._value

    def invalidate(self, authorization: str) -> None:
        """A fixed token cannot be renewed; the caller reports the 401."""


class AppAuth:
    """Installation tokens of a GitHub App, refreshed before they expire.

    Args:
        app: the App's credentials.
        http: the instance's HTTP client (its base URL is the API root).
        gate: the instance's rate-limit gate.
        refresh_margin: mint a new token when less than this many seconds remain.
        wall_clock: Unix time source (injectable for tests).

    Raises:
        ConfigError: the private key is not a usable RSA key (at construction).
    """

    def __init__(
        self,
        app: GitHubApp,
        http: httpx.AsyncClient,
        gate: RateLimitGate,
        *,
        refresh_margin: float = 300.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._app = app
        self._http = http
        self._gate = gate
        self._margin = refresh_margin
        self._wall_clock = wall_clock
        self._lock = trio.Lock()
        self._token = ""
        self._expires_at = 0.0
        self.minted = 0
        try:
            key = load_pem_private_key(app.private_key.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"GitHub App {app.app_id}: private_key is not a PEM key") from exc
        if not isinstance(key, RSAPrivateKey):
            raise ConfigError(f"GitHub App {app.app_id}: private_key is not an RSA key")
        self._key = key

    def __repr__(self) -> str:
        return (
            f"AppAuth(app_id={self._app.app_id!r}, installation_id={self._app.installation_id!r})"
        )

    def app_jwt(self) -> str:
        """A fresh App JWT, for the endpoints that take the App itself (``/app/...``)."""
        now = self._wall_clock()
        claims = {
            "iat": int(now - JWT_BACKDATE),
            "exp": int(now + JWT_LIFETIME),
            "iss": self._app.app_id,
        }
        return jwt.encode(claims, self._key, algorithm="RS256")

    def _fresh(self) -> bool:
        return bool(self._token) and self._expires_at - self._wall_clock() > self._margin

    async def authorization(self) -> str:
        """``Bearer <installation token>``, minting one first if it is missing or stale.

        Raises:
            ForgeError: the token request failed (``ForgeAuthError`` for a refused JWT).
        """
        if self._fresh():
            return f"Bearer {self._token}"
        async with self._lock:
            if not self._fresh():  # another caller may have refreshed while we waited
                await self._mint()
            return f"Bearer {self._token}"

    def invalidate(self, authorization: str) -> None:
        if authorization == f"Bearer {self._token}":
            self._token = ""
            self._expires_at = 0.0

    async def _mint(self) -> None:
        path = f"/app/installations/{self._app.installation_id}/access_tokens"
        what = f"POST {path}"
        self._gate.check()
        headers = {
            "Authorization": f"Bearer {self.app_jwt()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
        async with map_transport_errors(what):
            response = await self._http.post(path, headers=headers)
        self._gate.observe(response.headers)
        if response.status_code != 201:
            raise error_for(response, self._gate, what=what)
        try:
            minted = msgspec.json.decode(response.content, type=InstallationToken)
            expires = datetime.fromisoformat(minted.expires_at.replace("Z", "+00:00"))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise ForgeProtocolError(f"GitHub {what}: unreadable token answer") from exc
        self._token = minted.token
        self._expires_at = expires.timestamp()
        self.minted += 1
