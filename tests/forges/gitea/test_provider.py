"""The Gitea provider against the fake: registered ephemeral runners, REST list or warm pool."""

from __future__ import annotations

import pytest

from ephemerd._proto.runner.v1 import Result
from ephemerd.capabilities import PollConfig
from ephemerd.forges._actions import CONFIG_PATH, RUNNER_FILE_PATH, ClaimModel, Discovery
from ephemerd.forges.gitea import RUNNER_ARGV
from tests.forges.forgejo.helpers import API_TOKEN, forge_for, provider_for
from tests.forges.forgejo.standin import run_one_job
from tests.forges.forgejo.test_provider import assert_no_secret

LABELS = ("linux",)


@pytest.mark.parametrize("codec", ["application/json", "application/proto"])
async def test_queued_jobs_listed_then_run_by_a_registered_runner(codec: str) -> None:
    async with (
        forge_for("gitea-1.26") as (forge, token),
        provider_for(forge, token, codec=codec) as provider,
    ):
        job = forge.world.add_job("acme/app", ["linux"])
        events = await provider.poll_once(PollConfig(labels=LABELS))
        assert provider.model is ClaimModel.REGISTERED and provider.discovery is Discovery.REST_LIST
        assert [(e.job_id, e.labels, e.repo) for e in events] == [
            (str(job.id), ("linux",), "acme/app")
        ]
        claim = await provider.claim_job(events[0], runner_name="eph-g", labels=LABELS)
        assert (
            claim.entrypoint
            == RUNNER_ARGV
            == ("act_runner", "daemon", "--once", "--config", CONFIG_PATH)
        )
        assert {f.path for f in claim.files} == {RUNNER_FILE_PATH, CONFIG_PATH}
        assert_no_secret(claim, token, API_TOKEN)
        outcome = await run_one_job(claim, codec=codec)
        assert outcome is not None and job.status == "success"
        assert await provider.poll_once(PollConfig(labels=LABELS)) == []
        await provider.release_job(claim)
        assert not forge.world.live_runners()


async def test_cancelled_job_is_seen_by_the_runner() -> None:
    async with forge_for("gitea-1.26") as (forge, token), provider_for(forge, token) as provider:
        job = forge.world.add_job("acme/app", ["linux"])
        events = await provider.poll_once(PollConfig(labels=LABELS))
        claim = await provider.claim_job(events[0], runner_name="eph-g", labels=LABELS)
        forge.world.cancel(job)  # cancelled while waiting: no runner gets it
        assert await run_one_job(claim) is None
        await provider.release_job(claim)
        assert not forge.world.live_runners()


async def test_old_gitea_gets_a_warm_pool_that_refills() -> None:
    async with (
        forge_for("gitea-1.20") as (forge, token),
        provider_for(forge, token, pool_size=2) as provider,
    ):
        first = await provider.poll_once(PollConfig(labels=LABELS))
        assert provider.discovery is Discovery.WARM_POOL  # no job listing on this server
        assert [e.job_id for e in first] == ["pool-1", "pool-2"] and not first[0].labels
        assert await provider.poll_once(PollConfig(labels=LABELS)) == []  # pool is full
        claim = await provider.claim_job(first[0], runner_name="warm-1", labels=LABELS)
        job = forge.world.add_job("acme/app", ["linux"])
        outcome = await run_one_job(claim, result=Result.FAILURE)
        assert outcome is not None and job.status == "failure"
        assert await provider.poll_once(PollConfig(labels=LABELS)) == []
        await provider.release_job(claim)
        refill = await provider.poll_once(PollConfig(labels=LABELS))
        assert [e.job_id for e in refill] == ["pool-3"]
        assert not forge.world.live_runners()


async def test_strict_old_server_accepts_everything_we_send() -> None:
    async with forge_for("gitea-1.20") as (forge, token), provider_for(forge, token) as provider:
        events = await provider.poll_once(PollConfig(labels=LABELS))
        claim = await provider.claim_job(events[0], runner_name="warm-1", labels=LABELS)
        assert all(r.status in (200, 204, 404, 405) for r in forge.requests), forge.requests
        await provider.release_job(claim)
