# ruff: noqa: F811  (fixtures imported from containerd_fixture shadow their names)
"""The embedded containerd: start, readiness, missing binaries, restart after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from ephemerd._errors import RuntimeUnavailable
from ephemerd.capabilities import ExitReason
from ephemerd.config import load_config
from ephemerd.daemon import serve
from ephemerd.sandbox import (
    ContainerdClient,
    ImageStore,
    build_host_image,
    open_containerd,
    open_sandbox_backend,
)
from ephemerd.sandbox._embedded import _socket_path

from .containerd_fixture import Session, cd_client, containerd_session, needs_containerd  # noqa: F401
from .sandbox_helpers import spec, unique

pytestmark = [needs_containerd, pytest.mark.containerd]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_starts_answers_and_stops(tmp_path: Path) -> None:
    async with open_containerd(data_dir=tmp_path) as client:
        embedded = client.embedded
        assert embedded is not None
        assert 0 < embedded.ready_seconds < 10
        config = embedded.config.read_text()
        assert "io.containerd.grpc.v1.cri" in config  # listed as disabled
        assert str(tmp_path) in config
        pid = int(embedded.pid_file.read_text())
        assert _alive(pid)
        assert embedded.socket.is_socket()
    assert not embedded.pid_file.exists()
    assert not _alive(pid)


async def test_missing_containerd_names_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeUnavailable, match="'containerd'") as caught:
        async with open_containerd(data_dir=tmp_path / "data"):
            pass
    assert "\n" not in str(caught.value)


@needs_containerd
@pytest.mark.containerd
async def test_missing_runc_names_the_debian_package(
    containerd_session: Session, cd_client: ContainerdClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeUnavailable, match=r"runc not found on PATH.*'runc'") as caught:
        async with open_sandbox_backend(cd_client, data_dir=containerd_session.data_dir):
            pass
    assert "\n" not in str(caught.value)


async def test_external_address_that_does_not_answer(tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnavailable, match="did not answer"):
        async with open_containerd(
            data_dir=tmp_path, address=str(tmp_path / "nothing.sock"), ready_timeout=0.3
        ):
            pass


def test_deep_data_dir_gets_a_short_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    path = _socket_path(deep)
    assert len(str(path)) < 100
    assert path.parent.parent == Path("/run/ephemerd")
    assert _socket_path(Path("/var/lib/ephemerd")) == Path("/var/lib/ephemerd/containerd.sock")


async def test_restart_after_crash_keeps_running_sandboxes(tmp_path: Path) -> None:
    async with open_containerd(data_dir=tmp_path) as client:
        embedded = client.embedded
        assert embedded is not None
        images = ImageStore(client)
        await build_host_image(images, work_dir=tmp_path / "tmp")
        async with open_sandbox_backend(client, data_dir=tmp_path, images=images) as backend:
            handle = await backend.create(spec(unique("survivor"), "sleep", "300"))
            try:
                await handle.start()
                outcome = []
                async with trio.open_nursery() as nursery:

                    async def waiter() -> None:
                        outcome.append(await handle.wait())

                    nursery.start_soon(waiter)
                    restarted = embedded.restarted
                    os.kill(int(embedded.pid_file.read_text()), signal.SIGKILL)
                    await restarted.wait()
                    assert embedded.restarts == 1
                    # runc, not containerd, runs the sandbox: it never noticed
                    assert (await handle.stats()).pids >= 1
                    assert await handle.exec(["true"]) == 0
                    await handle.kill()
                assert outcome[0].reason is ExitReason.KILLED
            finally:
                await handle.destroy()
            assert await backend.list_own() == []


async def test_stale_instance_of_a_killed_daemon_is_replaced(tmp_path: Path) -> None:
    async with open_containerd(data_dir=tmp_path) as client:
        assert client.embedded is not None
        config, pid_file = client.embedded.config, client.embedded.pid_file
    # as if ephemerd had been killed -9: its containerd still runs with our config
    stale = await trio.lowlevel.open_process(
        ["containerd", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        pid_file.write_text(str(stale.pid))
        async with open_containerd(data_dir=tmp_path) as client:
            assert client.embedded is not None
            with trio.fail_after(10):
                assert await stale.wait() == -signal.SIGKILL
            assert int(client.embedded.pid_file.read_text()) != stale.pid
    finally:
        if stale.returncode is None:
            stale.kill()
            await stale.wait()


@needs_containerd
@pytest.mark.containerd
async def test_the_configured_runtime_is_the_one_sandboxes_use(
    containerd_session: Session, tmp_path: Path
) -> None:
    """``[sandbox] runtime`` reaches the backend: a missing one stops ``serve`` with its name."""
    path = tmp_path / "config.toml"
    path.write_text(
        f'[sandbox]\ncontainerd_address = "{containerd_session.address}"\n'
        'network = "none"\nruntime = "no-such-runtime"\n'
    )
    config = load_config(path, data_dir=tmp_path / "d", env={})
    with pytest.raises(RuntimeUnavailable, match=r"^no-such-runtime not found on PATH$"):
        with trio.fail_after(30):  # with runc instead, serve would run on
            await serve(config)
