"""A tiny webhook provider and a running intake server on 127.0.0.1, for the intake tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import httpx
import pytest
import trio

from ephemerd.capabilities import (
    Claim,
    DaemonStatus,
    JobAction,
    JobEvent,
    WebhookReply,
    WebhookRequest,
)
from ephemerd.intake import serve_intake
from ephemerd.metrics import Metrics

SECRET = b"test-secret"


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class _BaseProvider:
    kind = "github"
    default_images: Mapping[str, str] = {}

    def __init__(self, name: str) -> None:
        self.name = name

    async def claim_job(self, event: JobEvent, *, runner_name: str, labels: Sequence[str]) -> Claim:
        raise NotImplementedError

    async def release_job(self, claim: Claim) -> None:
        raise NotImplementedError

    async def fetch_job_image(self, event: JobEvent) -> str | None:
        return None

    async def stop(self) -> None:
        pass


class PollOnlyProvider(_BaseProvider):
    """A provider without ``handle_webhook``: it must not get a route."""


class HookProvider(_BaseProvider):
    """Checks an HMAC signature, then turns ``{"jobs": ["1", "2"]}`` into queued events.

    ``mode`` makes it misbehave: ``raise``, ``hang``, ``bad_reply``, ``foreign`` (an event
    for another instance), ``gate`` (wait for ``release`` before answering).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.mode = "ok"
        self.requests: list[WebhookRequest] = []
        self.entered = trio.Event()
        self.release = trio.Event()

    async def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        self.requests.append(request)
        self.entered.set()
        if self.mode == "raise":
            raise RuntimeError("handler blew up\nwith a second line")
        if self.mode == "hang":
            await trio.sleep_forever()
        if self.mode == "gate":
            await self.release.wait()
        if self.mode == "bad_reply":
            return WebhookReply(status=42)
        given = request.headers.get("x-hub-signature-256", "")
        if not hmac.compare_digest(given, sign(request.body)):
            return WebhookReply(status=403, body=b"bad signature")
        try:
            jobs = json.loads(request.body)["jobs"]
        except (ValueError, KeyError):
            return WebhookReply(status=400, body=b"bad json")
        instance = "someone-else" if self.mode == "foreign" else self.name
        events = tuple(
            JobEvent(instance=instance, action=JobAction.QUEUED, job_id=str(j)) for j in jobs
        )
        return WebhookReply(status=200, body=b"accepted", events=events)

    async def register_webhooks(self, url: str) -> None:
        pass

    async def deregister_webhooks(self) -> None:
        pass


@dataclass
class Intake:
    """A running intake and what it was given."""

    hook: HookProvider
    metrics: Metrics
    address: str = ""
    submitted: list[JobEvent] = field(default_factory=list[JobEvent])
    submit_fails: bool = False
    draining: bool = False
    status_fails: bool = False
    started_at: float = field(default_factory=lambda: time.time() - 100.0)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def submit(self, event: JobEvent) -> None:
        if self.submit_fails:
            raise RuntimeError("scheduler refused")
        self.submitted.append(event)

    def status(self) -> DaemonStatus:
        if self.status_fails:
            raise RuntimeError("status unavailable")
        return DaemonStatus(
            pid=os.getpid(),
            version="test",
            started_at=self.started_at,
            active_jobs=3,
            parked_jobs=2,
            max_concurrent=8,
            cordoned=self.draining,
            draining=self.draining,
        )


MAX_BODY = 4096


async def start_intake(nursery: trio.Nursery, **options: object) -> Intake:
    intake = Intake(hook=HookProvider("hooked"), metrics=Metrics())
    intake.address = await nursery.start(
        partial(
            serve_intake,
            listen="127.0.0.1:0",
            providers=[intake.hook, PollOnlyProvider("polled")],
            submit=intake.submit,
            status=intake.status,
            metrics=intake.metrics,
            max_body=MAX_BODY,
            **options,
        )
    )
    return intake


@pytest.fixture
async def intake(nursery: trio.Nursery) -> Intake:
    return await start_intake(nursery)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60.0) as c:
        yield c
