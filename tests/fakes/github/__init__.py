"""A faithful fake GitHub for tests: a real HTTP server on 127.0.0.1 and a webhook emitter.

Usage::

    async with open_fake_github() as gh:
        gh.world.tokens.add("ghp_test")
        run = gh.world.add_run("acme/app", [("build", ["self-hosted", "linux"])])
        ...  # point a provider at gh.url
        job = gh.world.connect(runner_name)        # a JIT runner connects (fungible)
        await gh.emit(url, "workflow_job", gh.workflow_job(job, "in_progress"), secret)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager, suppress

import httpx

from tests.fakes._asgi import serve_on_loopback

from ._app import FakeGitHubApp, Recorded
from ._state import Failure, FakeHook, FakeJob, FakeRun, FakeRunner, World

__all__ = [
    "Failure",
    "FakeGitHub",
    "FakeHook",
    "FakeJob",
    "FakeRun",
    "FakeRunner",
    "Recorded",
    "World",
    "open_fake_github",
    "sign",
]


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class FakeGitHub:
    """The running fake: ``url`` is its API root; ``world`` its state; ``app`` its requests."""

    def __init__(self, url: str, app: FakeGitHubApp, http: httpx.AsyncClient) -> None:
        self.url = url
        self.app = app
        self.world = app.world
        self._http = http
        # (job id, action) -> Unix time the delivery to the hooks began
        self.delivered: dict[tuple[int, str], float] = {}
        app.on_job = self.deliver_job

    @property
    def requests(self) -> list[Recorded]:
        return self.app.requests

    def count(self, method: str = "", path: str = "") -> int:
        return self.app.count(method, path)

    # --- failure modes -------------------------------------------------------------------

    def fail(self, failure: Failure) -> None:
        self.world.failures.append(failure)

    def primary_limit(self, *, reset_in: float = 60.0, status: int = 403) -> None:
        """Exhaust the quota: every request gets *status* with remaining 0 until reset."""
        self.world.rate_remaining = 0
        self.world.rate_reset = time.time() + reset_in
        if status == 429:
            self.fail(Failure(429, b'{"message": "API rate limit exceeded"}', times=1_000_000))

    def secondary_limit(
        self, *, retry_after: float | None = 60.0, times: int = 1, path: str = ""
    ) -> None:
        headers = {"retry-after": str(int(retry_after))} if retry_after is not None else {}
        body = json.dumps(
            {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}
        ).encode()
        self.fail(Failure(403, body, headers, path=path, times=times))

    def forbid(self, *, path: str = "", times: int = 1) -> None:
        body = b'{"message": "Resource not accessible by integration"}'
        self.fail(Failure(403, body, path=path, times=times))

    def server_error(self, *, status: int = 502, path: str = "", times: int = 1) -> None:
        body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        self.fail(Failure(status, body, path=path, times=times, content_type="text/html"))

    def malformed(
        self,
        *,
        path: str = "",
        times: int = 1,
        method: str = "",
        status: int = 200,
        after: bool = False,
    ) -> None:
        """A truncated JSON body with a success status (*after*: the request took effect)."""
        body = b'{"total_count": 1, "workflow_runs": ['
        self.fail(Failure(status, body, path=path, times=times, method=method, after=after))

    # --- webhooks ------------------------------------------------------------------------

    def workflow_job(self, job: FakeJob, action: str | None = None) -> dict[str, object]:
        """A ``workflow_job`` payload for *job* (action defaults to its status)."""
        found = self.world.job(job.id)
        repo = found[0] if found else ""
        owner, _, name = repo.partition("/")
        return {
            "action": action or job.status,
            "workflow_job": job.as_json(repo),
            "repository": {"name": name, "full_name": repo, "owner": {"login": owner}},
            "sender": {"login": "octocat"},
        }

    def delivery(
        self,
        event: str,
        payload: object,
        secret: str,
        *,
        delivery_id: str | None = None,
        signature: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """Headers and body GitHub would POST; *signature* overrides the real one."""
        body = json.dumps(payload).encode()
        headers = {
            "content-type": "application/json",
            "user-agent": "GitHub-Hookshot/fake",
            "x-github-event": event,
            "x-github-delivery": delivery_id or str(uuid.uuid4()),
            "x-github-hook-id": "1",
            "x-hub-signature-256": signature if signature is not None else sign(secret, body),
        }
        return headers, body

    async def deliver_job(self, action: str, job: FakeJob) -> None:
        """Deliver a ``workflow_job`` event to every active hook covering the job's repo.

        Like GitHub, a failed delivery is not retried; the answers are not checked here.
        """
        found = self.world.job(job.id)
        repo = found[0] if found else ""
        owner = repo.split("/", maxsplit=1)[0]
        payload = self.workflow_job(job, action)
        self.delivered.setdefault((job.id, action), time.time())
        for hook in list(self.world.hooks.values()):
            if hook.active and hook.scope in (f"repos/{repo}", f"orgs/{owner}"):
                headers, body = self.delivery("workflow_job", payload, hook.secret)
                with suppress(httpx.HTTPError):
                    await self._http.post(hook.url, content=body, headers=headers)

    async def queue(self, repo: str, jobs: list[tuple[str, list[str]]]) -> FakeRun:
        """A new run of *repo*: waiting runners are woken and ``queued`` events delivered."""
        run = self.world.add_run(repo, jobs)
        self.app.jobs_queued()
        for job in run.jobs:
            await self.deliver_job("queued", job)
        return run

    async def emit(
        self,
        url: str,
        event: str,
        payload: object,
        secret: str,
        *,
        delivery_id: str | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        """POST a signed delivery to *url*, as GitHub's hookshot does."""
        headers, body = self.delivery(
            event, payload, secret, delivery_id=delivery_id, signature=signature
        )
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, content=body, headers=headers)


@asynccontextmanager
async def open_fake_github(*, prefix: str = "") -> AsyncGenerator[FakeGitHub, None]:
    """Serve a fresh fake on an ephemeral 127.0.0.1 port for the duration of the block.

    *prefix* serves the API under a path, as GitHub Enterprise Server does (``/api/v3``).
    """
    app = FakeGitHubApp(World(), prefix=prefix)
    async with httpx.AsyncClient(timeout=10) as http, serve_on_loopback(app) as url:
        yield FakeGitHub(url + prefix, app, http)
