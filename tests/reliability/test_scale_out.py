"""Scale-out: two daemons (separate data dirs) against one forge; the forge's claim arbitrates.

The forge is the fake Woodpecker server: each ephemerd is an agent long-polling ``Next``,
and the server hands each workflow to exactly one agent, which is the claim that several
hosts rely on. The daemons are real ``ephemerd serve`` subprocesses; their sandboxes are
the memory double (100 real sandboxes would take minutes on a loaded test host, and
what is tested here is who runs what, not the sandbox). Midway, ``ephemerd drain`` stops
one of them: it finishes what it holds and exits 0, and the rest goes to the other.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import msgspec
import trio

from tests.fakes.woodpecker import FakeWoodpecker, open_fake_woodpecker

from .helpers import TimedDaemon, config_text, free_port, open_daemon_async

SECRET = "scale-out-agent-secret-0123"
JOBS = 100
_DONE = re.compile(r"job wp/(\S+) \([^)]*\): succeeded")


def _payload(n: int) -> bytes:
    step = {
        "name": f"step-{n}",
        "uuid": f"uuid-{n}",
        "type": "commands",
        "image": "registry.test/ci/alpine:3",
        "on_success": True,
        "entrypoint": ["sleep", "0.2", "exit", "0"],
        "environment": {"CI_REPO": "acme/app"},
    }
    return msgspec.json.encode({"pipeline": [{"steps": [step]}]})


def _write_config(data_dir: Path, fake: FakeWoodpecker, host: str) -> None:
    woodpecker = f"""
[woodpecker]
name = "wp"
server_url = "{fake.address}"
agent_secret = "{SECRET}"
hostname = "{host}"
labels = {{ pool = "scale" }}
"""
    (data_dir / "config.toml").write_text(
        config_text(
            port=free_port(), backend="memory", max_concurrent=4, memory=False, extra=woodpecker
        )
    )


def _ran(daemon: TimedDaemon) -> list[str]:
    return [m[1] for line in daemon.lines if (m := _DONE.search(line))]


async def _drain(data_dir: Path) -> None:
    result = await trio.run_process(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "drain"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()


async def test_two_daemons_share_a_hundred_jobs_each_run_once_and_drain_moves_work(
    tmp_path: Path,
) -> None:
    async with open_fake_woodpecker(agent_secret=SECRET, lease=20.0) as fake:
        state = fake.state
        dirs = [tmp_path / "a", tmp_path / "b"]
        for data_dir, host in zip(dirs, ("host-a", "host-b"), strict=True):
            data_dir.mkdir()
            _write_config(data_dir, fake, host)
        async with (
            open_daemon_async(dirs[0]) as first,
            open_daemon_async(dirs[1]) as second,
        ):
            with trio.fail_after(120):
                for n in range(JOBS):
                    state.enqueue(f"w{n}", _payload(n), labels={"pool": "scale"})
                while len(state.dones) < JOBS // 3:
                    await state._changed_wait()  # pyright: ignore[reportPrivateUsage]
                await _drain(dirs[0])
                drained_at = len(state.dones)
                await first.process.wait()
                ran_before_exit = _ran(first)
                while len(state.dones) < JOBS:
                    await state._changed_wait()  # pyright: ignore[reportPrivateUsage]
                # the daemon logs a job's end just after reporting it
                await second.wait_for_log("): succeeded", count=JOBS - len(ran_before_exit))
            by_first, by_second = _ran(first), _ran(second)

    ids = [f"w{n}" for n in range(JOBS)]
    # the forge saw each workflow finished exactly once, successfully
    assert Counter(wid for wid, _ in state.dones) == Counter(ids)
    assert all(not s.error and s.finished for _, s in state.dones)
    # Known: Woodpecker's Next is the claim, and the drained daemon's idle Next calls keep
    # running until it exits; what they take it lets go, and the server requeues it after
    # the lease. At most its free slots' worth, and the other daemon runs them.
    assert len(state.requeued) <= 4, state.requeued
    assert set(state.requeued) <= set(by_second), state.requeued
    # each daemon ran its own share; together every job, none twice
    missing = set(ids) - {*by_first, *by_second}
    twice = [wid for wid, n in Counter(by_first + by_second).items() if n > 1]
    assert (missing, twice) == (set(), []), (first.log(), second.log())
    assert not set(by_first) & set(by_second)
    assert by_first and by_second, (len(by_first), len(by_second))
    # the drained daemon only finished what it held (at most its slots) and exited cleanly
    assert first.process.returncode == 0, first.log()
    assert by_first == ran_before_exit
    assert len(by_first) <= drained_at + 4
    late = len(state.dones) - drained_at
    print(
        f"{JOBS} jobs: {len(by_first)} on the drained daemon, {len(by_second)} on the other;"
        f" {late} finished after the drain; {len(state.requeued)} requeued by the forge"
    )
    assert second.process.returncode == 0, second.log()
