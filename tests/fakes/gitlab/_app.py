"""The fake GitLab's HTTP face: the runner endpoints of ``/api/v4`` as GitLab answers them.

- ``POST /api/v4/runners/verify``: 200 with ``{"id", "token", "token_expires_at"}`` (or an
  empty body in ``legacy_verify`` mode, as GitLab before 15.x), 403 ``{"message": "403
  Forbidden"}`` for unknown or revoked tokens, 400 when ``token`` is missing;
- ``POST /api/v4/jobs/request``: 204 (no job) for a valid token, 403 else;
- anything else: 404 ``{"error": "404 Not Found"}``.

Injected failures (``Failure``) come first. Every request is recorded with the Trio time it
arrived (MockClock-friendly) and with the runner token redacted.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from tests.fakes._asgi import answer_lifespan, read_body

__all__ = ["Failure", "FakeGitLabApp", "FakeRunner", "Recorded"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_FORBIDDEN = b'{"message":"403 Forbidden"}'
_JSON = "application/json"


@dataclass
class Recorded:
    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: Any  # the decoded JSON body, runner token replaced by "<redacted>"
    at: float  # trio.current_time() on arrival


@dataclass
class Failure:
    """The next *times* requests whose path contains *path* get this answer instead."""

    status: int
    body: bytes = b""
    content_type: str = _JSON
    path: str = ""
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict[str, str])


@dataclass
class FakeRunner:
    id: int
    token: str
    token_expires_at: str | None = None  # RFC 3339, or None: never expires
    revoked: bool = False


class FakeGitLabApp:
    """ASGI app; tests change ``runners``, ``failures`` and ``legacy_verify`` directly."""

    def __init__(self) -> None:
        self.runners: dict[str, FakeRunner] = {}
        self.failures: list[Failure] = []
        self.legacy_verify = False
        self.requests: list[Recorded] = []
        self._changed = trio.Event()
        self._next_id = 1000

    def add_runner(self, token: str, *, token_expires_at: str | None = None) -> FakeRunner:
        self._next_id += 1
        runner = FakeRunner(self._next_id, token, token_expires_at)
        self.runners[token] = runner
        return runner

    def count(self, path: str = "") -> int:
        return sum(1 for r in self.requests if path in r.path)

    async def wait_requests(self, n: int) -> None:
        while len(self.requests) < n:
            await self._changed.wait()

    def _take_failure(self, path: str) -> Failure | None:
        for failure in self.failures:
            if failure.path in path and failure.times > 0:
                failure.times -= 1
                if failure.times == 0:
                    self.failures.remove(failure)
                return failure
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        body = await read_body(receive)
        arrived = trio.current_time()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        method: str = scope["method"]
        path: str = scope["path"]
        try:
            payload: Any = json.loads(body) if body else None
        except ValueError:
            payload = None
        failure = self._take_failure(path)
        if failure is not None:
            status, out, ctype, extra = (
                failure.status,
                failure.body,
                failure.content_type,
                failure.headers,
            )
        else:
            status, out, ctype, extra = *self._route(method, path, payload, headers), {}
        self._record(method, path, status, headers, payload, arrived)
        response_headers = [(b"content-type", ctype.encode())] if ctype else []
        response_headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": out})

    def _record(
        self,
        method: str,
        path: str,
        status: int,
        headers: dict[str, str],
        payload: Any,
        arrived: float,
    ) -> None:
        public = {k: ("<redacted>" if k == "runner-token" else v) for k, v in headers.items()}
        if isinstance(payload, dict) and "token" in payload:
            payload = {**payload, "token": "<redacted>"}
        self.requests.append(Recorded(method, path, status, public, payload, arrived))
        self._changed.set()
        self._changed = trio.Event()

    def _route(
        self, method: str, path: str, payload: Any, headers: dict[str, str]
    ) -> tuple[int, bytes, str]:
        if method == "POST" and path == "/api/v4/runners/verify":
            return self._verify(payload)
        if method == "POST" and path == "/api/v4/jobs/request":
            return self._request_job(payload)
        return 404, b'{"error":"404 Not Found"}', _JSON

    def _runner(self, payload: Any) -> FakeRunner | None:
        token = payload.get("token") if isinstance(payload, dict) else None
        runner = self.runners.get(token) if isinstance(token, str) else None
        return runner if runner is not None and not runner.revoked else None

    def _verify(self, payload: Any) -> tuple[int, bytes, str]:
        if not isinstance(payload, dict) or not payload.get("token"):
            return 400, b'{"error":"token is missing"}', _JSON
        runner = self._runner(payload)
        if runner is None:
            return 403, _FORBIDDEN, _JSON
        if self.legacy_verify:
            return 200, b"", ""
        reply = {
            "id": runner.id,
            "token": runner.token,
            "token_expires_at": runner.token_expires_at,
        }
        return 200, json.dumps(reply).encode(), _JSON

    def _request_job(self, payload: Any) -> tuple[int, bytes, str]:
        if self._runner(payload) is None:
            return 403, _FORBIDDEN, _JSON
        return 204, b"", ""
