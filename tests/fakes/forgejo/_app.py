"""The fake's HTTP face: an ASGI app serving the runner RPCs and the ``/api/v1`` routes."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import trio

from tests.fakes._asgi import answer_lifespan, read_body

from ._rpc import Rpc, RpcError
from ._state import FakeRunner, World

__all__ = ["FakeForgeApp", "Recorded"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_RPC = re.compile(r"^/api/actions/(?P<service>[\w.]+)/(?P<method>\w+)$")
_SCOPE = r"(?P<scope>/repos/[^/]+/[^/]+|/orgs/[^/]+|/user|/admin)"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"


def _json(status: int, payload: object) -> _Answer:
    return _Answer(status, json.dumps(payload).encode())


def _message(status: int, message: str) -> _Answer:
    return _json(status, {"message": message, "url": "https://forge.example/api/swagger"})


def _runner_json(runner: FakeRunner) -> dict[str, object]:
    return {
        "id": runner.id,
        "uuid": runner.uuid,
        "name": runner.name,
        "status": "idle" if not runner.task_id else "active",
        "busy": bool(runner.task_id),
        "ephemeral": runner.ephemeral,
        "labels": [{"name": label.split(":", 1)[0]} for label in runner.labels],
    }


class FakeForgeApp:
    """ASGI app over a ``World``; ``requests`` records every request (tokens dropped)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.rpc = Rpc(world)
        self.requests: list[Recorded] = []
        self.url = ""
        self.hold_fetch: trio.Event | None = None
        """While set, a FetchTask/FetchSingleTask with a request key waits on it (key locked)."""

    def count(self, path: str = "", method: str = "") -> int:
        return sum(
            1 for r in self.requests if path in r.path and (not method or r.method == method)
        )

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path: str = scope["path"]
        query = dict(parse_qsl(scope["query_string"].decode()))
        answer = await self._answer(scope["method"], path, query, headers, body)
        safe = {k: v for k, v in headers.items() if k not in ("authorization", "x-runner-token")}
        self.requests.append(Recorded(scope["method"], path, query, answer.status, safe, body))
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(b"content-type", answer.content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    async def _answer(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> _Answer:
        for failure in self.world.failures:
            if failure.times > 0 and failure.path in path:
                failure.times -= 1
                return _Answer(failure.status, failure.body, failure.content_type)
        if path == "/api/test/standin" and method == "POST":
            report = json.loads(body or b"{}")
            report["received_at"] = trio.current_time()
            self.world.standin_reports.append(report)
            self.world.touch()
            return _json(200, {})
        found = _RPC.match(path)
        if found is not None:
            return await self._rpc(method, found["service"], found["method"], headers, body)
        if path.startswith("/api/v1/"):
            return self._rest(method, path.removeprefix("/api/v1"), query, headers, body)
        return _message(404, "not found")

    async def _rpc(
        self, method: str, service: str, name: str, headers: dict[str, str], body: bytes
    ) -> _Answer:
        if method != "POST":
            return _Answer(405, b"", "text/plain")
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type not in ("application/json", "application/proto"):
            return _Answer(415, b"", "text/plain")
        key = ""
        if name in ("FetchTask", "FetchSingleTask") and self.world.flavour.single_task:
            key = headers.get("x-runner-uuid", "") + "/" + headers.get("x-runner-request-key", "")
        try:
            if key.endswith("/"):
                key = ""
            if key and key in self._locked:
                raise RpcError("internal", "request key is currently locked; retry soon")
            if key:
                self._locked.add(key)
            try:
                if key and self.hold_fetch is not None:
                    await self.hold_fetch.wait()
                out = self.rpc.call(service, name, body, headers, content_type)
            finally:
                self._locked.discard(key)
        except RpcError as exc:
            payload = {"code": exc.code, "message": exc.message}
            return _Answer(self.rpc.status_of(exc.code), json.dumps(payload).encode())
        return _Answer(200, out, content_type)

    @property
    def _locked(self) -> set[str]:
        return self.world.locked_request_keys

    # --- REST ----------------------------------------------------------------------------

    def _rest(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> _Answer:
        world, flavour = self.world, self.world.flavour
        if path == "/version" and method == "GET":
            return _json(200, {"version": flavour.version})
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "token" or token not in world.api_tokens:
            return _message(401, "token is required")
        if m := re.fullmatch(_SCOPE + r"/actions/runners/registration-token", path):
            if method not in flavour.token_methods:
                return _Answer(405, b"", "text/plain")
            return _json(200, {"token": world.add_registration_token(m["scope"])})
        if m := re.fullmatch(_SCOPE + r"/actions/runners/jobs", path):
            if method != "GET" or flavour.kind != "forgejo" or not flavour.jobs_listing:
                return _message(404, "not found")
            wanted = {label for label in query.get("labels", "").split(",") if label}
            jobs = [
                {
                    "id": job.id,
                    "run_id": job.run_id,
                    "attempt": job.attempt,
                    "handle": job.handle if flavour.single_task else "",
                    "name": job.name,
                    "runs_on": job.runs_on,
                    "status": job.status,
                    "task_id": job.task_id,
                    "html_url": f"{self.url}/{job.repo}/actions/runs/{job.run_id}/jobs/0",
                }
                for job in sorted(world.jobs.values(), key=lambda j: j.id)
                if job.status == "waiting"
                and _scope_has(m["scope"], job.repo)
                and (not wanted or set(job.runs_on) <= wanted)
            ]
            return _json(200, jobs or None)
        if m := re.fullmatch(r"/repos/(?P<repo>[^/]+/[^/]+)/actions/jobs", path):
            if method != "GET" or flavour.kind != "gitea" or not flavour.jobs_listing:
                return _message(404, "not found")
            status = query.get("status", "")
            names = {"waiting": "queued", "running": "in_progress"}
            jobs = [
                {
                    "id": job.id,
                    "run_id": job.run_id,
                    "name": job.name,
                    "labels": job.runs_on,
                    "status": names.get(job.status, "completed"),
                    "runner_name": "",
                    "head_sha": job.commit_sha,
                }
                for job in sorted(world.jobs.values(), key=lambda j: j.id)
                if job.repo == m["repo"] and (not status or names.get(job.status) == status)
            ]
            return _json(200, {"total_count": len(jobs), "jobs": jobs})
        if m := re.fullmatch(r"/repos/(?P<repo>[^/]+/[^/]+)/actions/runs/(?P<id>\d+)", path):
            return self._run(method, m["repo"], int(m["id"]))
        if m := re.fullmatch(r"/repos/(?P<repo>[^/]+/[^/]+)/contents/(?P<path>.+)", path):
            return self._contents(method, m["repo"], unquote(m["path"]), query.get("ref", ""))
        if m := re.fullmatch(_SCOPE + r"/actions/runners", path):
            if method == "GET":
                runners = [_runner_json(r) for r in world.live_runners() if r.scope == m["scope"]]
                if flavour.kind == "gitea":
                    return _json(200, {"runners": runners, "total_count": len(runners)})
                return _json(200, runners)
            if method == "POST" and flavour.single_task:
                request = json.loads(body or b"{}")
                if not request.get("name"):
                    return _message(422, "name is required")
                runner = world.create_runner(
                    m["scope"], request["name"], [], ephemeral=bool(request.get("ephemeral"))
                )
                return _json(201, {"id": runner.id, "uuid": runner.uuid, "token": runner.token})
            return _Answer(405, b"", "text/plain")
        if m := re.fullmatch(_SCOPE + r"/actions/runners/(?P<id>\d+)", path):
            runner = world.runners.get(int(m["id"]))
            if runner is None or runner.deleted or runner.scope != m["scope"]:
                return _message(404, "runner not found")
            if method == "GET":
                return _json(200, _runner_json(runner))
            if method == "DELETE":
                runner.deleted = True
                return _Answer(204, b"", "text/plain")
            return _Answer(405, b"", "text/plain")
        return _message(404, "not found")

    def _run(self, method: str, repo: str, run_id: int) -> _Answer:
        """A run as each forge shows it: Forgejo's ``ActionRun``, Gitea's GitHub-style one."""
        jobs = [j for j in self.world.jobs.values() if j.run_id == run_id and j.repo == repo]
        if method != "GET" or not jobs:
            return _message(404, "run not found")
        job = jobs[0]
        if self.world.flavour.kind == "forgejo":
            return _json(
                200,
                {
                    "id": run_id,
                    "title": "push",
                    "workflow_id": job.workflow,
                    "commit_sha": job.commit_sha,
                    "prettyref": "main",
                    "status": "waiting",
                },
            )
        return _json(
            200,
            {
                "id": run_id,
                "path": f"{job.workflow}@refs/heads/main",
                "head_sha": job.commit_sha,
                "head_branch": "main",
                "status": "queued",
            },
        )

    def _contents(self, method: str, repo: str, path: str, ref: str) -> _Answer:
        content = self.world.files.get((repo, ref, path.strip("/")))
        if method != "GET" or content is None:
            return _message(404, "object does not exist [id: , rel_path: ]")
        encoded = base64.encodebytes(content).decode()  # with newlines, as the forges send it
        name = path.rsplit("/", 1)[-1]
        return _json(
            200,
            {"name": name, "path": path, "type": "file", "encoding": "base64", "content": encoded},
        )


def _scope_has(scope: str, repo: str) -> bool:
    if scope == "/admin":
        return True
    if scope.startswith("/orgs/"):
        return repo.split("/", 1)[0] == scope.removeprefix("/orgs/")
    return scope.removeprefix("/repos/") == repo
