"""A fake target served on a real unix socket, for the control-plane tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ephemerd.control import open_control_server

from .fake_daemon import FakeTarget


@pytest.fixture
def target(tmp_path: Path) -> FakeTarget:
    return FakeTarget(tmp_path)


@pytest.fixture
async def sock(target: FakeTarget, tmp_path: Path) -> AsyncIterator[Path]:
    async with open_control_server(target, socket_path=tmp_path / "ephemerd.sock") as path:
        yield path
