"""Forgejo/Gitea providers under the real scheduler, with a sandbox backend whose
"container" is the stand-in runner driven only by what the sandbox spec carries.

Asserts, per server flavour: every queued job completes exactly once, no runner
registration remains, and no sandbox saw the registration token or the API token.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ephemerd.capabilities import Claim, ExitReason, SandboxExit, SandboxSpec, SandboxStats
from ephemerd.scheduler import HostLabels, Journal, Scheduler, SchedulerOptions

from .helpers import API_TOKEN, forge_for, provider_for
from .standin import run_one_job


class StandInHandle:
    def __init__(self, spec: SandboxSpec, backend: StandInBackend) -> None:
        self.spec = spec
        self._backend = backend
        self._done = trio.Event()
        self._exit = SandboxExit(reason=ExitReason.LOST)
        self._scope = trio.CancelScope()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def log_path(self) -> Path:
        return self._backend.tmp / f"{self.name}.log"

    async def start(self) -> None:
        self.log_path.write_text("")
        self._backend.nursery.start_soon(self._run)

    async def _run(self) -> None:
        claim = Claim(
            runner_id="", runner_name=self.name, entrypoint=self.spec.argv, files=self.spec.files
        )
        code = 137
        with self._scope:
            outcome = await run_one_job(claim)
            code = 0 if outcome is not None else 2  # forgejo-runner: 2 = no task
        self._exit = SandboxExit(reason=ExitReason.EXITED, exit_code=code)
        self._done.set()

    async def wait(self) -> SandboxExit:
        await self._done.wait()
        return self._exit

    async def kill(self, signal: int = 9) -> None:
        self._scope.cancel()

    async def exec(self, argv: object, **_: object) -> int:
        raise NotImplementedError

    async def stats(self) -> SandboxStats:
        return SandboxStats()

    async def destroy(self) -> None:
        self._scope.cancel()
        self._backend.live.pop(self.name, None)


class StandInBackend:
    def __init__(self, nursery: trio.Nursery, tmp: Path) -> None:
        self.nursery = nursery
        self.tmp = tmp
        self.live: dict[str, StandInHandle] = {}
        self.specs: list[SandboxSpec] = []

    async def create(self, spec: SandboxSpec) -> StandInHandle:
        self.specs.append(spec)
        handle = StandInHandle(spec, self)
        self.live[spec.name] = handle
        return handle

    async def list_own(self) -> list[str]:
        return list(self.live)

    async def destroy(self, name: str) -> None:
        handle = self.live.pop(name, None)
        if handle is not None:
            await handle.destroy()


@pytest.mark.parametrize("flavour", ["forgejo-15", "forgejo-14", "gitea-1.26", "gitea-1.20"])
async def test_every_job_runs_once_and_nothing_is_left(
    flavour: str, tmp_path: Path, io_clock: trio.testing.MockClock
) -> None:
    async with (
        forge_for(flavour) as (forge, token),
        provider_for(forge, token, pool_size=2) as provider,
    ):
        jobs = [
            forge.world.add_job("acme/app", ["self-hosted", "linux"], name=f"j{i}")
            for i in range(5)
        ]
        unfit = forge.world.add_job("acme/app", ["windows"], name="not-here")
        async with trio.open_nursery() as nursery:
            backend = StandInBackend(nursery, tmp_path)
            scheduler = Scheduler(
                providers=[provider],
                sandbox=backend,
                journal=Journal(tmp_path / "journal.sqlite"),
                options=SchedulerOptions(
                    labels=HostLabels(arch="x86_64"), poll_interval=5.0, max_concurrent=3
                ),
            )
            async with trio.open_nursery() as inner:
                await inner.start(scheduler.run)
                with trio.fail_after(600):
                    await forge.world.wait_until(lambda: all(j.status == "success" for j in jobs))
                # pool runners still waiting are idle: releasing them is the drain's job
                inner.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
        assert unfit.status == "waiting"
        tasks = [t for t in forge.world.tasks.values() if t.job_id != unfit.id]
        assert sorted(t.job_id for t in tasks) == sorted(j.id for j in jobs)  # exactly once
        assert not forge.world.live_runners(), forge.world.live_runners()
        assert forge.count("/FetchTask", "POST") + forge.count("/FetchSingleTask") >= len(jobs)
        for spec in backend.specs:
            seen = [*spec.argv, *spec.env.values(), *(f.content.decode() for f in spec.files)]
            assert all(token not in s and API_TOKEN not in s for s in seen)


async def test_start_up_sweeps_runners_a_crash_left(
    tmp_path: Path, io_clock: trio.testing.MockClock
) -> None:
    async with forge_for("forgejo-14") as (forge, token), provider_for(forge, token) as provider:
        scope = "/repos/acme/app"
        left = forge.world.create_runner(scope, "eph-crashed", ["linux:host"], ephemeral=True)
        journal = Journal(tmp_path / "journal.sqlite")
        journal.record_runner(provider.name, "7", left.name)  # died before hearing back
        async with trio.open_nursery() as nursery:
            scheduler = Scheduler(
                providers=[provider],
                sandbox=StandInBackend(nursery, tmp_path),
                journal=journal,
                options=SchedulerOptions(labels=HostLabels(arch="x86_64"), poll_interval=5.0),
            )
            await nursery.start(scheduler.run)
            nursery.cancel_scope.cancel()
        assert scheduler.last_sweep is not None
        assert not forge.world.live_runners()
