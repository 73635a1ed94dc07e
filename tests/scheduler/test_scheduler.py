"""The public Scheduler: intake, dedup, labels, concurrency, cordon, drain, views."""

from __future__ import annotations

import contextlib

import pytest
import trio

from ephemerd._errors import Cordoned, JobNotFound, SchedulerError
from ephemerd.capabilities import JobAction, JobKey, JobState, ProviderState
from ephemerd.control import ControlTarget
from ephemerd.scheduler import HostLabels, Scheduler, SchedulerOptions
from ephemerd.testing import MemoryProvider

from .conftest import Env, settle, submit_all, wait_state


async def test_32_concurrent_identical_events_give_one_claim(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider])
    event = provider.queue_job("7", script=("sleep", "10"))
    async with env.running(scheduler):

        async def deliver() -> None:
            await trio.lowlevel.checkpoint()
            await scheduler.submit(event)

        async with trio.open_nursery() as nursery:
            for _ in range(32):
                nursery.start_soon(deliver)
        await scheduler.wait_job_finished(event.key)
    assert len(provider.claim_calls) == 1
    assert len(env.sandbox.created) == 1
    stats = scheduler.statistics()
    assert stats.events["queued"] >= 32  # the poll reports it too
    assert stats.events_ignored == stats.events["queued"] - 1
    assert stats.jobs_admitted == 1


async def test_same_job_id_on_two_instances_is_two_jobs(env: Env, autojump_clock):
    a, b = MemoryProvider("a"), MemoryProvider("b")
    scheduler = env.scheduler([a, b])
    async with env.running(scheduler):
        scheduler.submit_nowait(a.queue_job("1"))
        scheduler.submit_nowait(b.queue_job("1"))
        await scheduler.wait_job_finished(JobKey("a", "1"))
        await scheduler.wait_job_finished(JobKey("b", "1"))
    assert len(a.claims) == len(b.claims) == 1


async def test_dedup_window_ignores_recently_handled_jobs(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider], dedup_window=600.0)
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
        scheduler.submit_nowait(event)  # a stale poll re-reports the job
        await settle()
        assert len(provider.claim_calls) == 1
        await trio.sleep(601)
        scheduler.submit_nowait(event)
        await settle()
        assert len(provider.claim_calls) == 2


async def test_queued_event_for_running_job_is_ignored(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider], dedup_window=1.0)
    event = provider.queue_job("1", script=("sleep", "100"))
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await wait_state(scheduler, event.key, JobState.RUNNING)
        await trio.sleep(10)  # past the dedup window: only "tracked" protects it
        scheduler.submit_nowait(event)
        await settle()
        assert len(provider.claim_calls) == 1
        assert scheduler.job(event.key).state is JobState.RUNNING


@pytest.mark.parametrize(
    ("labels", "claimed"),
    [
        ((), True),
        (("self-hosted", "linux", "x64"), True),
        (("Self-Hosted", "LINUX", "amd64"), True),
        (("linux", "big"), True),
        (("self-hosted", "gpu"), False),
        (("arm64",), False),
        (("windows",), False),
        (("ubuntu-latest",), False),
    ],
)
async def test_label_match(env: Env, provider: MemoryProvider, labels, claimed, autojump_clock):
    scheduler = env.scheduler([provider])
    event = provider.queue_job("1", labels=labels)
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await settle()
        if claimed:
            await scheduler.wait_job_finished(event.key)
        else:
            with pytest.raises(JobNotFound):
                scheduler.job(event.key)
    assert len(provider.claim_calls) == int(claimed)
    assert len(env.sandbox.created) == int(claimed)


async def test_max_concurrent_parks_excess_and_claims_after_slot(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider], max_concurrent=2)
    events = [provider.queue_job(str(i), script=("sleep", "100")) for i in range(5)]
    async with env.running(scheduler):
        submit_all(scheduler, events)
        await settle()
        states = [scheduler.job(e.key).state for e in events]
        assert states.count(JobState.RUNNING) == 2
        assert states.count(JobState.PARKED) == 3
        assert len(provider.claim_calls) == 2  # no registration without a slot
        assert scheduler.status().parked_jobs == 3
        for event in events:
            await scheduler.wait_job_finished(event.key)
    assert env.sandbox.peak == 2
    assert len(provider.claims) == 5
    assert all(scheduler.job(e.key).state is JobState.SUCCEEDED for e in events)
    assert trio.current_time() == pytest.approx(300, abs=1)


async def test_poll_feeds_jobs(env: Env, provider: MemoryProvider, autojump_clock):
    scheduler = env.scheduler([provider])
    async with env.running(scheduler):
        event = provider.queue_job("1")
        await wait_state(scheduler, event.key, JobState.SUCCEEDED)
        view = scheduler.providers()[0]
        assert view.state is ProviderState.OK
        assert view.webhook


async def test_cordon_abandons_parked_and_refuses_new_jobs(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider], max_concurrent=1)
    running = provider.queue_job("1", script=("sleep", "100"))
    parked = provider.queue_job("2")
    async with env.running(scheduler):
        submit_all(scheduler, [running, parked])
        await settle()
        status = scheduler.cordon()
        assert status.cordoned
        await settle()
        assert scheduler.job(parked.key).state is JobState.CANCELLED
        assert scheduler.job(running.key).state is JobState.RUNNING
        fresh = provider.queue_job("3")
        scheduler.submit_nowait(fresh)
        await settle()
        with pytest.raises(JobNotFound):
            scheduler.job(fresh.key)
        assert len(provider.claim_calls) == 1
        await scheduler.wait_job_finished(running.key)
        assert scheduler.job(running.key).state is JobState.SUCCEEDED
        assert not scheduler.uncordon().cordoned
        submit_all(scheduler, [parked, fresh])  # the next delivery re-admits both
        await scheduler.wait_job_finished(parked.key)
        await scheduler.wait_job_finished(fresh.key)
        assert scheduler.job(parked.key).state is JobState.SUCCEEDED
    assert len(provider.claims) == 3


async def test_uncordon_readmits_on_next_poll(env: Env, provider: MemoryProvider, autojump_clock):
    scheduler = env.scheduler([provider], poll_interval=30.0)
    async with env.running(scheduler):
        scheduler.cordon()
        event = provider.queue_job("1")
        await trio.sleep(40)  # polled (refused) at least once
        assert provider.claim_calls == []
        scheduler.uncordon()
        await wait_state(scheduler, event.key, JobState.SUCCEEDED)
        assert trio.current_time() < 80


async def test_drain_lets_jobs_finish(env: Env, provider: MemoryProvider, autojump_clock):
    scheduler = env.scheduler([provider])
    event = provider.queue_job("1", script=("sleep", "50"))
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        scheduler.submit_nowait(event)
        await settle()
        await scheduler.drain(grace=100)
    assert scheduler.job(event.key).state is JobState.SUCCEEDED
    assert trio.current_time() == pytest.approx(50, abs=1)
    assert provider.stopped
    with pytest.raises(SchedulerError):
        scheduler.submit_nowait(event)


async def test_drain_timeout_cancels_and_tears_down(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider], max_concurrent=1)
    running = provider.queue_job("1", script=("sleep", "infinity"))
    parked = provider.queue_job("2")
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        submit_all(scheduler, [running, parked])
        await settle()
        await scheduler.drain(grace=60)
    assert trio.current_time() == pytest.approx(60, abs=1)
    assert scheduler.job(running.key).state is JobState.CANCELLED
    assert scheduler.job(parked.key).state is JobState.CANCELLED
    assert len(provider.claims) == 1
    assert provider.active_runners == set()
    assert env.sandbox.sandboxes == {}
    assert env.journal.runners() == [] and env.journal.sandboxes() == []
    with pytest.raises(Cordoned):
        scheduler.uncordon()


async def test_second_drain_stops_now(env: Env, provider: MemoryProvider, autojump_clock):
    scheduler = env.scheduler([provider])
    event = provider.queue_job("1", script=("sleep", "infinity"))
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        scheduler.submit_nowait(event)
        await settle()
        nursery.start_soon(scheduler.drain, 1000)
        await trio.sleep(5)
        await scheduler.drain()
        assert trio.current_time() == pytest.approx(5, abs=1)
    assert scheduler.job(event.key).state is JobState.CANCELLED
    assert env.sandbox.sandboxes == {} and provider.active_runners == set()


async def test_drain_without_jobs_returns_at_once(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider])
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await scheduler.drain()
    assert trio.current_time() < 1


async def test_control_target_views(env: Env, provider: MemoryProvider, autojump_clock):
    scheduler = env.scheduler([provider])
    target: ControlTarget = scheduler
    event = provider.queue_job("1", script=("sleep", "infinity"), repo="octo/app")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await wait_state(scheduler, event.key, JobState.RUNNING)
        view = target.job(event.key)
        assert view.runner_name.startswith("ephemerd-gh-app-")
        assert view.sandbox == view.runner_name
        assert view.image == "memory/runner:latest"
        path = target.job_log_path(event.key)
        assert path is not None and path.exists()
        status = target.status()
        assert status.active_jobs == 1 and status.max_concurrent == 4
        assert [j.key for j in target.jobs()] == [event.key]
        killed = await target.kill_job(event.key)
        assert killed.state is JobState.CANCELLED
        assert killed.detail == "killed by the operator"
        assert env.sandbox.sandboxes == {} and provider.active_runners == set()
        with pytest.raises(JobNotFound):
            target.job(JobKey("gh", "nope"))
        with pytest.raises(JobNotFound):
            await target.kill_job(JobKey("gh", "nope"))


async def test_watch_snapshot_then_coalesced_changes(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider])
    first = provider.queue_job("1", script=("sleep", "infinity"))
    async with env.running(scheduler):
        scheduler.submit_nowait(first)
        await wait_state(scheduler, first.key, JobState.RUNNING)
        async with scheduler.watch() as changes:
            snapshot = await changes.receive()
            assert [(c.job.key, c.job.state) for c in snapshot] == [(first.key, JobState.RUNNING)]
            # A slow reader: many changes happen before it reads again.
            second = provider.queue_job("2", script=("exit", "0"))
            scheduler.submit_nowait(second)
            await scheduler.wait_job_finished(second.key)
            # At most one batch was already on its way when the reader fell behind; every
            # change after it is coalesced into the next, which ends at the final state.
            batches = [await changes.receive()]
            if batches[0][-1].job.state is not JobState.SUCCEEDED:
                batches.append(await changes.receive())
            assert [(c.job.key, c.job.state) for c in batches[-1]] == [
                (second.key, JobState.SUCCEEDED)
            ]
            assert all(len(batch) == 1 for batch in batches)


async def test_finished_jobs_expire(env: Env, provider: MemoryProvider, autojump_clock):
    scheduler = env.scheduler([provider], finished_retention=100.0)
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await scheduler.wait_job_finished(event.key)
        async with scheduler.watch() as changes:
            await changes.receive()
            batch = await changes.receive()
            assert batch[0].removed and batch[0].job.key == event.key
        with pytest.raises(JobNotFound):
            scheduler.job(event.key)


async def test_statistics(env: Env, provider: MemoryProvider, autojump_clock):
    scheduler = env.scheduler([provider])
    ok = provider.queue_job("1", script=("sleep", "20"))
    bad = provider.queue_job("2", script=("fail",))
    async with env.running(scheduler):
        submit_all(scheduler, [ok, bad])
        await scheduler.wait_job_finished(ok.key)
        await scheduler.wait_job_finished(bad.key)
        scheduler.submit_nowait(provider.complete_job("1"))
        stats = scheduler.statistics()
    assert stats.jobs_finished == {"succeeded": 1, "failed": 1, "cancelled": 0}
    assert stats.claims == 2
    assert stats.job_duration_count == 2
    assert stats.job_duration_sum == pytest.approx(20)
    assert stats.job_duration_buckets[0] == 1  # <= 10 s
    assert stats.job_duration_buckets[1] == 2  # <= 30 s
    assert stats.events["queued"] >= 2  # deliveries plus polls
    assert (stats.events["in_progress"], stats.events["completed"]) == (0, 1)
    assert scheduler.job(bad.key).detail == "exit code 1"


async def test_duplicate_provider_names_refused(env: Env):
    with pytest.raises(SchedulerError, match="two providers"):
        env.scheduler([MemoryProvider("x"), MemoryProvider("x")])


async def test_event_from_unknown_instance_is_ignored(
    env: Env, provider: MemoryProvider, autojump_clock
):
    scheduler = env.scheduler([provider])
    other = MemoryProvider("other")
    async with env.running(scheduler):
        scheduler.submit_nowait(other.queue_job("1"))
        scheduler.submit_nowait(other.event("1", JobAction.COMPLETED))
        await settle()
    assert scheduler.jobs() == []
    assert scheduler.statistics().events_ignored == 2


async def test_finished_jobs_are_capped(env: Env, provider: MemoryProvider, autojump_clock):
    scheduler = env.scheduler([provider], finished_keep=3, max_concurrent=10)
    events = [provider.queue_job(str(i)) for i in range(10)]
    async with env.running(scheduler):
        submit_all(scheduler, events)
        for event in events:
            # an instant job may finish, and be pruned, before we get to wait for it
            with contextlib.suppress(JobNotFound):
                await scheduler.wait_job_finished(event.key)
        await trio.sleep(31)  # housekeeping
        assert len(scheduler.jobs()) == 3


async def test_options_are_validated():
    from ephemerd._errors import ConfigError
    from ephemerd.scheduler import SchedulerOptions

    with pytest.raises(ConfigError, match="max_concurrent"):
        SchedulerOptions(max_concurrent=0)
    with pytest.raises(ConfigError, match="job_timeout"):
        SchedulerOptions(job_timeout=-1)


async def test_drain_drops_retrying_jobs_at_once(
    env: Env, provider: MemoryProvider, autojump_clock
):
    from ephemerd._errors import ForgeUnavailable

    provider.fail_next_claims(1, ForgeUnavailable("down"))
    scheduler = env.scheduler([provider])
    event = provider.queue_job("1")
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        scheduler.submit_nowait(event)
        await wait_state(scheduler, event.key, JobState.RETRYING)
        await scheduler.drain()
    assert trio.current_time() < 1
    assert scheduler.job(event.key).state is JobState.CANCELLED
    assert len(provider.claim_calls) == 1


async def test_two_daemons_never_run_a_job_twice(tmp_path, autojump_clock):
    from .conftest import Env as _Env

    forge = MemoryProvider("gh", exclusive=True)
    envs = [_Env(tmp_path / "a"), _Env(tmp_path / "b")]
    schedulers = [e.scheduler([forge], max_concurrent=3) for e in envs]
    events = [forge.queue_job(str(i), script=("sleep", "5")) for i in range(20)]
    try:
        async with trio.open_nursery() as nursery:
            for scheduler in schedulers:
                await nursery.start(scheduler.run)
            for event in events:  # both daemons see every delivery
                for scheduler in schedulers:
                    scheduler.submit_nowait(event)
            for event in events:
                for scheduler in schedulers:
                    await scheduler.wait_job_finished(event.key)
            nursery.cancel_scope.cancel()
    finally:
        for e in envs:
            e.journal.close()
    ran = [len(e.sandbox.created) for e in envs]
    assert sum(ran) == 20 and all(ran)  # each job ran exactly once, on one of the hosts
    assert sorted(c.env["EPHEMERD_JOB_ID"] for c in forge.claims) == sorted(
        e.job_id for e in events
    )
    assert forge.active_runners == set()


class RecordingObserver:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def job_finished(self, instance, result, *, duration):
        self.calls.append(("finished", instance, result, duration))

    def job_started(self, instance, *, startup):
        self.calls.append(("started", instance, startup))

    def event_seen(self, event, source):
        self.calls.append(("event", event.job_id, source))

    def claim(self, instance, outcome):
        self.calls.append(("claim", instance, outcome))

    def poll_error(self, instance):
        self.calls.append(("poll_error", instance))


async def test_observer_sees_countable_moments(env: Env, autojump_clock):
    from ephemerd._errors import ForgeConflict

    provider = MemoryProvider("gh")
    provider.fail_next_claims(1, ForgeConflict("taken"))
    observer = RecordingObserver()
    scheduler = Scheduler(
        providers=[provider],
        sandbox=env.sandbox,
        journal=env.journal,
        options=SchedulerOptions(labels=HostLabels(arch="x86_64")),
        observer=observer,
    )
    event = provider.queue_job("1", script=("sleep", "20"))
    async with env.running(scheduler):
        await scheduler.submit(event)
        await scheduler.wait_job_finished(event.key)
    assert ("event", "1", "webhook") in observer.calls
    assert ("event", "1", "poll") in observer.calls
    claims = [c for c in observer.calls if c[0] == "claim"]
    assert claims == [("claim", "gh", "conflict"), ("claim", "gh", "claimed")]
    assert ("started", "gh", 0.0) in observer.calls
    assert ("finished", "gh", "succeeded", 20.0) in observer.calls


async def test_cordon_drops_pending_retries(env: Env, provider: MemoryProvider, autojump_clock):
    from ephemerd._errors import ForgeUnavailable

    provider.fail_next_claims(1, ForgeUnavailable("down"))
    scheduler = env.scheduler([provider])
    event = provider.queue_job("1")
    async with env.running(scheduler):
        scheduler.submit_nowait(event)
        await wait_state(scheduler, event.key, JobState.RETRYING)
        scheduler.cordon()
        await scheduler.wait_job_finished(event.key)
        assert scheduler.job(event.key).detail == "abandoned: the daemon is cordoned"
        await trio.sleep(3600)
        assert len(provider.claim_calls) == 1  # no retry while cordoned
        scheduler.uncordon()
        scheduler.submit_nowait(event)
        await wait_state(scheduler, event.key, JobState.SUCCEEDED)
    assert len(provider.claim_calls) == 2
