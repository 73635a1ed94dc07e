"""The REST client: headers, GHES base URL, error classes, rate limits and the gate."""

from __future__ import annotations

import time

import pytest
import trio
from trio.testing import MockClock

from ephemerd._errors import (
    ForgeAuthError,
    ForgeNotFound,
    ForgePermissionError,
    ForgeProtocolError,
    ForgeRateLimited,
    ForgeUnavailable,
)
from ephemerd.forges.github._payloads import RunsPage
from tests.fakes.github import FakeGitHub, open_fake_github

from .conftest import TOKEN, provider_for


async def test_requests_carry_api_version_accept_and_token(fake: FakeGitHub) -> None:
    fake.world.add_repo("acme/app")
    async with provider_for(fake) as provider:
        await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
    (request,) = fake.requests
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["user-agent"].startswith("ephemerd/")
    assert "authorization" not in request.headers  # the fake records no secrets
    assert request.status == 200


async def test_enterprise_base_url_keeps_its_path_prefix() -> None:
    async with open_fake_github(prefix="/api/v3") as gh:
        gh.world.tokens.add(TOKEN)
        gh.world.add_run("acme/app", [("build", ["self-hosted"])])
        assert gh.url.endswith("/api/v3")
        async with provider_for(gh, api_url=gh.url + "/") as provider:
            send, receive = trio.open_memory_channel[object](10)
            async with send:
                await provider._poller.poll_once(send)  # pyright: ignore[reportPrivateUsage]
            assert receive.statistics().current_buffer_used == 1
        assert all(r.status == 200 for r in gh.requests)


async def test_bad_credentials_are_an_auth_error(fake: FakeGitHub) -> None:
    fake.world.add_repo("acme/app")
    async with provider_for(fake, token="ghp_wrong") as provider:
        with pytest.raises(ForgeAuthError, match="401"):
            await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
    assert "ghp_wrong" not in repr(provider)


async def test_plain_403_is_a_permission_error_and_not_retried(fake: FakeGitHub) -> None:
    fake.world.add_repo("acme/app")
    fake.forbid(times=5)
    async with provider_for(fake) as provider:
        with pytest.raises(ForgePermissionError, match="not accessible") as caught:
            await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
    assert caught.value.retryable is False
    assert fake.count() == 1


async def test_404_5xx_and_malformed_bodies_are_classified(fake: FakeGitHub) -> None:
    fake.world.add_repo("acme/app")
    async with provider_for(fake) as provider:
        with pytest.raises(ForgeNotFound):
            await provider.client.get("/repos/acme/nope/actions/runs", RunsPage)
        fake.server_error(status=502)
        with pytest.raises(ForgeUnavailable, match="502") as unavailable:
            await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        assert unavailable.value.retryable
        assert "<html>" not in str(unavailable.value)
        fake.malformed()
        with pytest.raises(ForgeProtocolError, match="unreadable"):
            await provider.client.get("/repos/acme/app/actions/runs", RunsPage)


async def test_unreachable_forge_is_unavailable() -> None:
    async with open_fake_github() as gh:
        url = gh.url
    async with provider_for(gh, api_url=url) as provider:
        with pytest.raises(ForgeUnavailable):
            await provider.client.get("/repos/acme/app/actions/runs", RunsPage)


async def test_every_response_updates_the_rate_limit_hint(fake: FakeGitHub) -> None:
    fake.world.add_repo("acme/app")
    async with provider_for(fake) as provider:
        assert provider.rate_limit_hint() is None
        await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        hint = provider.rate_limit_hint()
        assert hint is not None
        assert hint.remaining == fake.world.rate_remaining == 4999
        assert hint.reset_at == int(fake.world.rate_reset)
        assert abs(hint.observed_at - time.time()) < 60


@pytest.mark.parametrize("status", [403, 429])
async def test_primary_limit_waits_for_reset_without_sending(
    fake: FakeGitHub, status: int, mock_clock: MockClock
) -> None:
    fake.world.add_repo("acme/app")
    fake.primary_limit(reset_in=120, status=status)
    async with provider_for(fake) as provider:
        with pytest.raises(ForgeRateLimited) as caught:
            await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        assert caught.value.reset_at == int(fake.world.rate_reset)
        assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 122
        hint = provider.rate_limit_hint()
        assert hint is not None and hint.remaining == 0
        # the gate is closed: no request reaches GitHub until the reset
        for _ in range(20):
            with pytest.raises(ForgeRateLimited):
                await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        assert fake.count() == 1
        fake.world.failures.clear()
        fake.world.rate_remaining = 5000
        mock_clock.jump(caught.value.retry_after)
        await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        assert fake.count() == 2


async def test_secondary_limit_honours_retry_after(fake: FakeGitHub, mock_clock: MockClock) -> None:
    fake.world.add_repo("acme/app")
    fake.secondary_limit(retry_after=42)
    async with provider_for(fake) as provider:
        with pytest.raises(ForgeRateLimited, match="secondary") as caught:
            await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        assert caught.value.retry_after == 42
        assert caught.value.retryable
        mock_clock.jump(41)
        with pytest.raises(ForgeRateLimited):
            await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        assert fake.count() == 1
        mock_clock.jump(2)
        await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        assert fake.count() == 2


async def test_secondary_limit_without_retry_after_backs_off_exponentially(
    fake: FakeGitHub, mock_clock: MockClock
) -> None:
    fake.world.add_repo("acme/app")
    fake.secondary_limit(retry_after=None, times=3)
    waits: list[float] = []
    async with provider_for(fake) as provider:
        for _ in range(3):
            with pytest.raises(ForgeRateLimited) as caught:
                await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
            assert caught.value.retry_after is not None
            waits.append(caught.value.retry_after)
            mock_clock.jump(caught.value.retry_after + 0.01)
        await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
    assert waits[0] >= 54  # at least about a minute (jitter 10%)
    assert waits[1] > waits[0] * 1.5 and waits[2] > waits[1] * 1.5
    assert fake.count() == 4
