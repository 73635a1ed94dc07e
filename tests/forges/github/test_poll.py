"""Polling: nothing missed (in_progress runs, every page, every org repo), cheap when idle."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from ephemerd._errors import ForgeNotFound, ForgePermissionError, ForgeRateLimited
from ephemerd.capabilities import JobAction, JobEvent, PollConfig
from ephemerd.forges.github import GitHubProvider
from tests.fakes.github import FakeGitHub

from .conftest import provider_for

SH = ["self-hosted", "linux"]


async def poll_once(provider: GitHubProvider) -> list[JobEvent]:
    send, receive = trio.open_memory_channel[JobEvent](10_000)
    async with send:
        await provider._poller.poll_once(send)  # pyright: ignore[reportPrivateUsage]
    return [event async for event in receive]


async def test_queued_jobs_are_reported_with_their_fields(fake: FakeGitHub) -> None:
    run = fake.world.add_run("acme/app", [("build", SH)])
    async with provider_for(fake) as provider:
        (event,) = await poll_once(provider)
    job = run.jobs[0]
    assert event.instance == "gh"
    assert event.action is JobAction.QUEUED
    assert (event.job_id, event.run_id) == (str(job.id), str(run.id))
    assert (event.repo, event.job_name, event.labels) == ("acme/app", "build", tuple(SH))
    assert event.runner_name == ""


async def test_a_queued_job_inside_an_in_progress_run_is_found(fake: FakeGitHub) -> None:
    run = fake.world.add_run("acme/app", [("lint", SH), ("test", SH)])
    fake.world.runners.clear()
    run.jobs[0].status = "in_progress"  # lint started; test waits in the same run
    run.jobs[0].runner_name = "someone-else"
    assert run.status == "in_progress"
    async with provider_for(fake) as provider:
        events = await poll_once(provider)
    queued = [e for e in events if e.action is JobAction.QUEUED]
    assert [e.job_name for e in queued] == ["test"]
    assert fake.count("GET", "/actions/runs") >= 2
    assert {r.query.get("status") for r in fake.requests if r.path.endswith("/runs")} == {
        "queued",
        "in_progress",
    }


async def test_every_page_of_runs_and_jobs_is_followed(fake: FakeGitHub) -> None:
    for _ in range(130):
        fake.world.add_run("acme/app", [("build", SH)])
    big = fake.world.add_run("acme/app", [(f"shard {i}", SH) for i in range(250)])
    async with provider_for(fake) as provider:
        events = await poll_once(provider)
    assert len(events) == 130 + 250
    assert len({e.job_id for e in events}) == 380
    pages = [r.query.get("page") for r in fake.requests if r.path.endswith(f"/{big.id}/jobs")]
    assert pages == [None, "2", "3"]
    assert all(r.query.get("per_page") == "100" for r in fake.requests)
    # idle again: page 1 answers 304 and the cached Link still leads to pages 2 and 3
    before = len(fake.requests)
    async with provider_for(fake) as provider:
        await poll_once(provider)
        after_first = len(fake.requests)
        again = await poll_once(provider)
    assert len(again) == 380
    idle = fake.requests[after_first:]
    assert all(r.status == 304 for r in idle)
    assert after_first - before == len(idle)


async def test_org_scope_lists_every_repository_page(fake: FakeGitHub) -> None:
    for i in range(101):
        fake.world.add_repo(f"acme/r{i:03d}", org=True)
    fake.world.archived.add("acme/r000")
    fake.world.add_run("acme/r000", [("old", SH)])
    fake.world.add_run("acme/r100", [("last", SH)])
    fake.world.add_run("other/x", [("foreign", SH)])
    async with provider_for(fake, repos=()) as provider:
        events = await poll_once(provider)
    assert [(e.repo, e.job_name) for e in events] == [("acme/r100", "last")]
    assert fake.count("GET", "/orgs/acme/repos") == 2


async def test_an_idle_poll_is_all_304s_and_costs_no_quota(fake: FakeGitHub) -> None:
    fake.world.add_run("acme/app", [("build", SH)])
    async with provider_for(fake) as provider:
        first = await poll_once(provider)
        spent = fake.world.rate_remaining
        before = len(fake.requests)
        second = await poll_once(provider)
    assert first == second  # still queued: reported again, the scheduler deduplicates
    idle = fake.requests[before:]
    assert idle and all(r.status == 304 for r in idle)
    assert all("if-none-match" in r.headers for r in idle)
    assert fake.world.rate_remaining == spent


async def test_only_self_hosted_jobs_and_the_policy_pass(fake: FakeGitHub) -> None:
    fake.world.add_run("acme/app", [("hosted", ["ubuntu-latest"])])
    fake.world.add_run("acme/app", [("plain", ["self-hosted", "linux"])])
    fake.world.add_run("acme/app", [("gpu", ["self-hosted", "linux", "gpu"])])
    fake.world.add_run("acme/other", [("elsewhere", ["self-hosted", "gpu"])])
    async with provider_for(fake, repos=("app", "other")) as provider:
        assert {e.job_name for e in await poll_once(provider)} == {"plain", "gpu", "elsewhere"}
    async with provider_for(fake, repos=("app", "other"), required_labels=("GPU",)) as provider:
        assert {e.job_name for e in await poll_once(provider)} == {"gpu", "elsewhere"}
    async with provider_for(fake, repos=("app", "other"), allowed_repos=("acme/app",)) as provider:
        assert {e.job_name for e in await poll_once(provider)} == {"plain", "gpu"}


async def test_started_and_finished_jobs_are_reported_once_with_their_runner(
    fake: FakeGitHub,
) -> None:
    run = fake.world.add_run("acme/app", [("a", SH), ("b", SH)])
    async with provider_for(fake) as provider:
        await poll_once(provider)
        run.jobs[0].status = "in_progress"
        run.jobs[0].runner_name = "ephemerd-gh-1"
        events = await poll_once(provider)
        assert [(e.action, e.runner_name) for e in events if e.job_name == "a"] == [
            (JobAction.IN_PROGRESS, "ephemerd-gh-1")
        ]
        events = await poll_once(provider)
        assert [e.job_name for e in events] == ["b"]  # a: no change, not repeated
        run.jobs[0].status = "completed"
        run.jobs[0].conclusion = "success"
        events = await poll_once(provider)
        (done,) = [e for e in events if e.job_name == "a"]
        assert (done.action, done.conclusion, done.runner_name) == (
            JobAction.COMPLETED,
            "success",
            "ephemerd-gh-1",
        )


async def test_a_failing_repository_does_not_stop_the_others(fake: FakeGitHub) -> None:
    fake.world.add_run("acme/app", [("one", SH)])
    fake.world.add_run("acme/two", [("two", SH)])
    fake.server_error(path="/repos/acme/app/")
    async with provider_for(fake, repos=("app", "two")) as provider:
        assert [e.job_name for e in await poll_once(provider)] == ["two"]


async def test_secondary_limit_causes_no_request_storm(
    fake: FakeGitHub, mock_clock: MockClock
) -> None:
    fake.world.add_run("acme/app", [("build", SH)])
    fake.secondary_limit(retry_after=90)
    send, receive = trio.open_memory_channel[JobEvent](100)
    async with provider_for(fake) as provider, trio.open_nursery() as nursery:
        nursery.start_soon(provider.poll, PollConfig(interval=5), send)
        await fake.app.wait_requests(1)
        for _ in range(10):  # let the poll task run as much as it wants at frozen time
            await wait_all_tasks_blocked()
        assert len(fake.requests) == 1
        mock_clock.jump(89)
        await wait_all_tasks_blocked()
        assert len(fake.requests) == 1  # still waiting out retry-after
        mock_clock.jump(2)
        event = await receive.receive()
        assert event.job_name == "build"
        nursery.cancel_scope.cancel()
    assert fake.count() == 4  # limited + 2 run listings + 1 jobs listing


async def test_poll_waits_its_interval_between_cycles(
    fake: FakeGitHub, mock_clock: MockClock
) -> None:
    fake.world.add_run("acme/app", [("build", SH)])
    send, receive = trio.open_memory_channel[JobEvent](100)
    async with provider_for(fake, poll_interval=20.0) as provider, trio.open_nursery() as nursery:
        nursery.start_soon(provider.poll, PollConfig(interval=5, reconcile_only=False), send)
        await receive.receive()
        await wait_all_tasks_blocked()
        assert provider._poller.cycles == 1  # pyright: ignore[reportPrivateUsage]
        mock_clock.jump(19)
        await wait_all_tasks_blocked()
        assert provider._poller.cycles == 1  # pyright: ignore[reportPrivateUsage]
        mock_clock.jump(1)
        await receive.receive()
        nursery.cancel_scope.cancel()


async def test_reconcile_polls_at_the_reconcile_pace(
    fake: FakeGitHub, mock_clock: MockClock
) -> None:
    fake.world.add_run("acme/app", [("build", SH)])
    send, receive = trio.open_memory_channel[JobEvent](100)
    async with provider_for(fake, reconcile_interval=600.0) as provider, trio.open_nursery() as n:
        n.start_soon(provider.poll, PollConfig(interval=5, reconcile_only=True), send)
        await receive.receive()
        await wait_all_tasks_blocked()  # the poll task is asleep before time moves
        mock_clock.jump(599)
        await wait_all_tasks_blocked()
        assert receive.statistics().current_buffer_used == 0
        mock_clock.jump(1)
        assert (await receive.receive()).job_name == "build"
        n.cancel_scope.cancel()


async def test_a_user_account_in_org_scope_is_a_clear_error(fake: FakeGitHub) -> None:
    send, _ = trio.open_memory_channel[JobEvent](1)
    async with provider_for(fake, owner="someuser", repos=()) as provider:
        with pytest.raises(ForgeNotFound, match="not an organisation") as caught:
            await provider.poll(PollConfig(interval=5), send)
    assert "\n" not in str(caught.value)


async def test_spent_quota_closes_the_gate_before_a_403(fake: FakeGitHub) -> None:
    fake.world.add_run("acme/app", [("build", SH)])
    fake.world.rate_remaining = 2  # two requests left in this window
    async with provider_for(fake) as provider:
        with pytest.raises(ForgeRateLimited) as caught:
            await poll_once(provider)
    assert caught.value.reset_at == int(fake.world.rate_reset)
    assert [r.status for r in fake.requests] == [200, 200]  # no request earned a 403


async def test_permission_errors_end_the_poll_for_the_scheduler_to_report(
    fake: FakeGitHub,
) -> None:
    fake.world.add_repo("acme/r1", org=True)
    fake.forbid(path="/orgs/acme/repos")
    send, _ = trio.open_memory_channel[JobEvent](1)
    async with provider_for(fake, repos=()) as provider:
        with pytest.raises(ForgePermissionError):
            await provider.poll(PollConfig(interval=5), send)
    assert fake.count() == 1


async def test_a_github_outage_backs_the_poll_off(fake: FakeGitHub, mock_clock: MockClock) -> None:
    from tests.fakes.github import Failure

    fake.world.add_run("acme/app", [("build", SH)])
    fake.fail(Failure(502, b"bad gateway", path="/actions/runs", times=1_000_000))
    send, _receive = trio.open_memory_channel[JobEvent](100)
    async with provider_for(fake, poll_interval=5.0) as provider, trio.open_nursery() as nursery:
        nursery.start_soon(provider.poll, PollConfig(interval=5, reconcile_only=False), send)
        for _ in range(600):  # ten minutes of an outage, a second at a time
            await wait_all_tasks_blocked()
            mock_clock.jump(1)
        await wait_all_tasks_blocked()
        failing = fake.count(path="/actions/runs")
        nursery.cancel_scope.cancel()
    # polling every 5 s would be ~120 cycles; backing off 5, 10, 20... up to 300 s is ~7
    assert failing <= 10, f"{failing} requests to a failing GitHub in ten minutes"
