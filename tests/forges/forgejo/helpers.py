"""Fixtures: a fake Forgejo/Gitea on loopback and providers pointed at it."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

from ephemerd.forges._actions import ActionsOptions, ActionsProvider, Flavour, open_actions_provider
from ephemerd.forges.forgejo import FLAVOUR as FORGEJO
from ephemerd.forges.gitea import FLAVOUR as GITEA
from tests.fakes.forgejo import FakeForge, open_fake_forge

API_TOKEN = "pat-0123456789"


@asynccontextmanager
async def forge_for(
    flavour: str, *, scope: str = "/repos/acme/app"
) -> AsyncGenerator[tuple[FakeForge, str], None]:
    """A fake of *flavour* with an API token and a registration token of *scope*."""
    async with open_fake_forge(flavour) as forge:
        forge.world.api_tokens.add(API_TOKEN)
        yield forge, forge.world.add_registration_token(scope)


def options(forge: FakeForge, registration_token: str, **overrides: Any) -> ActionsOptions:
    base: dict[str, Any] = {
        "name": "fj",
        "instance_url": forge.url,
        "registration_token": registration_token,
        "api_token": API_TOKEN,
        "owner": "acme",
        "repos": ("app",),
        "poll_interval": 5.0,
    }
    base.update(overrides)
    return ActionsOptions(**base)


def flavour_of(fake: str) -> Flavour:
    return FORGEJO if fake.startswith("forgejo") else GITEA


@asynccontextmanager
async def provider_for(
    forge: FakeForge, registration_token: str, **overrides: Any
) -> AsyncGenerator[ActionsProvider, None]:
    flavour = flavour_of(forge.world.flavour.kind)
    async with open_actions_provider(options(forge, registration_token, **overrides), flavour) as p:
        yield p
