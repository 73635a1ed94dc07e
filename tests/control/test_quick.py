"""The blocking ``Status`` client against the real server, and against the grpclib client.

``fetch_status`` re-implements a slice of what grpclib, betterproto and ``_status_map``
do, so each slice is checked against the original: the protobuf decoding by property,
the status-code mapping for every code, the whole call against a real control server on
a real unix socket, with the Trio client as the reference for what it should return
(its ``DaemonStatus`` converted with ``StatusReply.of``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import hypothesis.strategies as st
import pytest
import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import given

from ephemerd._errors import (
    ConfigError,
    ControlError,
    Cordoned,
    DaemonNotRunning,
    EphemerdError,
    JobNotFound,
    SandboxError,
)
from ephemerd._proto.ephemerd import v1 as pb
from ephemerd.capabilities import DaemonStatus, ProviderState, ProviderView
from ephemerd.control import ProviderReply, StatusReply, open_control_client, open_control_server
from ephemerd.control._convert import status_from_pb
from ephemerd.control._quick import error_for_status, fetch_status, status_from_bytes
from ephemerd.control._status_map import error_from_grpc

from .fake_daemon import FakeTarget

ROOT = Path(__file__).resolve().parents[2]

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_double = st.floats(allow_nan=False)
_uint32 = st.integers(0, 2**32 - 1)
_providers = st.builds(
    pb.Provider,
    instance=_text,
    kind=_text,
    state=st.integers(0, 6),  # 5 and 6: states only a newer daemon would know
    webhook=st.booleans(),
    last_error=_text,
    last_ok_at=_double,
    active_jobs=_uint32,
)
_responses = st.builds(
    pb.StatusResponse,
    pid=st.integers(-(2**31), 2**31 - 1),
    version=_text,
    started_at=_double,
    uptime_seconds=_double,
    active_jobs=_uint32,
    parked_jobs=_uint32,
    max_concurrent=_uint32,
    cordoned=st.booleans(),
    draining=st.booleans(),
    providers=st.lists(_providers, max_size=4),
)


@given(_responses)
def test_decoder_matches_betterproto(message: pb.StatusResponse) -> None:
    data = bytes(message)
    assert status_from_bytes(data) == _reference(data)


@given(_responses, _responses)
def test_later_fields_win_like_betterproto(
    first: pb.StatusResponse, second: pb.StatusResponse
) -> None:
    # Two serialized messages back to back are one message: scalars from the second,
    # providers from both.
    data = bytes(first) + bytes(second)
    assert status_from_bytes(data) == _reference(data)


def test_unknown_fields_are_skipped() -> None:
    extra = bytes([(11 << 3) | 2, 3]) + b"abc" + bytes([(12 << 3) | 5]) + b"\0\0\0\0"
    data = bytes(pb.StatusResponse(pid=7, version="x")) + extra
    assert status_from_bytes(data) == _reference(data)


def _reference(data: bytes) -> StatusReply:
    """What the grpclib/betterproto client makes of *data*, in the quick client's form."""
    return StatusReply.of(status_from_pb(pb.StatusResponse().parse(data)))


def test_reply_has_every_status_field() -> None:
    assert StatusReply._fields == tuple(DaemonStatus.__struct_fields__)
    assert ProviderReply._fields == tuple(ProviderView.__struct_fields__)


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("message", ["", "job github/7 not found", "first line\nsecond"])
def test_status_codes_map_like_grpclib(status: Status, message: str) -> None:
    if status is Status.OK:
        return
    ours = error_for_status(status.value, message)
    theirs = error_from_grpc(GRPCError(status, message))
    assert (type(ours), str(ours)) == (type(theirs), str(theirs))


# -- against the real server -------------------------------------------------------------


async def _quick(path: Path, *, call_timeout: float = 10.0) -> StatusReply:
    return await trio.to_thread.run_sync(lambda: fetch_status(path, call_timeout=call_timeout))


async def test_status_from_real_server(target: FakeTarget, sock: Path) -> None:
    target.add("github", "1")
    target.cordon()
    status = await _quick(sock)
    assert status == StatusReply.of(target.status())
    assert status.cordoned and status.active_jobs == 1
    assert status.providers[1].state == "backing_off"
    async with open_control_client(sock) as client:
        assert status == StatusReply.of(await client.status())


async def test_many_providers_span_several_frames(target: FakeTarget, sock: Path) -> None:
    target.providers = tuple(
        ProviderView(instance=f"p{n}", kind="gitea", state=ProviderState.OK, last_error="e" * 300)
        for n in range(400)  # ~130 KB: past the frame size and the default window
    )
    status = await _quick(sock)
    assert status == StatusReply.of(target.status())


async def test_repeated_calls_reuse_nothing(target: FakeTarget, sock: Path) -> None:
    for _ in range(3):
        assert await _quick(sock) == StatusReply.of(target.status())


class _FailingTarget(FakeTarget):
    def __init__(self, log_dir: Path, error: Exception) -> None:
        super().__init__(log_dir)
        self.error = error

    def status(self) -> DaemonStatus:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        JobNotFound("job github/7 not found"),
        Cordoned("the daemon is cordoned"),
        ConfigError("bad key\nmore"),
        SandboxError("containerd is gone"),
        RuntimeError("a bug"),
    ],
)
async def test_error_status_like_trio_client(tmp_path: Path, error: Exception) -> None:
    target = _FailingTarget(tmp_path, error)
    async with open_control_server(target, socket_path=tmp_path / "ephemerd.sock") as path:
        with pytest.raises(EphemerdError) as quick:
            await _quick(path)
        async with open_control_client(path) as client:
            with pytest.raises(EphemerdError) as reference:
                await client.status()
    assert type(quick.value) is type(reference.value)
    assert str(quick.value) == str(reference.value)
    if isinstance(error, EphemerdError):
        assert type(quick.value) is (
            type(error) if isinstance(error, JobNotFound | Cordoned) else ControlError
        )


def test_no_socket(tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.sock"
    with pytest.raises(DaemonNotRunning, match=r"^ephemerd is not running \(no socket at "):
        fetch_status(path)


def test_refused(tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))  # bound, never listening: a dead daemon's leftover
        with pytest.raises(DaemonNotRunning, match=r"^ephemerd is not running \(no answer on "):
            fetch_status(path)


async def _serve_raw(
    path: Path,
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None],
) -> None:
    """Accept one connection on *path* and hand it to *handler*: a peer that is no daemon."""
    sock = trio.socket.socket(trio.socket.AF_UNIX)
    await sock.bind(str(path))
    sock.listen()
    async with trio.SocketListener(sock) as listener:
        task_status.started()
        stream = await listener.accept()
        async with stream:
            await handler(stream)


async def test_silent_peer_times_out(tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.sock"
    done = trio.Event()

    async def silent(stream: trio.SocketStream) -> None:
        await done.wait()

    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: _serve_raw(path, silent, task_status=task_status))
        with pytest.raises(ControlError, match=r"^ephemerd did not answer in time on "):
            await _quick(path, call_timeout=0.2)
        done.set()


async def test_peer_hanging_up_is_lost_connection(tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.sock"

    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some()

    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: _serve_raw(path, hang_up, task_status=task_status))
        with pytest.raises(DaemonNotRunning, match=r"^lost the connection to ephemerd on "):
            await _quick(path)


async def test_peer_speaking_nonsense_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ephemerd.sock"

    async def nonsense(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        # A HEADERS frame on stream 1 with END_STREAM whose block is not HPACK.
        await stream.send_all(b"\0\0\2\1\5\0\0\0\1\xff\xff")

    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: _serve_raw(path, nonsense, task_status=task_status))
        with pytest.raises(ControlError, match=r"^ephemerd sent a malformed reply on "):
            await _quick(path)


# -- what it costs to start --------------------------------------------------------------

_HEAVY = (
    "asyncio",
    "grpclib",
    "betterproto",
    "google.protobuf",
    "trio",
    "cyclopts",
    "hpack",
    "socket",
    "logging",
    "msgspec",
    "typing_extensions",
    "inspect",
    "ephemerd.capabilities",
)


def test_import_pulls_no_heavy_module() -> None:
    code = (
        "import sys, ephemerd.control._quick, ephemerd.cli._quick, ephemerd.cli._status;"
        f"print(','.join(m for m in {_HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, cwd=ROOT)
    assert out.stdout.decode().strip() == ""


async def test_status_command_imports_no_heavy_module(sock: Path) -> None:
    env = dict(os.environ)
    env.pop("EPHEMERD_DATA_DIR", None)
    argv = [sys.executable, "-X", "importtime", "-m", "ephemerd.cli"]
    result = await trio.run_process(
        [*argv, "--data-dir", str(sock.parent), "status"],
        capture_stdout=True,
        capture_stderr=True,
        cwd=ROOT,
        env=env,
    )
    assert result.stdout.startswith(b"ephemerd ")
    imported = {line.split("|")[-1].strip() for line in result.stderr.decode().splitlines()}
    assert "ephemerd.control._quick" in imported
    for heavy in _HEAVY:
        assert heavy not in imported, heavy
