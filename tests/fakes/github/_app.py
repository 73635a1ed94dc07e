"""The fake GitHub's HTTP face: an ASGI app serving ``World`` like api.github.com does.

Every answer carries ``x-ratelimit-*``; GETs carry an ``ETag`` and honour ``If-None-Match``
with a 304 that costs no quota; listings honour ``per_page``/``page`` and send ``Link``;
credentials are checked (401 ``Bad credentials``); injected failures take precedence.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jwt
import trio

from tests.fakes._asgi import answer_lifespan, read_body

from ._state import FakeJob, World

__all__ = ["FakeGitHubApp", "Recorded"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    status: int
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # Unix time the request arrived


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    host: str

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict[str, str])
    content_type: str = "application/json; charset=utf-8"
    costs: bool = True


def _json(status: int, payload: object, **headers: str) -> _Response:
    return _Response(status, json.dumps(payload).encode(), dict(headers))


def _error(status: int, message: str) -> _Response:
    return _json(status, {"message": message, "documentation_url": "https://docs.github.com/rest"})


_Handler = Callable[[_Request, re.Match[str]], _Response]


class FakeGitHubApp:
    """ASGI app over a ``World``; ``requests`` records every request (secrets dropped)."""

    def __init__(self, world: World, *, prefix: str = "") -> None:
        self.world = world
        self.prefix = prefix.rstrip("/")
        self.requests: list[Recorded] = []
        self._changed = trio.Event()
        owner_repo = r"(?P<repo>[^/]+/[^/]+)"
        scope = r"(?P<scope>repos/[^/]+/[^/]+|orgs/[^/]+)"
        self._routes: list[tuple[str, re.Pattern[str], _Handler]] = [
            ("GET", re.compile(rf"/repos/{owner_repo}/actions/runs"), self._runs),
            ("GET", re.compile(rf"/repos/{owner_repo}/actions/runs/(?P<id>\d+)"), self._run),
            ("GET", re.compile(rf"/repos/{owner_repo}/actions/runs/(?P<id>\d+)/jobs"), self._jobs),
            ("GET", re.compile(rf"/repos/{owner_repo}/contents/(?P<path>.+)"), self._contents),
            ("GET", re.compile(r"/orgs/(?P<org>[^/]+)/repos"), self._org_repos),
            ("POST", re.compile(rf"/{scope}/actions/runners/generate-jitconfig"), self._jit),
            ("GET", re.compile(rf"/{scope}/actions/runners"), self._list_runners),
            ("DELETE", re.compile(rf"/{scope}/actions/runners/(?P<id>\d+)"), self._delete_runner),
            ("GET", re.compile(rf"/{scope}/hooks"), self._list_hooks),
            ("POST", re.compile(rf"/{scope}/hooks"), self._create_hook),
            ("PATCH", re.compile(rf"/{scope}/hooks/(?P<id>\d+)"), self._edit_hook),
            ("DELETE", re.compile(rf"/{scope}/hooks/(?P<id>\d+)"), self._delete_hook),
            ("POST", re.compile(rf"/{scope}/hooks/(?P<id>\d+)/pings"), self._ping_hook),
        ]
        self._app_route = re.compile(r"/app/installations/(?P<id>[^/]+)/access_tokens")
        self._runner_route = re.compile(r"/_fake/runners/(?P<id>\d+)/(?P<verb>acquire|complete)")
        # set by ``FakeGitHub``: delivers ``workflow_job`` webhooks (action, job) to the hooks
        self.on_job: Callable[[str, FakeJob], Awaitable[None]] | None = None
        self.acquire_timeout = 20.0
        self._jobs_queued = trio.Event()

    def jobs_queued(self) -> None:
        """Wake runners waiting in ``acquire``: new jobs may fit them."""
        self._jobs_queued.set()
        self._jobs_queued = trio.Event()

    async def wait_requests(self, n: int) -> None:
        """Wait until at least *n* requests have been answered."""
        while len(self.requests) < n:
            await self._changed.wait()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until *predicate* (over the world) holds, checked after every request."""
        while not predicate():
            await self._changed.wait()

    def count(self, method: str = "", path: str = "") -> int:
        """How many recorded requests match *method* and contain *path*."""
        return sum(
            1 for r in self.requests if (not method or r.method == method) and path in r.path
        )

    # --- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        body = await read_body(receive)
        arrived = time.time()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path: str = scope["path"]
        request = _Request(
            method=scope["method"],
            path=path.removeprefix(self.prefix) if self.prefix else path,
            query=dict(parse_qsl(scope["query_string"].decode())),
            headers=headers,
            body=body,
            host=headers.get("host", "127.0.0.1"),
        )
        runner = self._runner_route.fullmatch(request.path)
        if runner is not None and request.method == "POST":
            response = await self._runner(request, runner)
        else:
            response = self._handle(request)
        public = {k: v for k, v in headers.items() if k != "authorization"}
        self.requests.append(
            Recorded(
                request.method, request.path, request.query, response.status, public, body, arrived
            )
        )
        self._changed.set()
        self._changed = trio.Event()
        out = [
            (b"content-type", response.content_type.encode()),
            *((k.lower().encode(), v.encode()) for k, v in response.headers.items()),
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": response.body})

    # --- dispatch ------------------------------------------------------------------------

    def _handle(self, request: _Request) -> _Response:
        world = self.world
        if time.time() >= world.rate_reset:  # a new window: the quota is whole again
            world.rate_remaining = world.rate_limit
            world.rate_reset = time.time() + 3600
        failure = world.take_failure(request.method, request.path)
        if failure is not None:
            if failure.after:
                self._route(request)
            response = _Response(failure.status, failure.body, dict(failure.headers))
            response.content_type = failure.content_type
        else:
            response = self._route(request)
        if response.status == 304 or not response.costs:
            pass
        elif world.rate_remaining > 0:
            world.rate_remaining -= 1
        base = {
            "x-ratelimit-limit": str(world.rate_limit),
            "x-ratelimit-remaining": str(world.rate_remaining),
            "x-ratelimit-used": str(world.rate_limit - world.rate_remaining),
            "x-ratelimit-reset": str(int(world.rate_reset)),
            "x-ratelimit-resource": "core",
        }
        response.headers = {**base, **response.headers}
        return response

    def _route(self, request: _Request) -> _Response:
        match = self._app_route.fullmatch(request.path)
        if match is not None and request.method == "POST":
            return self._access_token(request, match)
        token = request.headers.get("authorization", "").partition(" ")[2]
        if not self.world.token_valid(token):
            return _error(401, "Bad credentials")
        if self.world.rate_remaining <= 0:
            return _error(403, "API rate limit exceeded for installation.")
        allowed: set[str] = set()
        for method, pattern, handler in self._routes:
            found = pattern.fullmatch(request.path)
            if found is None:
                continue
            if method == request.method:
                response = handler(request, found)
                if request.method == "GET" and response.status == 200:
                    return self._conditional(request, response)
                return response
            allowed.add(method)
        return _error(405 if allowed else 404, "Not Found" if not allowed else "Method Not Allowed")

    @staticmethod
    def _conditional(request: _Request, response: _Response) -> _Response:
        etag = 'W/"' + hashlib.sha1(response.body).hexdigest() + '"'
        response.headers["etag"] = etag
        if request.headers.get("if-none-match") == etag:
            return _Response(
                304,
                b"",
                {"etag": etag, **{k: v for k, v in response.headers.items() if k == "link"}},
            )
        return response

    def _page(self, request: _Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        per_page = min(max(int(request.query.get("per_page", "30")), 1), 100)
        page = max(int(request.query.get("page", "1")), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        chosen = items[(page - 1) * per_page : page * per_page]

        def link(n: int) -> str:
            query = urlencode({**request.query, "page": str(n)})
            return f"<http://{request.host}{self.prefix}{request.path}?{query}>"

        rels: list[str] = []
        if page < last:
            rels += [f'{link(page + 1)}; rel="next"', f'{link(last)}; rel="last"']
        if page > 1:
            rels += [f'{link(page - 1)}; rel="prev"', f'{link(1)}; rel="first"']
        return chosen, ({"link": ", ".join(rels)} if rels else {})

    # --- Actions -------------------------------------------------------------------------

    def _runs(self, request: _Request, m: re.Match[str]) -> _Response:
        repo = m["repo"]
        if repo not in self.world.repos:
            return _error(404, "Not Found")
        status = request.query.get("status")
        runs = [r for r in reversed(self.world.repos[repo]) if not status or r.status == status]
        chosen, headers = self._page(request, runs)
        body = {"total_count": len(runs), "workflow_runs": [r.as_json() for r in chosen]}
        return _json(200, body, **headers)

    def _run(self, request: _Request, m: re.Match[str]) -> _Response:
        run = self.world.run(m["repo"], int(m["id"]))
        return _json(200, run.as_json()) if run else _error(404, "Not Found")

    def _jobs(self, request: _Request, m: re.Match[str]) -> _Response:
        run = self.world.run(m["repo"], int(m["id"]))
        if run is None:
            return _error(404, "Not Found")
        chosen, headers = self._page(request, run.jobs)
        jobs: list[FakeJob] = chosen
        body = {"total_count": len(run.jobs), "jobs": [j.as_json(m["repo"]) for j in jobs]}
        return _json(200, body, **headers)

    def _contents(self, request: _Request, m: re.Match[str]) -> _Response:
        text = self.world.workflows.get((m["repo"], request.query.get("ref", ""), m["path"]))
        if text is None:
            return _error(404, "Not Found")
        encoded = base64.encodebytes(text.encode()).decode()  # GitHub wraps at 60 columns
        return _json(
            200, {"type": "file", "encoding": "base64", "content": encoded, "path": m["path"]}
        )

    def _org_repos(self, request: _Request, m: re.Match[str]) -> _Response:
        org = m["org"]
        if org not in self.world.orgs:
            return _error(404, "Not Found")
        names = sorted(r for r in self.world.repos if r.split("/")[0] == org)
        repos = [
            {"name": n.split("/")[1], "full_name": n, "archived": n in self.world.archived}
            for n in names
        ]
        chosen, headers = self._page(request, repos)
        return _json(200, chosen, **headers)

    def _jit(self, request: _Request, m: re.Match[str]) -> _Response:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "Problems parsing JSON")
        name, group, labels = body.get("name"), body.get("runner_group_id"), body.get("labels")
        if not isinstance(name, str) or not name or not isinstance(group, int):
            return _error(422, "Invalid request: name and runner_group_id are required")
        if not isinstance(labels, list) or not labels or len(labels) > 100:
            return _error(422, "Invalid request: labels must have 1 to 100 entries")
        if self.world.runner_by_name(name) is not None:
            return _error(409, f"Already exists - A runner with the name {name} already exists.")
        runner = self.world.create_runner(m["scope"], name, [str(x) for x in labels], group)
        return _json(201, {"runner": runner.as_json(), "encoded_jit_config": runner.jit_config})

    def _list_runners(self, request: _Request, m: re.Match[str]) -> _Response:
        runners = self.world.live_runners(m["scope"])
        chosen, headers = self._page(request, runners)
        body = {"total_count": len(runners), "runners": [r.as_json() for r in chosen]}
        return _json(200, body, **headers)

    def _delete_runner(self, request: _Request, m: re.Match[str]) -> _Response:
        runner = self.world.runners.get(int(m["id"]))
        if runner is None or runner.deleted or runner.scope != m["scope"]:
            return _error(404, "Not Found")
        if runner.job_id is not None and self.world.job(runner.job_id) is not None:
            found = self.world.job(runner.job_id)
            if found is not None and found[1].status == "in_progress":
                return _error(422, f"Bad request - Runner {runner.name} is still running a job")
        runner.deleted = True
        self.jobs_queued()  # a runner waiting in acquire learns it is gone
        return _Response(204, content_type="text/plain")

    # --- hooks ---------------------------------------------------------------------------

    def _list_hooks(self, request: _Request, m: re.Match[str]) -> _Response:
        hooks = self.world.hooks_of(m["scope"])
        chosen, headers = self._page(request, hooks)
        return _json(200, [h.as_json() for h in chosen], **headers)

    def _create_hook(self, request: _Request, m: re.Match[str]) -> _Response:
        body = request.json()
        config = body.get("config") or {}
        url = config.get("url")
        if not url:
            return _error(422, "Validation Failed: config.url is missing")
        if any(h.url == url for h in self.world.hooks_of(m["scope"])):
            return _error(422, "Validation Failed: Hook already exists on this repository")
        hook = self.world.create_hook(
            m["scope"], url, config.get("secret", ""), body.get("events", ["push"])
        )
        hook.active = body.get("active", True)
        return _json(201, hook.as_json())

    def _edit_hook(self, request: _Request, m: re.Match[str]) -> _Response:
        hook = self.world.hooks.get(int(m["id"]))
        if hook is None or hook.scope != m["scope"]:
            return _error(404, "Not Found")
        body = request.json()
        config = body.get("config") or {}
        hook.url = config.get("url", hook.url)
        hook.secret = config.get("secret", hook.secret)
        hook.events = body.get("events", hook.events)
        hook.active = body.get("active", hook.active)
        return _json(200, hook.as_json())

    def _delete_hook(self, request: _Request, m: re.Match[str]) -> _Response:
        hook = self.world.hooks.get(int(m["id"]))
        if hook is None or hook.scope != m["scope"]:
            return _error(404, "Not Found")
        del self.world.hooks[hook.id]
        return _Response(204, content_type="text/plain")

    def _ping_hook(self, request: _Request, m: re.Match[str]) -> _Response:
        hook = self.world.hooks.get(int(m["id"]))
        if hook is None or hook.scope != m["scope"]:
            return _error(404, "Not Found")
        return _Response(204, content_type="text/plain")

    # --- the runner side (not a GitHub REST API: what the actions runner does) ----------

    async def _runner(self, request: _Request, m: re.Match[str]) -> _Response:
        """A JIT runner connects (``acquire``: long-poll for a job) or reports completion.

        The body names the runner (its ``AgentName``), standing in for the credentials a
        real runner presents. Webhooks are delivered before the answer, so the in_progress
        delivery of a job always precedes its completed one.
        """
        runner = self.world.runners.get(int(m["id"]))
        try:
            body = request.json()
        except ValueError:
            return _error(400, "Problems parsing JSON")
        if runner is None or runner.deleted or body.get("name") != runner.name:
            return _error(404, "Not Found")
        if m["verb"] == "acquire":
            self.world.runner_starts.setdefault(runner.name, float(body.get("started", 0.0)))
            with trio.move_on_after(self.acquire_timeout):
                while True:
                    job = self.world.connect(runner.name)
                    if job is not None:
                        if self.on_job is not None:
                            await self.on_job("in_progress", job)
                        found = self.world.job(job.id)
                        repo = found[0] if found else ""
                        return _json(200, {"job": job.as_json(repo)})
                    if runner.deleted or runner.job_id is not None:
                        return _error(404, "Not Found")
                    await self._jobs_queued.wait()
            return _Response(204, content_type="text/plain")
        job_id = body.get("job_id")
        if runner.job_id is None or job_id != runner.job_id:
            return _error(422, f"runner {runner.name} does not run job {job_id}")
        found = self.world.job(job_id)
        repo = found[0] if found else ""
        job = self.world.complete(job_id, str(body.get("conclusion", "success")))
        if self.on_job is not None:
            await self.on_job("completed", job)
        return _json(200, {"job": job.as_json(repo)})

    # --- App auth ------------------------------------------------------------------------

    def _access_token(self, request: _Request, m: re.Match[str]) -> _Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return _error(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            key = self.world.apps.get(str(claims.get("iss")))
            if key is None:
                return _error(401, "Integration not found")
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=60,
            )
        except jwt.PyJWTError as exc:
            return _error(401, f"A JSON web token could not be decoded: {exc}")
        if claims["exp"] - claims["iat"] > 660 or claims["exp"] > time.time() + 600:
            return _error(401, "'Expiration time' claim ('exp') is too far in the future")
        if m["id"] not in self.world.installations:
            return _error(404, "Not Found")
        issued, expires = self.world.issue_installation_token()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        return _json(201, {"token": issued, "expires_at": stamp, "permissions": {}})
