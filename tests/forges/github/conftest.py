"""Fixtures: a fake GitHub on loopback, providers pointed at it, a webhook intake over HTTP."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ephemerd.capabilities import JobEvent, WebhookRequest
from ephemerd.forges.github import GitHubOptions, GitHubProvider, open_github_provider
from tests.fakes._asgi import answer_lifespan, read_body, serve_on_loopback
from tests.fakes.github import FakeGitHub, open_fake_github

TOKEN = "ghp_testtoken0123456789"
SECRET = "hook-secret-xyz"


@cache
def rsa_key() -> tuple[str, bytes]:
    """(private PEM, public PEM) of a test App key, generated once per session."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.fixture
async def fake() -> AsyncGenerator[FakeGitHub, None]:
    async with open_fake_github() as gh:
        gh.world.tokens.add(TOKEN)
        yield gh


def options(fake: FakeGitHub, **overrides: Any) -> GitHubOptions:
    base: dict[str, Any] = {
        "name": "gh",
        "owner": "acme",
        "repos": ("app",),
        "token": TOKEN,
        "api_url": fake.url,
        "webhook_secret": SECRET,
    }
    base.update(overrides)
    return GitHubOptions(**base)


@asynccontextmanager
async def provider_for(fake: FakeGitHub, **overrides: Any) -> AsyncGenerator[GitHubProvider, None]:
    async with open_github_provider(options(fake, **overrides)) as provider:
        yield provider


class Intake:
    """A minimal webhook intake: POST /webhook -> provider.handle_webhook, over real HTTP."""

    def __init__(self, provider: GitHubProvider) -> None:
        self.provider = provider
        self.events: list[JobEvent] = []
        self.url = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        reply = await self.provider.handle_webhook(
            WebhookRequest(method=scope["method"], headers=headers, body=body)
        )
        self.events.extend(reply.events)
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})


@asynccontextmanager
async def open_intake(provider: GitHubProvider) -> AsyncGenerator[Intake, None]:
    intake = Intake(provider)
    async with serve_on_loopback(intake) as url:
        intake.url = url + "/webhook/gh"
        yield intake
