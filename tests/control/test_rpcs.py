"""Every RPC over a real unix socket, against the fake target, through the real client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from ephemerd import __version__
from ephemerd._errors import ControlError, JobNotFound
from ephemerd.capabilities import JobKey, JobState, ProviderState
from ephemerd.control import WatchUpdate, open_control_client, parse_job_ref

from .fake_daemon import FakeTarget


async def test_status_carries_capacity_and_providers(sock: Path, target: FakeTarget) -> None:
    target.add("github", "1")
    target.add("github", "2", state=JobState.PARKED)
    async with open_control_client(sock) as client:
        status = await client.status()
    assert status.pid == os.getpid()
    assert status.version == __version__
    assert (status.active_jobs, status.parked_jobs, status.max_concurrent) == (1, 1, 4)
    assert not status.cordoned and not status.draining
    assert [p.instance for p in status.providers] == ["github", "forgejo-eu"]
    assert status.providers[1].state is ProviderState.BACKING_OFF
    assert status.providers[1].last_error == "503 from forge"


async def test_jobs_round_trip_every_field(sock: Path, target: FakeTarget) -> None:
    view = target.add("github", "7", repo="acme/api", runner_name="runner-really-running")
    target.add("forgejo-eu", "7")
    async with open_control_client(sock) as client:
        jobs = await client.jobs()
        assert [j.key for j in jobs] == [JobKey("forgejo-eu", "7"), JobKey("github", "7")]
        assert jobs[1] == view
        assert await client.job("github/7") == view


async def test_every_job_state_crosses_the_wire(sock: Path, target: FakeTarget) -> None:
    for n, state in enumerate(JobState):
        target.add("gitlab", str(n), state=state)
    async with open_control_client(sock) as client:
        got = {j.key.job_id: j.state for j in await client.jobs()}
    assert got == {str(n): state for n, state in enumerate(JobState)}


async def test_finished_job_keeps_exit_code(sock: Path, target: FakeTarget) -> None:
    view = target.add("github", "8")
    target.finish(view.key, JobState.FAILED)
    async with open_control_client(sock) as client:
        got = await client.job("8")
    assert got.state is JobState.FAILED
    assert got.exit_code == 1
    assert got.finished_at > 0


async def test_bare_id_resolves_when_unique(sock: Path, target: FakeTarget) -> None:
    target.add("forgejo-eu", "42")
    async with open_control_client(sock) as client:
        assert (await client.job("42")).key == JobKey("forgejo-eu", "42")


async def test_bare_id_matching_two_instances_is_refused(sock: Path, target: FakeTarget) -> None:
    target.add("github", "5")
    target.add("forgejo-eu", "5")
    async with open_control_client(sock) as client:
        with pytest.raises(ControlError, match=r"ambiguous \(forgejo-eu/5, github/5\)"):
            await client.kill_job("5")
    assert target.killed == []


async def test_unknown_job_is_job_not_found(sock: Path, target: FakeTarget) -> None:
    async with open_control_client(sock) as client:
        with pytest.raises(JobNotFound, match=r"^job github/9 not found$"):
            await client.job("github/9")
        with pytest.raises(JobNotFound, match=r"^job 9 not found$"):
            await client.kill_job("9")


def test_bad_job_refs_are_refused_before_any_call() -> None:
    for ref in ("", "github/", "/7", "  "):
        with pytest.raises(ControlError, match="invalid job reference"):
            parse_job_ref(ref)
    assert parse_job_ref("gitlab-main/123").instance == "gitlab-main"


async def test_kill_targets_the_keyed_job_only(sock: Path, target: FakeTarget) -> None:
    target.add("github", "3")
    target.add("forgejo-eu", "3")
    async with open_control_client(sock) as client:
        killed = await client.kill_job("forgejo-eu/3")
    assert killed.state is JobState.CANCELLED
    assert target.killed == [JobKey("forgejo-eu", "3")]
    assert target.table[JobKey("github", "3")].state is JobState.RUNNING


async def test_cordon_and_uncordon(sock: Path, target: FakeTarget) -> None:
    async with open_control_client(sock) as client:
        assert (await client.cordon()).cordoned
        assert target.cordoned
        assert (await client.status()).cordoned
        assert not (await client.uncordon()).cordoned
    assert not target.cordoned


async def test_a_crashing_target_gives_an_error_and_the_server_lives_on(
    sock: Path, target: FakeTarget
) -> None:
    def broken() -> list[object]:
        raise RuntimeError("boom")

    target.jobs = broken  # type: ignore[method-assign]
    async with open_control_client(sock) as client:
        with pytest.raises(ControlError):
            await client.jobs()
        assert (await client.status()).pid == os.getpid()


# -- logs ------------------------------------------------------------------------------


async def test_logs_stream_the_whole_file(sock: Path, target: FakeTarget) -> None:
    big = os.urandom(100_000)  # several chunks
    target.add("github", "1", log=big)
    async with open_control_client(sock) as client, client.job_logs("github/1") as chunks:
        data = b"".join([chunk async for chunk in chunks])
    assert data == big


async def test_logs_of_a_job_without_sandbox_is_not_found(sock: Path, target: FakeTarget) -> None:
    target.add("github", "1", state=JobState.PARKED)
    async with open_control_client(sock) as client:
        with pytest.raises(JobNotFound, match="has no log yet"):
            async with client.job_logs("1") as chunks:
                async for _ in chunks:
                    pass  # pragma: no cover


async def test_follow_streams_until_the_job_finishes(sock: Path, target: FakeTarget) -> None:
    view = target.add("github", "1", log=b"step 1\n")
    log = target.logs[view.key]
    received: list[bytes] = []
    with trio.fail_after(10):
        async with (
            open_control_client(sock) as client,
            client.job_logs("1", follow=True) as chunks,
        ):
            async for chunk in chunks:
                received.append(chunk)
                if chunk == b"step 1\n":
                    with log.open("ab") as f:
                        f.write(b"step 2\n")
                elif chunk == b"step 2\n":
                    with log.open("ab") as f:
                        f.write(b"done\n")  # written before the job ends: still sent
                    target.finish(view.key)
    assert b"".join(received) == b"step 1\nstep 2\ndone\n"


async def test_follow_waits_for_a_log_that_does_not_exist_yet(
    sock: Path, target: FakeTarget, tmp_path: Path
) -> None:
    view = target.add("github", "1", state=JobState.STARTING)
    received: list[bytes] = []

    async def reader(task_status: trio.TaskStatus[None]) -> None:
        async with (
            open_control_client(sock) as client,
            client.job_logs("1", follow=True) as chunks,
        ):
            task_status.started()
            async for chunk in chunks:
                received.append(chunk)
                target.finish(view.key)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(reader)
            path = tmp_path / "late.log"
            path.write_bytes(b"hello\n")
            target.logs[view.key] = path
    assert received == [b"hello\n"]


# -- watch -----------------------------------------------------------------------------


async def test_watch_sends_a_snapshot_then_changes(sock: Path, target: FakeTarget) -> None:
    target.add("github", "1")
    updates: list[WatchUpdate] = []
    with trio.fail_after(10):
        async with open_control_client(sock) as client, client.watch_jobs() as stream:
            async for update in stream:
                updates.append(update)
                if len(updates) == 1:
                    target.add("github", "2", state=JobState.PARKED)
                elif len(updates) == 2:
                    target.remove(JobKey("github", "1"))
                else:
                    break
    snapshot, added, removed = updates
    assert snapshot.snapshot and [c.job.key.job_id for c in snapshot.changes] == ["1"]
    assert not added.snapshot
    assert [(c.job.key.job_id, c.job.state, c.removed) for c in added.changes] == [
        ("2", JobState.PARKED, False)
    ]
    assert added.status.parked_jobs == 1
    assert [(c.job.key.job_id, c.removed) for c in removed.changes] == [("1", True)]
    assert removed.status.active_jobs == 0


async def test_watch_reports_a_cordon_without_any_job_change(
    sock: Path, target: FakeTarget
) -> None:
    with trio.fail_after(10):
        async with open_control_client(sock) as client, client.watch_jobs() as stream:
            async for update in stream:
                if update.snapshot:
                    assert not update.status.cordoned
                    target.cordon()
                else:
                    assert update.changes == ()
                    assert update.status.cordoned
                    break


async def test_watch_ends_when_the_daemon_closes_the_feed(sock: Path, target: FakeTarget) -> None:
    with trio.fail_after(10):
        async with open_control_client(sock) as client, client.watch_jobs() as stream:
            async for _ in stream:
                target.close_watchers()
    assert target.watchers == 0


async def test_client_leaving_mid_stream_leaks_no_watcher(sock: Path, target: FakeTarget) -> None:
    with trio.fail_after(10):
        for _ in range(3):
            async with open_control_client(sock) as client, client.watch_jobs() as stream:
                async for _ in stream:
                    assert target.watchers == 1
                    break
            await target.wait_watchers(0)
        assert target.watch_opened == 3


async def test_client_cancelled_mid_stream_leaks_no_watcher(sock: Path, target: FakeTarget) -> None:
    seen = trio.Event()

    async def watch() -> None:
        async with open_control_client(sock) as client, client.watch_jobs() as stream:
            async for _ in stream:
                seen.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await seen.wait()
            nursery.cancel_scope.cancel()
        await target.wait_watchers(0)
        # The daemon still serves others.
        async with open_control_client(sock) as client:
            await client.status()


async def test_many_watchers_do_not_block_the_daemon(sock: Path, target: FakeTarget) -> None:
    """Watchers that never read still let the daemon publish and answer."""
    with trio.fail_after(10):
        async with (
            open_control_client(sock) as idle,
            idle.watch_jobs() as a,
            idle.watch_jobs() as b,
            idle.watch_jobs() as c,
        ):
            for stream in (a, b, c):
                assert (await anext(stream)).snapshot  # then never read again
            await target.wait_watchers(3)
            for n in range(200):
                target.add("github", str(n), log=None)
            # (Another connection: the idle one's flow-control window is full.)
            async with open_control_client(sock) as client:
                assert len(await client.jobs()) == 200
        await target.wait_watchers(0)
