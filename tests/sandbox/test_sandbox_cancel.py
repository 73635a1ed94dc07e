# ruff: noqa: F811, ASYNC240  (fixtures imported from containerd_fixture shadow their names)
"""Cancellation at every step of create and start leaves nothing behind.

The client is wrapped so that its N-th containerd call is cancelled, either just before
the request goes out or just after containerd has answered (the worst case: the object
exists but the caller never learns of it). N walks every call of create + start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import betterproto
import pytest
import trio

from ephemerd.capabilities import ClaimFile, ResourceLimits
from ephemerd.sandbox import ContainerdClient, ImageStore, open_sandbox_backend

from .containerd_fixture import Session, cd_client, containerd_session  # noqa: F401
from .sandbox_helpers import objects_of, spec, unique

pytestmark = pytest.mark.containerd

R = TypeVar("R")


class CancellingClient(ContainerdClient):
    """The real client, but the N-th call cancels *scope* before or after it runs."""

    def __init__(self, real: ContainerdClient, *, at: int, after: bool) -> None:
        self.__dict__.update(real.__dict__)
        self.at = at
        self.after = after
        self.calls = 0
        self.scope: trio.CancelScope | None = None
        self.fired = False

    async def call(
        self, method: Callable[..., Awaitable[R]], request: betterproto.Message, **kw: Any
    ) -> R:
        self.calls += 1
        fire = self.calls == self.at and self.scope is not None
        if fire and not self.after:
            self._cancel()
            await trio.lowlevel.checkpoint()
        result = await super().call(method, request, **kw)
        if fire and self.after:
            self._cancel()
            await trio.lowlevel.checkpoint()
        return result

    def _cancel(self) -> None:
        assert self.scope is not None
        self.fired = True
        self.scope.cancel()


@pytest.mark.parametrize("after", [False, True], ids=["before-call", "after-call"])
async def test_cancel_at_each_step(
    containerd_session: Session, cd_client: ContainerdClient, after: bool
) -> None:
    steps_checked = 0
    for at in range(1, 60):
        client = CancellingClient(cd_client, at=at, after=after)
        name = unique(f"cancel{at}")
        async with open_sandbox_backend(
            client, data_dir=containerd_session.data_dir, images=ImageStore(client)
        ) as backend:
            handle = None
            with trio.CancelScope() as scope:
                client.scope = scope
                handle = await backend.create(
                    spec(
                        name,
                        "sleep",
                        "300",
                        files=(ClaimFile(path="/run/secret", content=b"x"),),
                        limits=ResourceLimits(memory_bytes=64 << 20, pids=64),
                    )
                )
                await handle.start()
            client.scope = None
            if not client.fired:  # every step passed: done
                assert handle is not None
                await handle.destroy()
                break
            steps_checked += 1
            if handle is not None:  # cancelled inside start: destroy must clear the rest
                await handle.destroy()
            assert await objects_of(cd_client, name) == [], f"leak after cancel at call {at}"
            assert not (containerd_session.data_dir / "run" / "files" / name).exists()
            assert name not in await backend.list_own(), f"still listed after cancel at call {at}"
    else:
        pytest.fail("create + start never completed")
    assert steps_checked >= 3  # image, snapshot, container


async def test_cancel_while_containerd_is_slow_is_bounded(
    containerd_session: Session, cd_client: ContainerdClient
) -> None:
    """A deadline around create+start cancels cleanly even mid-RPC."""
    async with open_sandbox_backend(
        cd_client, data_dir=containerd_session.data_dir, images=ImageStore(cd_client)
    ) as backend:
        name = unique("deadline")
        with trio.move_on_after(0.03):
            handle = await backend.create(spec(name, "sleep", "300"))
            await handle.start()
            await handle.wait()
        await backend.destroy(name)
        assert await objects_of(cd_client, name) == []
        assert not Path(containerd_session.data_dir / "run" / "files" / name).exists()


@pytest.mark.parametrize("when", ["before-start", "during-runc-start"])
async def test_cancelled_start_leaves_no_process_bundle_or_runc_state(
    containerd_session: Session, cd_client: ContainerdClient, when: str
) -> None:
    """A start cancelled before runc runs, or while it starts the process, undoes itself:
    only the container record and the snapshot remain for ``destroy``."""
    async with open_sandbox_backend(
        cd_client, data_dir=containerd_session.data_dir, images=ImageStore(cd_client)
    ) as backend:
        runc = backend._rt.runc  # fault injection around the real runc
        real_run = runc.run
        name = unique("cancelstart")
        handle = await backend.create(spec(name, "sleep", "300"))
        with trio.CancelScope() as scope:

            async def run_then_cancel(*args: Any, **kw: Any) -> Any:
                started = await real_run(*args, **kw)
                scope.cancel()
                return started

            if when == "before-start":
                scope.cancel()
            else:
                runc.run = run_then_cancel  # type: ignore[method-assign]
            await handle.start()
        assert scope.cancelled_caught
        assert sorted(await objects_of(cd_client, name)) == [
            f"container {name}",
            f"snapshot {name}",
        ]
        await handle.destroy()
        assert await objects_of(cd_client, name) == []
        assert name not in await backend.list_own()
