from __future__ import annotations

from pathlib import Path

import trio

from ephemerd._errors import ForgeAuthError, ForgeUnavailable, SandboxError
from ephemerd.capabilities import Claim, SandboxSpec
from ephemerd.scheduler import Journal
from ephemerd.scheduler._teardown import release_runner, teardown
from ephemerd.testing import MemoryProvider, MemorySandbox


async def test_teardown_runs_under_cancellation(tmp_path: Path, autojump_clock):
    backend = MemorySandbox(log_dir=tmp_path)
    provider = MemoryProvider("gh")
    claim = Claim(runner_id="1", runner_name="r1")
    with Journal(":memory:") as journal:
        journal.record_runner("gh", "1", "r1")
        journal.record_sandbox("r1", "gh", "1")
        handle = await backend.create(SandboxSpec(name="r1", image="i", argv=("sleep", "9")))
        await handle.start()
        with trio.CancelScope() as scope:
            scope.cancel()
            ok = await teardown(
                provider=provider,
                backend=backend,
                journal=journal,
                claim=claim,
                sandbox_name="r1",
                handle=handle,
                budget=30,
            )
        assert ok
        assert backend.sandboxes == {} and provider.releases == [claim]
        assert journal.runners() == [] and journal.sandboxes() == []


async def test_teardown_failures_stay_in_journal(tmp_path: Path, autojump_clock):
    class Stuck(MemorySandbox):
        async def destroy(self, name: str) -> None:
            raise SandboxError("containerd said no")

    backend = Stuck(log_dir=tmp_path)
    provider = MemoryProvider("gh")
    provider.release_gate = trio.Event()
    with Journal(":memory:") as journal:
        journal.record_runner("gh", "1", "r1")
        journal.record_sandbox("r1", "gh", "1")
        ok = await teardown(
            provider=provider,
            backend=backend,
            journal=journal,
            claim=Claim(runner_id="1", runner_name="r1"),
            sandbox_name="r1",
            handle=None,
            budget=10,
        )
        assert not ok
        assert trio.current_time() == 10
        assert len(journal.runners()) == 1 and len(journal.sandboxes()) == 1


async def test_a_release_that_may_pass_is_tried_again(tmp_path: Path, autojump_clock):
    provider = MemoryProvider("gh")
    provider.fail_next_releases(2, ForgeUnavailable("connection reset by peer"))
    claim = Claim(runner_id="1", runner_name="r1")
    with Journal(":memory:") as journal:
        journal.record_runner("gh", "1", "r1")
        assert await release_runner(provider, journal, claim)
        assert provider.releases == [claim]
        assert journal.runners() == []
        assert trio.current_time() >= 0.5 * 0.8 + 1.0 * 0.8  # backed off twice


async def test_a_release_refused_for_good_is_left_for_the_sweep(tmp_path: Path, autojump_clock):
    provider = MemoryProvider("gh")
    provider.fail_next_releases(1, ForgeAuthError("bad credentials"))
    with Journal(":memory:") as journal:
        journal.record_runner("gh", "1", "r1")
        assert not await release_runner(provider, journal, Claim(runner_id="1", runner_name="r1"))
        assert provider.releases == []
        assert len(journal.runners()) == 1
        assert trio.current_time() == 0  # not retried

        provider.fail_next_releases(5, ForgeUnavailable("GitHub is down"))
        assert not await release_runner(provider, journal, Claim(runner_id="1", runner_name="r1"))
        assert len(journal.runners()) == 1  # four tries after the first, then the sweep's
