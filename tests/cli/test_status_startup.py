"""What ``ephemerd status`` imports, measured in a fresh interpreter against a real socket.

Scripts poll ``ephemerd status``, so its start-up is a budget: checked here by what it
imports (``-X importtime``), never by a clock. Each heavy module named below costs
milliseconds that the quick path exists to avoid; ``bench/status_latency.py`` measures
the time itself.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
import trio

from .conftest import (
    CONSOLE_SCRIPT,
    HEAVY_MODULES,
    ROOT,
    Daemon,
    cli_env,
    import_floor,
    imported_modules,
)


async def _imports(argv: list[str]) -> tuple[bytes, set[str]]:
    """Stdout of ``python -X importtime *argv*``, and every module it imported."""
    result = await trio.run_process(
        [sys.executable, "-X", "importtime", *argv],
        capture_stdout=True,
        capture_stderr=True,
        check=True,
        cwd=ROOT,
        env=cli_env(),
    )
    return result.stdout, imported_modules(result.stderr)


@pytest.mark.parametrize("args", [["status"], ["status", "--json"]])
async def test_status_imports_no_heavy_module(daemon: Daemon, args: list[str]) -> None:
    floor = await import_floor()
    out, imported = await _imports(
        ["-c", CONSOLE_SCRIPT, "--data-dir", str(daemon.data_dir), *args]
    )
    if args[-1] == "--json":
        assert json.loads(out)["pid"] == os.getpid()
    else:
        assert out.startswith(b"ephemerd ")
    assert "ephemerd.control._quick" in imported  # the measurement saw the real path
    heavy = [name for name in HEAVY_MODULES if name in imported - floor]
    assert heavy == []
