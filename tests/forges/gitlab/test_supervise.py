"""supervise_gitlab_runner with a fake ``gitlab-runner`` on PATH that reports over TCP.

The fake tells the test what happens to it (started, crashed, got SIGQUIT) on a loopback
socket, so the tests wait on those messages instead of polling files or sleeping.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from ephemerd._errors import ConfigError
from ephemerd._retry import RetryPolicy
from ephemerd.forges.gitlab import RunnerSwitch, supervise_gitlab_runner

FAKE = """\
#!{python}
import os, signal, socket, sys
state = os.path.join(os.environ["FAKE_GLR_DIR"], "starts")
n = int(open(state).read()) + 1 if os.path.exists(state) else 1
with open(state, "w") as f:
    f.write(str(n))
conn = socket.create_connection(("127.0.0.1", int(os.environ["FAKE_GLR_PORT"])))
def say(what, rest=""):
    conn.sendall(f"{{what}} {{n}} {{os.getpid()}} {{rest}}\\n".encode())
print(f"Starting multi-runner from {{sys.argv[-1]}}", flush=True)
if n <= int(os.environ.get("FAKE_GLR_CRASHES", "0")):
    say("crash")
    sys.exit(3)
def on_quit(signum, frame):
    say("quit")
    if not os.environ.get("FAKE_GLR_IGNORE_QUIT"):
        sys.exit(0)
signal.signal(signal.SIGQUIT, on_quit)
say("start", " ".join(sys.argv[1:]))
while True:
    signal.pause()
"""

NO_JITTER = RetryPolicy(schedule=(1.0, 2.0, 4.0), jitter=0.0, max_age=None)


@dataclass
class Message:
    what: str
    n: int
    pid: int
    rest: str
    at: float


@dataclass
class Fake:
    config: Path
    messages: trio.MemoryReceiveChannel[Message]

    async def next(self) -> Message:
        return await self.messages.receive()


async def _listen(listener: trio.SocketListener, send: trio.MemorySendChannel[Message]) -> None:
    async def one(stream: trio.SocketStream) -> None:
        buffer = b""
        async with stream:
            while chunk := await stream.receive_some():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    what, n, pid, *rest = line.decode().split(" ")
                    await send.send(
                        Message(what, int(n), int(pid), " ".join(rest).strip(), trio.current_time())
                    )

    async with listener, trio.open_nursery() as nursery:
        while True:
            stream = await listener.accept()
            nursery.start_soon(one, stream)


@pytest.fixture
async def fake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nursery: trio.Nursery
) -> AsyncIterator[Fake]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "gitlab-runner"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(0o755)
    config = tmp_path / "gitlab-runner" / "config.toml"
    config.parent.mkdir()
    config.write_text("concurrent = 1\n")
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GLR_DIR", str(tmp_path))
    monkeypatch.setenv("FAKE_GLR_PORT", str(port))
    send, receive = trio.open_memory_channel[Message](100)
    nursery.start_soon(_listen, listener, send)
    yield Fake(config, receive)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def start(
    nursery: trio.Nursery, fake: Fake, **kw: object
) -> tuple[trio.CancelScope, trio.Event]:
    scope = trio.CancelScope()
    done = trio.Event()

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await supervise_gitlab_runner(
                binary="gitlab-runner",
                config_file=fake.config,
                task_status=task_status,
                **kw,  # type: ignore[arg-type]
            )
        done.set()

    await nursery.start(run)
    return scope, done


async def test_runs_and_stops_gracefully_with_sigquit(
    fake: Fake, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ephemerd.gitlab-runner")
    scope, done = await start(nursery, fake)
    started = await fake.next()
    assert (started.what, started.n) == ("start", 1)
    assert started.rest == f"run --config {fake.config}"
    scope.cancel()
    with trio.fail_after(60):  # a SIGKILL instead of SIGQUIT would never say "quit"
        quit_ = await fake.next()
        await done.wait()
    assert (quit_.what, quit_.pid) == ("quit", started.pid)
    assert not alive(started.pid)
    assert f"Starting multi-runner from {fake.config}" in caplog.text


async def test_a_stubborn_runner_is_killed_after_the_deadline(
    fake: Fake,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    monkeypatch.setenv("FAKE_GLR_IGNORE_QUIT", "1")
    scope, done = await start(nursery, fake, stop_timeout=30.0)
    started = await fake.next()
    began = trio.current_time()
    scope.cancel()
    await done.wait()
    assert trio.current_time() - began >= 30.0  # SIGKILL only after the graceful window
    assert not alive(started.pid)


async def test_crashes_restart_on_the_ladder(
    fake: Fake,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("FAKE_GLR_CRASHES", "3")
    scope, done = await start(nursery, fake, restart=NO_JITTER)
    seen = [await fake.next() for _ in range(4)]
    assert [(m.what, m.n) for m in seen] == [("crash", 1), ("crash", 2), ("crash", 3), ("start", 4)]
    gaps = [round(b.at - a.at, 3) for a, b in itertools.pairwise(seen)]
    assert gaps == [1.0, 2.0, 4.0]  # backing off, not a storm
    assert "exited (status 3); restarting in 1.0s" in caplog.text
    scope.cancel()
    await done.wait()
    assert not alive(seen[-1].pid)


async def test_a_runner_that_ran_long_enough_restarts_at_the_bottom_of_the_ladder(
    fake: Fake, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    scope, done = await start(nursery, fake, restart=NO_JITTER, healthy_after=60.0)
    first = await fake.next()
    await trio.sleep(120)  # MockClock: it has been up two minutes
    os.kill(first.pid, 9)
    second = await fake.next()
    assert second.what == "start" and second.at - first.at == pytest.approx(121.0)
    scope.cancel()
    await done.wait()


async def test_missing_binary_names_the_package(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("")
    with pytest.raises(ConfigError) as caught:
        await supervise_gitlab_runner(binary="gitlab-runner-nowhere", config_file=config)
    assert "gitlab-runner package" in str(caught.value)
    with pytest.raises(ConfigError):
        await supervise_gitlab_runner(binary=str(tmp_path / "gitlab-runner"), config_file=config)


async def test_missing_config_file(fake: Fake, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        await supervise_gitlab_runner(binary="gitlab-runner", config_file=tmp_path / "absent.toml")
    assert "absent.toml" in str(caught.value)


async def test_supervisor_in_a_nursery_is_started_before_returning(
    fake: Fake, nursery: trio.Nursery
) -> None:
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[None]) -> None:
        with scope:
            await supervise_gitlab_runner(
                binary="gitlab-runner", config_file=fake.config, task_status=task_status
            )

    await nursery.start(partial(run))
    assert (await fake.next()).what == "start"
    scope.cancel()


async def test_a_supervised_provider_writes_the_runner_config_and_runs_gitlab_runner(
    fake: Fake, tmp_path: Path
) -> None:
    import stat
    import tomllib

    from ephemerd.config import GitLabConfig, Secret
    from ephemerd.forges.gitlab import open_gitlab_provider, options_from_config

    section = GitLabConfig(
        name="gl", instance_url="https://gitlab.example", token=Secret("glrt-secret")
    )
    options = options_from_config(section, data_dir=tmp_path / "data", max_concurrent=3)
    assert options.supervise is not None  # the fake gitlab-runner is on PATH
    options = msgspec.structs.replace(options, system_id_file=None)  # no GitLab to verify with
    async with open_gitlab_provider(options):
        started = await fake.next()
        assert started.what == "start"
        config_file = tmp_path / "data" / "gitlab-gl" / "config.toml"
        assert started.rest == f"run --config {config_file}"
        assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
        written = tomllib.loads(config_file.read_text())
    assert (await fake.next()).what == "quit"  # stopped gracefully with the provider
    assert written["concurrent"] == 3
    (runner,) = written["runners"]
    assert (runner["token"], runner["executor"]) == ("glrt-secret", "custom")
    args = runner["custom"]["prepare_args"]
    assert args[:2] == ["--data-dir", str((tmp_path / "data").resolve())]
    assert args[-2:] == ["--instance", "gl"]


def test_without_gitlab_runner_installed_the_operator_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ephemerd.config import GitLabConfig, Secret
    from ephemerd.forges.gitlab import options_from_config

    monkeypatch.setenv("PATH", str(tmp_path))
    section = GitLabConfig(name="gl", token=Secret("glrt-secret"))
    assert options_from_config(section, data_dir=tmp_path).supervise is None
    off = GitLabConfig(name="gl", token=Secret("glrt-x"), supervise=False)
    assert options_from_config(off, data_dir=tmp_path).supervise is None


async def test_a_cordon_quits_gitlab_runner_and_an_uncordon_starts_it_again(
    fake: Fake, nursery: trio.Nursery
) -> None:
    switch = RunnerSwitch()
    quick = RetryPolicy(schedule=(0.01,), jitter=0.0, max_age=None)
    scope, done = await start(nursery, fake, switch=switch, restart=quick)
    first = await fake.next()
    assert (first.what, first.n) == ("start", 1)
    switch.set(False)  # cordoned: no new jobs from GitLab, its own jobs finish
    with trio.fail_after(30):
        quit_ = await fake.next()
    assert (quit_.what, quit_.pid) == ("quit", first.pid)
    with trio.move_on_after(0.5):  # a restart would come within 0.01 s: none while cordoned
        unexpected = await fake.next()
        pytest.fail(f"gitlab-runner restarted while cordoned: {unexpected}")
    assert not alive(first.pid)
    switch.set(True)
    with trio.fail_after(30):
        again = await fake.next()
    assert (again.what, again.n) == ("start", 2)
    scope.cancel()
    await done.wait()


async def test_cordoning_the_provider_quits_its_supervised_gitlab_runner(
    fake: Fake, tmp_path: Path
) -> None:
    from ephemerd.capabilities import FollowsCordon
    from ephemerd.config import GitLabConfig, Secret
    from ephemerd.forges.gitlab import open_gitlab_provider, options_from_config

    section = GitLabConfig(
        name="gl", instance_url="https://gitlab.example", token=Secret("glrt-secret")
    )
    options = options_from_config(section, data_dir=tmp_path / "data", max_concurrent=3)
    options = msgspec.structs.replace(options, system_id_file=None)
    async with open_gitlab_provider(options) as provider:
        started = await fake.next()
        assert isinstance(provider, FollowsCordon)  # the scheduler tells it on cordon and drain
        provider.set_cordoned(True)
        with trio.fail_after(30):
            quit_ = await fake.next()
        assert (quit_.what, quit_.pid) == ("quit", started.pid)
        provider.set_cordoned(False)
        with trio.fail_after(30):
            assert (await fake.next()).what == "start"
