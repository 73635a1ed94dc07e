"""GitHub App auth: RS256 JWT, installation tokens, serialised refresh before expiry."""

from __future__ import annotations

import time

import jwt
import pytest
import trio

from ephemerd._errors import ConfigError, ForgeAuthError
from ephemerd.forges.github import GitHubApp
from ephemerd.forges.github._auth import AppAuth
from ephemerd.forges.github._payloads import RunsPage
from tests.fakes.github import FakeGitHub

from .conftest import options, provider_for, rsa_key


def app_options(fake: FakeGitHub, **overrides: object) -> dict[str, object]:
    private, public = rsa_key()
    fake.world.apps["123"] = public
    fake.world.installations.add("456")
    app = GitHubApp(app_id="123", installation_id="456", private_key=private)
    return {"token": "", "app": app, **overrides}


async def test_app_jwt_claims_are_what_github_accepts(fake: FakeGitHub) -> None:
    settings = app_options(fake)
    async with provider_for(fake, **settings) as provider:
        auth = provider.client._credentials  # pyright: ignore[reportPrivateUsage]
        assert isinstance(auth, AppAuth)
        token = auth.app_jwt()
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    claims = jwt.decode(token, rsa_key()[1], algorithms=["RS256"])
    assert claims["iss"] == "123"
    now = time.time()
    assert now - 120 < claims["iat"] < now
    assert claims["exp"] - now <= 600
    assert "BEGIN" not in repr(provider) and "BEGIN" not in repr(settings["app"])


async def test_installation_token_is_minted_once_and_used(fake: FakeGitHub) -> None:
    fake.world.add_repo("acme/app")
    async with provider_for(fake, **app_options(fake)) as provider:
        for _ in range(3):
            await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
    assert fake.count("POST", "/access_tokens") == 1
    assert fake.count("GET", "/actions/runs") == 3
    assert all(r.status in (200, 201, 304) for r in fake.requests)


async def test_concurrent_callers_share_one_token_request(fake: FakeGitHub) -> None:
    fake.world.add_repo("acme/app")
    async with provider_for(fake, **app_options(fake)) as provider, trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(provider.client.get, "/repos/acme/app/actions/runs", RunsPage)
    assert fake.count("POST", "/access_tokens") == 1
    assert fake.count("GET", "/actions/runs") == 20


async def test_token_is_refreshed_before_it_expires(fake: FakeGitHub) -> None:
    fake.world.add_repo("acme/app")
    fake.world.token_lifetime = 250  # less than the 5 min margin: stale as soon as minted
    async with provider_for(fake, **app_options(fake)) as provider:
        auth = provider.client._credentials  # pyright: ignore[reportPrivateUsage]
        assert isinstance(auth, AppAuth)
        await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        assert auth.minted == 2
        fake.world.token_lifetime = 3600
        await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        assert auth.minted == 3
    assert fake.count("POST", "/access_tokens") == 3


async def test_revoked_token_is_replaced_after_a_401(fake: FakeGitHub) -> None:
    fake.world.add_repo("acme/app")
    async with provider_for(fake, **app_options(fake)) as provider:
        await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
        fake.world.installation_tokens.clear()  # GitHub revoked it
        await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
    assert fake.count("POST", "/access_tokens") == 2
    assert [r.status for r in fake.requests if "runs" in r.path] == [200, 401, 304]


async def test_unknown_installation_or_app_is_an_auth_error(fake: FakeGitHub) -> None:
    fake.world.add_repo("acme/app")
    settings = app_options(fake)
    fake.world.apps.clear()
    async with provider_for(fake, **settings) as provider:
        with pytest.raises(ForgeAuthError, match="Integration not found"):
            await provider.client.get("/repos/acme/app/actions/runs", RunsPage)
    assert fake.count("GET") == 0


def test_bad_private_key_is_a_config_error() -> None:
    import httpx

    from ephemerd.forges.github._ratelimit import RateLimitGate

    bad = GitHubApp(app_id="1", installation_id="2", private_key="not a key")
    with pytest.raises(ConfigError, match="private_key"):
        AppAuth(bad, httpx.AsyncClient(), RateLimitGate())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"owner": ""}, "owner is required"),
        ({"token": ""}, "exactly one of token or app"),
        ({"poll_interval": 0.0}, "poll_interval"),
        ({"repos": ("acme/app",)}, "names without owner"),
        ({"api_url": "ftp://x"}, "api_url"),
    ],
)
async def test_bad_options_are_one_line_config_errors(
    fake: FakeGitHub, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        options(fake, **overrides).validate()
    assert "\n" not in str(caught.value)
