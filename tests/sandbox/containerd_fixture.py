"""pytest fixtures for the containerd tests: one private containerd per session.

pytest-trio runs each test in its own Trio run, so the session's containerd is a plain
child process (started from the same generated config the embedded mode uses) and each
test connects to it with ``open_containerd(address=...)``. The busybox image is built
once per session. Tests of the embedded mode itself start their own instances.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
import trio

from ephemerd.sandbox import (
    HOST_IMAGE,
    ContainerdClient,
    ContainerdSandbox,
    ImageStore,
    build_host_image,
    open_containerd,
    open_sandbox_backend,
)
from ephemerd.sandbox._embedded import render_config

needs_containerd = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("containerd") is None or shutil.which("runc") is None,
    reason="needs root, containerd and runc",
)


def _die_with_parent() -> None:
    """In the child: get SIGKILL when pytest dies, so a killed run leaks no containerd."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Session(msgspec.Struct, frozen=True):
    data_dir: Path
    address: str


@pytest.fixture(scope="session")
def containerd_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and containerd")
    data_dir = tmp_path_factory.mktemp("cd")
    base = data_dir / "containerd"
    for sub in ("root", "state"):
        (base / sub).mkdir(parents=True)
    socket = base / "containerd.sock"
    config = base / "config.toml"
    config.write_text(render_config(root=base / "root", state=base / "state", socket=socket))
    with (base / "containerd.log").open("ab") as log:
        process = subprocess.Popen(
            ["containerd", "--config", str(config)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (only a prctl call)
        )
    session = Session(data_dir=data_dir, address=str(socket))
    try:
        trio.run(_build_image, session)
        yield session
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        subprocess.run(
            ["umount", "-l", str(data_dir / "run" / "files")], check=False, capture_output=True
        )


async def _build_image(session: Session) -> None:
    # open_containerd polls Version until the new process answers
    async with open_containerd(data_dir=session.data_dir, address=session.address) as client:
        await build_host_image(ImageStore(client), work_dir=session.data_dir / "tmp")


@pytest.fixture
async def cd_client(containerd_session: Session) -> AsyncIterator[ContainerdClient]:
    async with open_containerd(
        data_dir=containerd_session.data_dir, address=containerd_session.address
    ) as client:
        yield client


@pytest.fixture
async def backend(
    containerd_session: Session, cd_client: ContainerdClient
) -> AsyncIterator[ContainerdSandbox]:
    async with open_sandbox_backend(
        cd_client, data_dir=containerd_session.data_dir, images=ImageStore(cd_client)
    ) as sandboxes:
        yield sandboxes
        leftover = await sandboxes.sweep()
        assert leftover == [], f"sandboxes leaked: {leftover}"


__all__ = [
    "HOST_IMAGE",
    "Session",
    "backend",
    "cd_client",
    "containerd_session",
    "needs_containerd",
]
