"""The control server's socket: permissions, stale files, single instance, shutdown."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
import trio

from ephemerd._errors import ControlError, DaemonAlreadyRunning, DaemonNotRunning
from ephemerd.control import open_control_client, open_control_server

from .fake_daemon import FakeTarget


async def test_socket_is_0600_while_serving_and_removed_after(
    target: FakeTarget, tmp_path: Path
) -> None:
    path = tmp_path / "ephemerd.sock"
    async with open_control_server(target, socket_path=path):
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
    assert not path.exists()


async def test_socket_is_0600_whatever_the_umask(target: FakeTarget, tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.sock"
    old = os.umask(0)
    try:
        async with open_control_server(target, socket_path=path):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        os.umask(old)


async def test_stale_socket_is_replaced(target: FakeTarget, tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listened on: what a killed daemon leaves behind
    dead.close()
    async with (
        open_control_server(target, socket_path=path),
        open_control_client(path) as client,
    ):
        assert (await client.status()).pid == os.getpid()


async def test_second_instance_is_refused_with_the_pid(sock: Path, target: FakeTarget) -> None:
    with pytest.raises(
        DaemonAlreadyRunning, match=rf"^ephemerd is already running \(pid {os.getpid()}\)$"
    ):
        async with open_control_server(target, socket_path=sock):
            pytest.fail("a second server started")  # pragma: no cover
    # The first one is untouched and still answers.
    async with open_control_client(sock) as client:
        await client.status()


async def test_a_listener_that_is_not_ephemerd_is_not_replaced(
    target: FakeTarget, tmp_path: Path
) -> None:
    path = tmp_path / "ephemerd.sock"
    other = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await other.bind(str(path))
    other.listen()
    try:
        with pytest.raises(DaemonAlreadyRunning, match="does not answer as ephemerd"):
            async with open_control_server(target, socket_path=path):
                pass  # pragma: no cover
        assert path.exists()
    finally:
        other.close()


async def test_a_regular_file_in_the_way_is_an_error(target: FakeTarget, tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.sock"
    path.write_text("not a socket")
    with pytest.raises(ControlError, match="is not a socket"):
        async with open_control_server(target, socket_path=path):
            pass  # pragma: no cover
    assert path.read_text() == "not a socket"


async def test_too_long_a_path_is_a_clear_error(target: FakeTarget, tmp_path: Path) -> None:
    path = tmp_path / ("d" * 120) / "ephemerd.sock"
    with pytest.raises(ControlError, match="too long"):
        async with open_control_server(target, socket_path=path):
            pass  # pragma: no cover


async def test_client_without_socket_says_not_running(tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.sock"
    with pytest.raises(
        DaemonNotRunning, match=rf"^ephemerd is not running \(no socket at {path}\)$"
    ):
        async with open_control_client(path):
            pass  # pragma: no cover


async def test_client_on_a_dead_socket_says_not_running(tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    async with open_control_client(path) as client:
        with pytest.raises(DaemonNotRunning, match="not running"):
            await client.status()


async def test_shutdown_with_an_open_watch_ends_promptly(
    target: FakeTarget, tmp_path: Path
) -> None:
    path = tmp_path / "ephemerd.sock"
    got_snapshot = trio.Event()
    outcome: list[BaseException | None] = []

    async def watch() -> None:
        try:
            async with open_control_client(path) as client, client.watch_jobs() as updates:
                async for _ in updates:
                    got_snapshot.set()
            outcome.append(None)
        except DaemonNotRunning as error:
            outcome.append(error)

    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            async with open_control_server(target, socket_path=path):
                nursery.start_soon(watch)
                await got_snapshot.wait()
    # The watcher ended (cleanly or with "lost the connection"), and nothing leaked.
    assert len(outcome) == 1
    assert target.watchers == 0
    assert not path.exists()


async def test_cancelling_the_server_scope_cleans_up(target: FakeTarget, tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.sock"
    with trio.move_on_after(0.2):
        async with open_control_server(target, socket_path=path):
            await trio.sleep_forever()
    assert not path.exists()
