# ruff: noqa: F811  (fixtures imported from containerd_fixture shadow their names)
"""``exec(..., stdin=...)`` on a real containerd: a script reaches a shell without argv."""

from __future__ import annotations

import pytest

from ephemerd.sandbox import ContainerdSandbox

from .containerd_fixture import (  # noqa: F401  (fixtures)
    backend,  # pyright: ignore[reportUnusedImport]
    cd_client,  # pyright: ignore[reportUnusedImport]
    containerd_session,  # pyright: ignore[reportUnusedImport]
)
from .sandbox_helpers import spec, unique

pytestmark = pytest.mark.containerd


async def test_stdin_feeds_a_script_then_end_of_file(backend: ContainerdSandbox) -> None:
    handle = await backend.create(spec(unique("stdin"), "sleep", "300"))
    out: list[bytes] = []

    async def collect(stream: str, chunk: bytes) -> None:
        if stream == "stdout":
            out.append(chunk)

    big = b"# " + b"y" * 200_000 + b"\n"  # more than a pipe holds: written while read
    try:
        await handle.start()
        script = big + b"echo from-stdin\nexit 5\n"
        assert await handle.exec(["sh", "-s"], stdin=script, output=collect) == 5
        assert b"".join(out) == b"from-stdin\n"
        out.clear()
        # end-of-file arrives: cat ends once the bytes are through
        assert await handle.exec(["wc", "-c"], stdin=b"12345", output=collect) == 0
        assert b"".join(out).strip() == b"5"
        out.clear()
        assert await handle.exec(["sh", "-c", "cat; echo done"], stdin=b"", output=collect) == 0
        assert b"".join(out) == b"done\n"
    finally:
        await handle.destroy()
