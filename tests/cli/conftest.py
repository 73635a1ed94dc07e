"""Run the real ``ephemerd`` CLI as a subprocess against a control server in the test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ephemerd.control import open_control_server
from tests.control.fake_daemon import FakeTarget

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "ephemerd.cli"]


class Daemon:
    def __init__(self, target: FakeTarget, data_dir: Path) -> None:
        self.target = target
        self.data_dir = data_dir

    @property
    def socket(self) -> Path:
        return self.data_dir / "ephemerd.sock"

    async def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[bytes]:
        """``ephemerd --data-dir <dir> *args``; stdout/stderr captured."""
        return await trio.run_process(
            [*CLI, "--data-dir", str(self.data_dir), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=check,
            cwd=ROOT,
            env=cli_env(),
        )


async def start_process(
    nursery: trio.Nursery, argv: list[str], *, stderr: bool = False
) -> trio.Process:
    """Start *argv* in *nursery* with stdout (and maybe stderr) piped; no exit check."""

    async def run(task_status: trio.TaskStatus[trio.Process]) -> None:
        await trio.run_process(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if stderr else None,
            check=False,
            cwd=ROOT,
            env=cli_env(),
            task_status=task_status,
        )

    process: trio.Process = await nursery.start(run)
    return process


# The console script's own entry (``python -m`` would add runpy's imports to the count).
CONSOLE_SCRIPT = "import sys; from ephemerd.cli import main; sys.exit(main())"

# What the fast paths (status, gitlab-executor stages) must never import: each costs
# milliseconds of start-up.
HEAVY_MODULES = (
    "asyncio",
    "betterproto",
    "cyclopts",
    "dataclasses",
    "ephemerd.capabilities",
    "grpclib",
    "inspect",
    "logging",
    "msgspec",
    "rich",
    "socket",
    "trio",
    "trio_asyncio",
    "typing_extensions",
)


def imported_modules(stderr: bytes) -> set[str]:
    """Every module a ``python -X importtime`` run imported, from its stderr."""
    return {line.split("|")[-1].strip() for line in stderr.decode().splitlines() if "|" in line}


async def import_floor() -> set[str]:
    """What the bare interpreter imports (site, ...): not ours to count."""
    result = await trio.run_process(
        [sys.executable, "-X", "importtime", "-c", "pass"], capture_stderr=True, cwd=ROOT
    )
    return imported_modules(result.stderr)


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("EPHEMERD_DATA_DIR", None)
    env["COLUMNS"] = "120"
    return env


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
async def daemon(data_dir: Path) -> AsyncIterator[Daemon]:
    target = FakeTarget(data_dir)
    async with open_control_server(target, socket_path=data_dir / "ephemerd.sock"):
        yield Daemon(target, data_dir)
