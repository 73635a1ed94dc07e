"""Hook registration touches only ephemerd's own hooks, is idempotent, and rolls back."""

from __future__ import annotations

import pytest
import trio

from ephemerd._errors import ForgePermissionError
from tests.fakes.github import FakeGitHub

from .conftest import SECRET, provider_for

URL = "https://ci.example.com/webhook/gh"


async def test_register_creates_a_workflow_job_hook_per_repository(fake: FakeGitHub) -> None:
    async with provider_for(fake, repos=("app", "lib")) as provider:
        await provider.register_webhooks(URL)
    hooks = sorted(fake.world.hooks.values(), key=lambda h: h.scope)
    assert [(h.scope, h.url, h.events, h.secret, h.active) for h in hooks] == [
        ("repos/acme/app", URL, ["workflow_job"], SECRET, True),
        ("repos/acme/lib", URL, ["workflow_job"], SECRET, True),
    ]


async def test_org_scope_registers_on_the_org(fake: FakeGitHub) -> None:
    async with provider_for(fake, repos=()) as provider:
        await provider.register_webhooks(URL)
        await provider.deregister_webhooks()
    assert [(r.method, r.path) for r in fake.requests if r.method != "GET"] == [
        ("POST", "/orgs/acme/hooks"),
        ("DELETE", "/orgs/acme/hooks/501"),
    ]


async def test_register_is_idempotent_and_foreign_hooks_are_untouched(fake: FakeGitHub) -> None:
    foreign = fake.world.create_hook(
        "repos/acme/app", "https://bot.example.com/hook", "x", ["push"]
    )
    other_ci = fake.world.create_hook(
        "repos/acme/app", "https://other-host.example.com/webhook/gh", "y", ["workflow_job"]
    )
    stale = fake.world.create_hook("repos/acme/app", URL, "old-secret", ["push"])
    async with provider_for(fake) as provider:
        await provider.register_webhooks(URL)
        await provider.register_webhooks(URL)
        assert len(fake.world.hooks) == 3  # reused our URL's hook, created none
        assert (stale.secret, stale.events) == (SECRET, ["workflow_job"])
        await provider.deregister_webhooks()
    assert set(fake.world.hooks) == {foreign.id, other_ci.id}
    assert (foreign.url, foreign.secret, foreign.events) == (
        "https://bot.example.com/hook",
        "x",
        ["push"],
    )
    touched = {r.path for r in fake.requests if r.method in ("PATCH", "DELETE")}
    assert touched == {f"/repos/acme/app/hooks/{stale.id}"}


async def test_partial_failure_rolls_back_what_was_created(fake: FakeGitHub) -> None:
    kept = fake.world.create_hook("repos/acme/b", URL, "s", ["workflow_job"])
    fake.forbid(path="/repos/acme/c/hooks")
    async with provider_for(fake, repos=("a", "b", "c")) as provider:
        with pytest.raises(ForgePermissionError):
            await provider.register_webhooks(URL)
    # a's new hook is deleted again; b's pre-existing hook (reused) stays
    assert list(fake.world.hooks) == [kept.id]


async def test_cancelled_registration_still_rolls_back(fake: FakeGitHub) -> None:
    async with provider_for(fake, repos=("a", "b")) as provider:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(provider.register_webhooks, URL)
                while not fake.world.hooks:
                    await fake.app.wait_requests(len(fake.requests) + 1)
                scope.cancel()
        assert scope.cancelled_caught
    assert fake.world.hooks == {}


async def test_deregister_without_register_does_nothing(fake: FakeGitHub) -> None:
    fake.world.create_hook("repos/acme/app", URL, "s", ["workflow_job"])
    async with provider_for(fake) as provider:
        await provider.deregister_webhooks()
    assert fake.requests == [] and len(fake.world.hooks) == 1
