"""Registry authentication: challenges, bearer tokens and basic credentials.

A registry answers ``401`` with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…``
(fetch a token from the realm and retry) or ``Basic realm=…`` (send the credentials).
Tokens are cached per realm, service, scope and user until shortly before they expire, on
the caller's clock (``trio.current_time``), so a long-lived client fetches each token once.
The cache belongs to a ``RegistryAuth`` object, never to the module.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import httpx
import msgspec
import trio

from ephemerd._errors import ImagePullError

from ._registry_http import TransientPullError, describe

__all__ = [
    "Challenge",
    "RegistryAuth",
    "RegistryCredentials",
    "parse_challenges",
]

_TOKEN_MARGIN = 10.0
_DEFAULT_TOKEN_LIFETIME = 60.0
_MAX_TOKEN_RESPONSE = 1 << 20
_PARAM_RE = re.compile(r'([A-Za-z][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


class RegistryCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """A user name and password (or token) for one registry; the password never prints."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"RegistryCredentials(username={self.username!r}, password='***')"

    def __rich_repr__(self) -> list[tuple[str, object]]:
        return [("username", self.username), ("password", "***")]


class Challenge(msgspec.Struct, frozen=True, kw_only=True):
    """One ``WWW-Authenticate`` challenge."""

    scheme: Literal["basic", "bearer"]
    realm: str = ""
    service: str = ""
    scope: str = ""


class _TokenResponse(msgspec.Struct, frozen=True):
    token: str = ""
    access_token: str = ""
    expires_in: float = 0.0


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """The Basic and Bearer challenges in ``WWW-Authenticate`` header values; others skipped."""
    found: list[Challenge] = []
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        scheme = scheme.lower()
        if scheme not in ("basic", "bearer"):
            continue
        params = {
            key.lower(): raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
            for key, raw in _PARAM_RE.findall(rest)
        }
        found.append(
            Challenge(
                scheme="basic" if scheme == "basic" else "bearer",
                realm=params.get("realm", ""),
                service=params.get("service", ""),
                scope=params.get("scope", ""),
            )
        )
    # Prefer a bearer challenge: the registry then accepts tokens from its realm.
    found.sort(key=lambda c: c.scheme != "bearer")
    return found


def _basic(credentials: RegistryCredentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class RegistryAuth:
    """Turns challenges into ``Authorization`` headers, caching bearer tokens.

    Args:
        credentials: per registry host (as written in references, with port), the
            credentials to use; hosts not listed are accessed anonymously.
        client_for: the HTTP client to reach a URL with (it decides TLS verification).
        allow_http: whether a host may be reached, and sent credentials, over plain HTTP.
    """

    def __init__(
        self,
        *,
        credentials: Mapping[str, RegistryCredentials],
        client_for: Callable[[httpx.URL], httpx.AsyncClient],
        allow_http: Callable[[str], bool],
    ) -> None:
        self._credentials = dict(credentials)
        self._client_for = client_for
        self._allow_http = allow_http
        self._tokens: dict[tuple[str, str, str, str], tuple[str, float]] = {}

    def credentials_for(self, registry: str) -> RegistryCredentials | None:
        """The configured credentials of *registry* (``host:port``, or the bare host)."""
        found = self._credentials.get(registry)
        if found is None and ":" in registry and not registry.endswith("]"):
            found = self._credentials.get(registry.rsplit(":", 1)[0])
        if found is None and registry == "docker.io":
            for alias in ("index.docker.io", "registry-1.docker.io"):
                found = found or self._credentials.get(alias)
        return found

    def forget(self, registry: str, challenge: Challenge, scope: str) -> None:
        """Drop the cached token for this scope, e.g. after it was refused."""
        self._tokens.pop(self._key(registry, challenge, scope), None)

    def _key(self, registry: str, challenge: Challenge, scope: str) -> tuple[str, str, str, str]:
        creds = self.credentials_for(registry)
        return (challenge.realm, challenge.service, scope, creds.username if creds else "")

    async def authorization(
        self, registry: str, challenge: Challenge | None, scope: str
    ) -> str | None:
        """The ``Authorization`` value for a request to *registry*, or ``None``.

        Raises:
            ImagePullError: the token service refused, or answered nonsense.
            TransientPullError: the token service is unavailable.
        """
        if challenge is None:
            return None
        creds = self.credentials_for(registry)
        if challenge.scheme == "basic":
            return _basic(creds) if creds else None
        key = self._key(registry, challenge, scope)
        cached = self._tokens.get(key)
        now = trio.current_time()
        if cached is not None and cached[1] > now:
            return f"Bearer {cached[0]}"
        token, lifetime = await self._fetch_token(challenge, scope, creds)
        self._tokens[key] = (token, now + max(lifetime - _TOKEN_MARGIN, lifetime / 2))
        return f"Bearer {token}"

    async def _fetch_token(
        self, challenge: Challenge, scope: str, creds: RegistryCredentials | None
    ) -> tuple[str, float]:
        try:
            realm = httpx.URL(challenge.realm)
        except (httpx.InvalidURL, TypeError):
            raise ImagePullError(
                f"registry sent an invalid token realm {challenge.realm!r}"
            ) from None
        if realm.scheme not in ("https", "http") or not realm.host:
            raise ImagePullError(
                f"registry sent an invalid token realm {challenge.realm!r}"
            ) from None
        if realm.scheme == "http" and not self._allow_http(realm.host):
            raise ImagePullError(f"token realm {challenge.realm} is plain HTTP; refusing it")
        params = {"scope": scope} if scope else {}
        if challenge.service:
            params["service"] = challenge.service
        headers = {"Authorization": _basic(creds)} if creds else {}
        try:
            response = await self._client_for(realm).get(realm, params=params, headers=headers)
        except httpx.TransportError as err:
            raise TransientPullError(
                f"token service {realm.host} unreachable: {describe(err)}"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as err:  # e.g. a redirect to a bad URL
            raise ImagePullError(f"token service {realm.host}: {describe(err)}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientPullError(
                f"token service {realm.host} answered HTTP {response.status_code}"
            )
        if response.status_code in (401, 403):
            who = f"credentials of {creds.username!r}" if creds else "anonymous access"
            raise ImagePullError(f"token service {realm.host} refused {who} for {scope}")
        if response.status_code != 200 or len(response.content) > _MAX_TOKEN_RESPONSE:
            raise ImagePullError(f"token service {realm.host} answered HTTP {response.status_code}")
        try:
            body = msgspec.json.decode(response.content, type=_TokenResponse)
        except msgspec.DecodeError:
            raise ImagePullError(f"token service {realm.host} sent malformed JSON") from None
        token = body.token or body.access_token
        if not token:
            raise ImagePullError(f"token service {realm.host} sent no token")
        lifetime = body.expires_in if body.expires_in > 0 else _DEFAULT_TOKEN_LIFETIME
        return token, lifetime
