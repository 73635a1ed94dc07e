"""The GitHub REST client of one provider instance: auth, rate limits, ETags, pages.

Every request goes through ``GitHubClient.send``, which:

1. refuses at once while the rate-limit gate is closed (no storms);
2. adds the credentials, retrying once with a fresh App token after a 401;
3. for GETs, sends ``If-None-Match`` with the ETag of the last answer for that URL and, on
   a 304 (which costs nothing of the primary quota), serves the cached body;
4. records ``x-ratelimit-*`` and maps any failure to an ``EphemerdError``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import TypeVar

import httpx
import msgspec
import trio

from ephemerd._errors import ForgeAuthError, ForgeProtocolError, ForgeUnavailable

from ._auth import Credentials
from ._ratelimit import RateLimitGate
from ._wire import API_VERSION, error_for, map_transport_errors

__all__ = ["PER_PAGE", "GitHubClient"]

PER_PAGE = 100
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_T = TypeVar("_T")

Params = Mapping[str, str | int]


class _Cached(msgspec.Struct, frozen=True):
    etag: str
    body: bytes
    link: str


class GitHubClient:
    """Typed JSON requests against one GitHub API root.

    Args:
        http: the instance's client, with ``base_url`` set to the API root.
        credentials: where the ``Authorization`` header comes from.
        gate: the rate-limit gate shared by everything of this instance.
        etag_entries: how many GET answers to keep for conditional requests.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        credentials: Credentials,
        gate: RateLimitGate,
        *,
        etag_entries: int = 4096,
    ) -> None:
        self._http = http
        self._credentials = credentials
        self.gate = gate
        self._etags: OrderedDict[str, _Cached] = OrderedDict()
        self._etag_entries = etag_entries
        self.not_modified = 0

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: object = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """Send one request and return the answer, whose status is one of *ok* (or 304).

        A 304 answer to a GET comes back as a 200 carrying the cached body.

        Raises:
            ForgeRateLimited: the gate is closed, or GitHub limited this request.
            ForgeError: any other refusal or failure, already classified.
        """
        what = f"{method} {path}"
        self.gate.check()
        request = self._http.build_request(
            method,
            path,
            params=dict(params) if params else None,
            json=json,
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION},
        )
        key = str(request.url)
        cached = self._etags.get(key) if method == "GET" else None
        if cached is not None:
            request.headers["If-None-Match"] = cached.etag
        response = await self._send_authorized(request, what)
        if response.status_code == 304 and cached is not None:
            self._etags.move_to_end(key)
            self.not_modified += 1
            self.gate.succeeded()
            headers = {"link": cached.link} if cached.link else {}
            return httpx.Response(200, content=cached.body, headers=headers, request=request)
        if response.status_code not in ok:
            error = error_for(response, self.gate, what=what)
            if isinstance(error, ForgeAuthError):
                raise ForgeAuthError(f"{error} (check the instance's credentials)")
            raise error
        self.gate.succeeded()
        etag = response.headers.get("etag")
        if method == "GET" and etag:
            self._etags[key] = _Cached(etag, response.content, response.headers.get("link", ""))
            self._etags.move_to_end(key)
            while len(self._etags) > self._etag_entries:
                self._etags.popitem(last=False)
        return response

    async def send_shielded(
        self, method: str, path: str, *, json: object = None, ok: tuple[int, ...] = (201,)
    ) -> httpx.Response:
        """``send`` for requests that create something on GitHub.

        Cancellation: shielded (bounded by the client's timeout), so whatever GitHub created
        is always known to the caller, who can then undo it.
        """
        response: httpx.Response | None = None
        with trio.CancelScope(shield=True):
            response = await self.send(method, path, json=json, ok=ok)
        if response is None:  # pragma: no cover - a shielded scope is not cancelled
            raise ForgeUnavailable(f"GitHub {method} {path}: interrupted")
        return response

    async def _send_authorized(self, request: httpx.Request, what: str) -> httpx.Response:
        """Send with credentials; after a 401, once more if the credentials changed."""
        authorization = await self._credentials.authorization()
        for attempt in (1, 2):
            request.headers["Authorization"] = authorization
            async with map_transport_errors(what):
                response = await self._http.send(request)
                await response.aread()
            self.gate.observe(response.headers)
            if response.status_code != 401 or attempt == 2:
                return response
            self._credentials.invalidate(authorization)
            renewed = await self._credentials.authorization()
            if renewed == authorization:
                return response
            authorization = renewed
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, path: str, kind: type[_T], *, params: Params | None = None) -> _T:
        """GET *path* and decode the JSON answer as *kind*."""
        response = await self.send("GET", path, params=params)
        return decode(response, kind, what=f"GET {path}")

    async def pages(self, path: str, kind: type[_T], *, params: Params | None = None) -> list[_T]:
        """Every page of a listing, following ``Link: rel="next"`` to the end.

        Raises:
            ForgeProtocolError: a next link leaves the API root, or the links loop.
        """
        query: dict[str, str | int] = {"per_page": PER_PAGE, **(params or {})}
        url: str = path
        seen: set[str] = set()
        root = str(self._http.base_url).rstrip("/") + "/"
        found: list[_T] = []
        while True:
            response = await self.send("GET", url, params=query)
            found.append(decode(response, kind, what=f"GET {path}"))
            match = _NEXT_LINK.search(response.headers.get("link", ""))
            if match is None:
                return found
            url = match.group(1)
            # credentials go only to the API root, and a looping server must not loop us
            if not url.startswith(root) or url in seen:
                raise ForgeProtocolError(f"GitHub GET {path}: bad next page link {url!r}")
            seen.add(url)
            query = {}  # the next link carries the whole query


def decode(response: httpx.Response, kind: type[_T], *, what: str) -> _T:
    """Decode a JSON answer, naming the request when it does not parse."""
    try:
        return msgspec.json.decode(response.content, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ForgeProtocolError(f"GitHub {what}: unreadable answer ({exc})") from exc
