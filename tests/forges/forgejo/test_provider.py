"""The Forgejo provider end to end against the fake: models, discovery, claims, release."""

from __future__ import annotations

import pytest
import trio

from ephemerd._errors import ForgeAuthError, ForgeError
from ephemerd.capabilities import Claim, JobAction, JobEvent, Poll, PollConfig, Provider
from ephemerd.forges._actions import TOKEN_PATH, ClaimModel, Discovery

from .helpers import API_TOKEN, forge_for, provider_for
from .standin import credentials_of, run_one_job

LABELS = ("linux",)


def assert_no_secret(claim: Claim, *secrets: str) -> None:
    """No registration or API token anywhere the sandbox could see."""
    visible = [*claim.entrypoint, *claim.env.values(), *(f.content.decode() for f in claim.files)]
    for secret in secrets:
        assert all(secret not in item for item in visible)
    assert all(secret not in repr(claim) for secret in secrets)


async def _claim_first(provider: Provider, events: list[JobEvent], name: str = "eph-1") -> Claim:
    return await provider.claim_job(events[0], runner_name=name, labels=LABELS)


async def test_forgejo_15_hands_the_runner_exactly_its_job() -> None:
    async with forge_for("forgejo-15") as (forge, token), provider_for(forge, token) as provider:
        assert isinstance(provider, Provider) and isinstance(provider, Poll)
        other = forge.world.add_job("acme/app", ["linux"], name="first")
        job = forge.world.add_job("acme/app", ["linux"], name="second")
        events = await provider.poll_once(PollConfig(labels=LABELS))
        assert provider.model is ClaimModel.HANDLE and provider.discovery is Discovery.REST_LIST
        assert [e.job_id for e in events] == [str(other.id), str(job.id)]
        assert events[1].labels == ("linux",) and events[1].repo == "acme/app"
        claim = await provider.claim_job(events[1], runner_name="eph-1", labels=LABELS)
        argv = list(claim.entrypoint)
        assert argv[:2] == ["forgejo-runner", "one-job"]
        assert argv[argv.index("--handle") + 1] == job.handle
        assert argv[argv.index("--token-url") + 1] == f"file://{TOKEN_PATH}"
        assert "linux:host" in argv and claim.image == provider.image
        assert_no_secret(claim, token, API_TOKEN)
        assert forge.count("/FetchTask") == 0  # ephemerd never fetches
        outcome = await run_one_job(claim)
        assert outcome is not None and forge.world.tasks[outcome.task_id].job_id == job.id
        assert other.status == "waiting"  # the job listed first was not taken
        await provider.release_job(claim)
        assert not forge.world.live_runners()


async def test_forgejo_15_release_of_an_unused_runner_deletes_it() -> None:
    async with forge_for("forgejo-15") as (forge, token), provider_for(forge, token) as provider:
        forge.world.add_job("acme/app", ["linux"])
        claim = await _claim_first(provider, await provider.poll_once(PollConfig(labels=LABELS)))
        assert len(forge.world.live_runners()) == 1
        await provider.release_job(claim)
        await provider.release_job(claim)  # already gone: fine
        assert not forge.world.live_runners()


async def test_release_by_name_after_a_crash() -> None:
    async with forge_for("forgejo-15") as (forge, token), provider_for(forge, token) as provider:
        forge.world.add_job("acme/app", ["linux"])
        claim = await _claim_first(provider, await provider.poll_once(PollConfig(labels=LABELS)))
        # the journal may only know the runner's name
        await provider.release_job(
            Claim(runner_id="", runner_name=claim.runner_name, repo="acme/app")
        )
        assert not forge.world.live_runners()


@pytest.mark.parametrize("codec", ["application/json", "application/proto"])
async def test_forgejo_14_registers_an_ephemeral_runner(codec: str) -> None:
    async with (
        forge_for("forgejo-14") as (forge, token),
        provider_for(forge, token, codec=codec) as provider,
    ):
        job = forge.world.add_job("acme/app", ["linux"])
        forge.world.add_job("acme/app", ["gpu"])
        events = await provider.poll_once(PollConfig(labels=LABELS))
        assert provider.model is ClaimModel.REGISTERED and provider.discovery is Discovery.REST_LIST
        assert [e.job_id for e in events] == [str(job.id)]
        claim = await _claim_first(provider, events)
        assert claim.entrypoint[:2] == ("forgejo-runner", "one-job")
        assert_no_secret(claim, token, API_TOKEN)
        runner = forge.world.live_runners()[0]
        assert runner.ephemeral and runner.labels == ["linux:host"]
        creds, url, handle = credentials_of(claim)
        assert (creds.uuid, url, handle) == (runner.uuid, forge.url, None)
        outcome = await run_one_job(claim, codec=codec)
        assert outcome is not None and job.status == "success"
        await provider.release_job(claim)  # the server removed it already: 404 is done
        assert not forge.world.live_runners()


async def test_without_api_token_a_warm_pool() -> None:
    async with (
        forge_for("forgejo-15") as (forge, token),
        provider_for(forge, token, api_token="", pool_size=2) as provider,
    ):
        events = await provider.poll_once(PollConfig(labels=LABELS))
        assert provider.model is ClaimModel.REGISTERED and provider.discovery is Discovery.WARM_POOL
        assert [e.job_id for e in events] == ["pool-1", "pool-2"]


async def test_stale_registration_token_is_renewed() -> None:
    async with forge_for("forgejo-14") as (forge, _), provider_for(forge, "stale") as provider:
        forge.world.add_job("acme/app", ["linux"])
        claim = await _claim_first(provider, await provider.poll_once(PollConfig(labels=LABELS)))
        fetched = [r for r in forge.requests if "registration-token" in r.path and r.status == 200]
        assert claim.runner_id and len(fetched) == 1  # POST refused (405), then GET


async def test_refused_registration_token_without_api_token() -> None:
    async with (
        forge_for("forgejo-14") as (forge, _),
        provider_for(forge, "stale", api_token="") as provider,
    ):
        events = await provider.poll_once(PollConfig(labels=LABELS))
        with pytest.raises(ForgeAuthError):
            await _claim_first(provider, events)


async def test_poll_backs_off_while_the_forge_is_down(io_clock: trio.testing.MockClock) -> None:
    async with forge_for("forgejo-15") as (forge, token), provider_for(forge, token) as provider:
        job = forge.world.add_job("acme/app", ["linux"])
        forge.unavailable(path="/api/v1/", times=4)
        send, receive = trio.open_memory_channel[JobEvent](10)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(provider.poll, PollConfig(labels=LABELS), send)
            start = trio.current_time()
            event = await receive.receive()
            waited = trio.current_time() - start
            nursery.cancel_scope.cancel()
        assert event.job_id == str(job.id)
        assert waited >= 2 + 4 + 8  # 2, 4, 8, 16 s (with jitter) before the fifth try
        assert forge.count("/api/v1/version") == 5


async def test_poll_gives_up_on_bad_credentials(io_clock: trio.testing.MockClock) -> None:
    async with (
        forge_for("forgejo-15") as (forge, token),
        provider_for(forge, token, api_token="nope") as provider,
    ):
        send, _ = trio.open_memory_channel[JobEvent](10)
        with pytest.raises(ForgeAuthError):
            await provider.poll(PollConfig(), send)


async def test_job_without_handle_is_not_claimable() -> None:
    async with forge_for("forgejo-15") as (forge, token), provider_for(forge, token) as provider:
        await provider.resolve_model()
        event = JobEvent(instance="fj", action=JobAction.QUEUED, job_id="9")
        with pytest.raises(ForgeError, match="no handle") as caught:
            await provider.claim_job(event, runner_name="x", labels=LABELS)
        assert not caught.value.retryable
        assert not forge.world.live_runners()


async def test_org_scope_finds_the_repo_and_releases_at_the_org() -> None:
    async with (
        forge_for("forgejo-15", scope="/orgs/acme") as (forge, token),
        provider_for(forge, token, repos=()) as provider,
    ):
        job = forge.world.add_job("acme/site", ["linux"])
        forge.world.add_job("other/app", ["linux"])  # another owner: not ours
        events = await provider.poll_once(PollConfig(labels=LABELS))
        assert [(e.job_id, e.repo) for e in events] == [(str(job.id), "acme/site")]
        claim = await _claim_first(provider, events)
        assert forge.world.live_runners()[0].scope == "/orgs/acme"
        outcome = await run_one_job(claim)
        assert outcome is not None and job.status == "success"
        await provider.release_job(claim)
        assert not forge.world.live_runners()
