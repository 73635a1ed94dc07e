"""The agent over TLS: a private CA is trusted through ``ca_file``, any other is refused.

A throwaway CA and a server certificate for 127.0.0.1/localhost are made per test module;
the fake server speaks TLS with ALPN h2, as a Woodpecker server behind a TLS terminator does.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest
import trio

from ephemerd._errors import ConfigError, ForgeError, ForgeUnavailable
from ephemerd._retry import RetryPolicy
from ephemerd.capabilities import JobEvent, JobKey, JobState, PollConfig, ProviderState
from ephemerd.config import WoodpeckerConfig, load_config
from ephemerd.forges.woodpecker import (
    WoodpeckerOptions,
    open_woodpecker_provider,
    options_from_config,
)
from ephemerd.scheduler import HostLabels, Journal, NullObserver, Scheduler, SchedulerOptions
from ephemerd.testing import MemorySandbox
from tests.fakes.woodpecker import FakeWoodpecker, open_fake_woodpecker

from ._pki import Pki, make_pki, server_context
from .conftest import SECRET, Rig, options, payload, step


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def tls_fake(pki: Pki) -> AsyncGenerator[FakeWoodpecker]:
    context = server_context(pki)
    async with open_fake_woodpecker(agent_secret=SECRET, ssl_context=context) as server:
        yield server


class _PollErrors(NullObserver):
    """Records when each poll failure happened (Trio time)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.changed = trio.Event()

    def poll_error(self, instance: str) -> None:
        self.times.append(trio.current_time())
        self.changed.set()
        self.changed = trio.Event()


async def test_a_workflow_runs_over_tls_with_a_trusted_private_ca(
    tmp_path: Path, tls_fake: FakeWoodpecker, pki: Pki
) -> None:
    state = tls_fake.state
    rig = Rig(tmp_path, tls_fake)
    try:
        with trio.fail_after(10):
            async with rig.running(tls=True, ca_file=pki.ca_file) as (scheduler, provider):
                state.enqueue("91", payload(step("a", entrypoint=["exit", "0"])))
                done = await state.wait_done("91")
                await scheduler.wait_job_finished(JobKey("wp", "91"))
                assert scheduler.job(JobKey("wp", "91")).state is JobState.SUCCEEDED
                assert provider.agent.registered.is_set()
    finally:
        rig.journal.close()
    assert done.error == ""
    names = [name for name, _ in state.calls]
    assert {"Version", "RegisterAgent", "Next", "Init", "Update", "Done"} <= set(names)
    assert [wid for wid, _ in state.inits] == ["91"]


async def test_plain_grpc_is_not_spoken_to_a_tls_server(
    tmp_path: Path, tls_fake: FakeWoodpecker
) -> None:
    # tls off against a TLS port: the handshake garbage is an unreachable server, retried
    async with open_woodpecker_provider(options(tls_fake, tmp_path, rpc_timeout=2.0)) as provider:
        with pytest.raises(ForgeUnavailable):
            await provider.agent.register()
    assert tls_fake.state.calls == []


async def test_an_untrusted_certificate_is_refused_in_one_line_without_retrying(
    tmp_path: Path, tls_fake: FakeWoodpecker, pki: Pki
) -> None:
    opts = options(tls_fake, tmp_path, tls=True, ca_file=pki.other_ca_file)
    async with open_woodpecker_provider(opts) as provider:
        send, _receive = trio.open_memory_channel[JobEvent](1)
        with pytest.raises(ForgeError) as caught:
            await provider.poll(PollConfig(), send)
    error = caught.value
    assert not isinstance(error, ForgeUnavailable)  # not the "retry at once" kind
    message = str(error)
    assert "\n" not in message
    assert "TLS certificate is not trusted" in message and "ca_file" in message
    assert tls_fake.connections == 1  # one handshake, no hidden retries
    assert tls_fake.state.calls == [] and tls_fake.state.agents == {}


async def test_an_untrusted_server_is_retried_with_backoff_by_the_scheduler(
    tmp_path: Path, tls_fake: FakeWoodpecker, pki: Pki
) -> None:
    opts = options(tls_fake, tmp_path / "state", tls=True, ca_file=pki.other_ca_file)
    observer = _PollErrors()
    first = 0.3
    with Journal(tmp_path / "journal.sqlite") as journal:
        async with open_woodpecker_provider(opts) as provider:
            scheduler = Scheduler(
                providers=[provider],
                sandbox=MemorySandbox(log_dir=tmp_path / "logs"),
                journal=journal,
                options=SchedulerOptions(
                    max_concurrent=1,
                    labels=HostLabels(arch="x86_64"),
                    poll_restart=RetryPolicy.exponential(first=first, cap=5.0, jitter=0.0),
                ),
                observer=observer,
                rng=random.Random(7),
            )
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    await nursery.start(scheduler.run)
                    while len(observer.times) < 2:
                        await observer.changed.wait()
                    connections = tls_fake.connections
                    (view,) = scheduler.providers()
                    nursery.cancel_scope.cancel()
    assert observer.times[1] - observer.times[0] >= first  # backed off, not a storm
    assert connections == 2  # one attempt per poll restart
    assert view.state is ProviderState.BACKING_OFF
    assert "TLS certificate is not trusted" in view.last_error
    assert "\n" not in view.last_error


def _load(tmp_path: Path, body: str) -> WoodpeckerConfig:
    config_dir = tmp_path / "etc"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "config.toml").write_text(
        f'[woodpecker]\nserver_url = "127.0.0.1:9000"\nagent_secret = "{SECRET}"\n{body}\n'
    )
    config = load_config(config_dir / "config.toml", data_dir=tmp_path / "data", env={})
    (section,) = config.providers
    assert isinstance(section, WoodpeckerConfig)
    return section


def test_ca_file_is_read_relative_to_the_config_file(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "ca.pem").write_bytes(pki.ca_file.read_bytes())
    section = _load(tmp_path, 'tls = true\nca_file = "ca.pem"')
    opts = options_from_config(section, data_dir=tmp_path, max_concurrent=1)
    assert opts.tls and opts.ca_file == tmp_path / "etc" / "ca.pem"
    opts.validate()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('ca_file = "{ca}"', r"woodpecker\.ca_file: needs tls = true"),
        ('tls = true\nca_file = "{key}"', "holds no PEM certificate"),
        ('tls = true\nca_file = "missing.pem"', "ca_file: cannot read .*missing.pem"),
    ],
)
def test_a_bad_ca_file_is_a_one_line_config_error(
    tmp_path: Path, pki: Pki, body: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _load(tmp_path, body.format(ca=pki.ca_file, key=pki.key_file))
    assert "\n" not in str(caught.value)


async def test_an_unloadable_ca_file_stops_the_provider_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="cannot load ca_file"):
        async with open_woodpecker_provider(_options(tmp_path, tls=True, ca_file=bad)):
            pass
    with pytest.raises(ConfigError, match="ca_file needs tls = true"):
        async with open_woodpecker_provider(_options(tmp_path, tls=False, ca_file=bad)):
            pass


def _options(tmp_path: Path, *, tls: bool, ca_file: Path) -> WoodpeckerOptions:
    return WoodpeckerOptions(
        name="wp",
        server="127.0.0.1:9",
        agent_secret=SECRET,
        state_dir=tmp_path,
        tls=tls,
        ca_file=ca_file,
    )
