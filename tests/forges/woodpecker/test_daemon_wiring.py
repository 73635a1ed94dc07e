"""Config → daemon → provider → scheduler for Woodpecker, with the real ``serve``.

The daemon runs in-process from a config file naming a ``[woodpecker]`` section that
points at the fake server; only the sandbox is the memory double (``backend = "memory"``),
whose ``exec`` exits with the code each step's entrypoint scripts.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from ephemerd.capabilities import JobKey, JobState, ProviderState
from ephemerd.config import load_config
from ephemerd.daemon import serve
from ephemerd.scheduler import Scheduler
from tests.fakes.woodpecker import FakeWoodpecker, open_fake_woodpecker

from ._pki import make_pki, server_context
from .conftest import SECRET, payload, step


def _write_config(config_dir: Path, fake: FakeWoodpecker, extra: str) -> Path:
    path = config_dir / "config.toml"
    path.write_text(
        f"""
[sandbox]
backend = "memory"

[runner]
max_concurrent = 2
shutdown_timeout = "10s"

[woodpecker]
name = "wp"
server_url = "{fake.address}"
agent_secret = "{SECRET}"
hostname = "ci-host"
labels = {{ pool = "ephemerd" }}
{extra}
"""
    )
    return path


@asynccontextmanager
async def _daemon(
    tmp_path: Path, fake: FakeWoodpecker, extra: str = ""
) -> AsyncGenerator[Scheduler]:
    """``serve`` running on a config file; drained (and awaited) at the end of the block."""
    data_dir = tmp_path / "d"  # short: the control socket path has a length limit
    config = load_config(_write_config(tmp_path, fake, extra), data_dir=data_dir, env={})
    async with trio.open_nursery() as nursery:
        scheduler: Scheduler = await nursery.start(serve, config)
        yield scheduler
        with trio.fail_after(10):
            await scheduler.drain()  # serve returns once drained


async def test_a_configured_woodpecker_instance_runs_workflows_through_the_daemon(
    tmp_path: Path, fake: FakeWoodpecker
) -> None:
    state = fake.state
    with trio.fail_after(10):
        async with _daemon(tmp_path, fake) as scheduler:
            state.enqueue(
                "81",
                payload(
                    step("build", entrypoint=["exit", "0"]), step("test", entrypoint=["exit", "0"])
                ),
                labels={"pool": "ephemerd"},
            )
            state.enqueue(
                "82",
                payload(
                    step("lint", entrypoint=["exit", "0"]), step("unit", entrypoint=["exit", "3"])
                ),
            )
            ok = await state.wait_done("81")
            failed = await state.wait_done("82")
            await scheduler.wait_job_finished(JobKey("wp", "81"))
            await scheduler.wait_job_finished(JobKey("wp", "82"))
            assert scheduler.job(JobKey("wp", "81")).state is JobState.SUCCEEDED
            assert scheduler.job(JobKey("wp", "82")).state is JobState.FAILED
            (view,) = scheduler.providers()
            assert (view.instance, view.kind, view.state) == ("wp", "woodpecker", ProviderState.OK)
    assert ok.error == "" and failed.error and not failed.canceled
    assert sorted(wid for wid, _ in state.inits) == ["81", "82"]
    assert sorted(wid for wid, _ in state.dones) == ["81", "82"]
    finals = {s.step_uuid: s.exit_code for _, s in state.updates if s.exited}
    assert finals == {"uuid-build": 0, "uuid-test": 0, "uuid-lint": 0, "uuid-unit": 3}
    # the agent registered with the configured identity, and its id is kept in the data dir
    (agent,) = state.agents.values()
    assert agent.info is not None
    assert (agent.info.capacity, agent.info.custom_labels) == (2, {"pool": "ephemerd"})
    assert f'"agent_id": {agent.id}' in (tmp_path / "d" / "woodpecker-wp.agent.json").read_text()
    assert state.queue == [] and state.requeued == []
    assert not (tmp_path / "d" / "ephemerd.pid").exists()  # serve returned after the drain


async def test_tls_and_a_private_ca_from_the_config_reach_the_provider(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "ca.pem").write_bytes(pki.ca_file.read_bytes())  # next to config.toml
    context = server_context(pki)
    with trio.fail_after(10):
        async with (
            open_fake_woodpecker(agent_secret=SECRET, ssl_context=context) as fake,
            _daemon(tmp_path, fake, 'tls = true\nca_file = "ca.pem"') as scheduler,
        ):
            fake.state.enqueue("83", payload(step("a", entrypoint=["exit", "0"])))
            done = await fake.state.wait_done("83")
            await scheduler.wait_job_finished(JobKey("wp", "83"))
            assert scheduler.job(JobKey("wp", "83")).state is JobState.SUCCEEDED
    assert done.error == ""
    assert [wid for wid, _ in fake.state.inits] == ["83"]
