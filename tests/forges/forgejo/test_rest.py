"""The /api/v1 client against the fake server."""

from __future__ import annotations

import httpx
import pytest

from ephemerd._errors import ForgeAuthError, ForgeNotFound, ForgeProtocolError, ForgeUnavailable
from ephemerd.forges._actions import RestClient
from tests.fakes.forgejo import Failure, open_fake_forge

from .helpers import API_TOKEN


@pytest.mark.parametrize(
    ("flavour", "method"), [("gitea-1.20", "GET"), ("gitea-1.26", "POST"), ("forgejo-15", "GET")]
)
async def test_registration_token_post_then_get(flavour: str, method: str) -> None:
    async with open_fake_forge(flavour) as forge, httpx.AsyncClient(base_url=forge.url) as http:
        forge.world.api_tokens.add(API_TOKEN)
        rest = RestClient(http, forge="f", token=API_TOKEN)
        token = await rest.registration_token("/repos/acme/app")
        assert forge.world.registration_tokens[token] == "/repos/acme/app"
        assert forge.requests[-1].method == method


async def test_version_runners_and_jobs() -> None:
    async with (
        open_fake_forge("forgejo-15") as forge,
        httpx.AsyncClient(base_url=forge.url) as http,
    ):
        forge.world.api_tokens.add(API_TOKEN)
        rest = RestClient(http, forge="f", token=API_TOKEN)
        assert (await rest.version()).startswith("15.")
        created = await rest.create_runner("/repos/acme/app", name="r")
        assert "token" not in repr(created) or "<redacted>" in repr(created)
        info = await rest.get_runner("/repos/acme/app", created.id)
        assert info is not None and info.uuid == created.uuid
        assert [r.name for r in await rest.list_runners("/repos/acme/app")] == ["r"]
        assert await rest.delete_runner("/repos/acme/app", created.id)
        assert not await rest.delete_runner("/repos/acme/app", created.id)  # 404: already gone
        assert await rest.get_runner("/repos/acme/app", created.id) is None
        assert await rest.forgejo_jobs("/repos/acme/app") == []  # Forgejo answers null
        job = forge.world.add_job("acme/app", ["linux"])
        forge.world.add_job("acme/app", ["gpu"])
        listed = await rest.forgejo_jobs("/orgs/acme", ["linux"])
        assert [(j.id, j.handle) for j in listed] == [(job.id, job.handle)]


async def test_gitea_jobs_and_runner_list_shape() -> None:
    async with (
        open_fake_forge("gitea-1.26") as forge,
        httpx.AsyncClient(base_url=forge.url) as http,
    ):
        forge.world.api_tokens.add(API_TOKEN)
        rest = RestClient(http, forge="f", token=API_TOKEN)
        job = forge.world.add_job("acme/app", ["linux"])
        assert [j.id for j in await rest.gitea_jobs("/repos/acme/app")] == [job.id]
        forge.world.create_runner("/repos/acme/app", "x", [], ephemeral=True)
        assert [r.name for r in await rest.list_runners("/repos/acme/app")] == ["x"]


async def test_errors() -> None:
    async with (
        open_fake_forge("gitea-1.20") as forge,
        httpx.AsyncClient(base_url=forge.url) as http,
    ):
        rest = RestClient(http, forge="f", token="wrong")
        with pytest.raises(ForgeAuthError, match="token is required"):
            await rest.list_runners("/repos/acme/app")
        forge.world.api_tokens.add("wrong")
        with pytest.raises(ForgeNotFound):
            await rest.gitea_jobs("/repos/acme/app")  # no listing on old Gitea
        forge.inject(Failure(502, b"<html>bad gateway</html>", "/api/v1/", 1, "text/html"))
        with pytest.raises(ForgeUnavailable, match="HTTP 502"):
            await rest.version()
        forge.inject(Failure(200, b'{"version": ', "/version"))
        with pytest.raises(ForgeProtocolError):
            await rest.version()
        assert "wrong" not in repr(rest)
