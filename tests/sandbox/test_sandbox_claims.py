# ruff: noqa: F811  (fixtures imported from containerd_fixture shadow their names)
"""Without a lease per sandbox: the name claim and the labelled snapshot keep it findable.

A sandbox's name is claimed with a marker directory before anything else exists and the
marker goes only once containerd has confirmed every removal; the rootfs snapshot is a
garbage-collection root of its own, labelled with the sandbox. These tests check each
half-created or half-destroyed state a crash or a refusal can leave, and that the sweep
clears it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import betterproto
import pytest

from ephemerd._errors import SandboxError
from ephemerd._proto.containerd.services.containers import v1 as containers_v1
from ephemerd._proto.containerd.services.leases import v1 as leases_v1
from ephemerd._proto.containerd.services.snapshots import v1 as snapshots_v1
from ephemerd.sandbox import ContainerdClient, ContainerdSandbox, ImageStore, open_sandbox_backend

from .containerd_fixture import Session, backend, cd_client, containerd_session  # noqa: F401
from .sandbox_helpers import objects_of, spec, unique

pytestmark = pytest.mark.containerd

R = TypeVar("R")


def _claim(session: Session, name: str) -> Path:
    return session.data_dir / "run" / "sandboxes" / name


async def test_a_plain_sandbox_has_no_lease_and_a_gc_root_snapshot(
    backend: ContainerdSandbox, cd_client: ContainerdClient, containerd_session: Session
) -> None:
    name = unique("claim")
    handle = await backend.create(spec(name, "true"))
    try:
        assert _claim(containerd_session, name).is_dir()
        leases = await cd_client.call(cd_client.leases.list, leases_v1.ListRequest())
        assert not [lease.id for lease in leases.leases if name in lease.id]
        info = await cd_client.call(
            cd_client.snapshots.stat,
            snapshots_v1.StatSnapshotRequest(snapshotter="overlayfs", key=name),
        )
        assert info.info.labels["containerd.io/gc.root"]
        assert info.info.labels["ephemerd.io/sandbox"] == name
        await handle.start()
        assert (await handle.wait()).succeeded
    finally:
        await handle.destroy()
    assert not _claim(containerd_session, name).exists()
    assert await objects_of(cd_client, name) == []


async def test_a_claimed_name_is_refused_until_swept(
    backend: ContainerdSandbox, containerd_session: Session
) -> None:
    name = unique("claimed")
    _claim(containerd_session, name).mkdir()  # as after a crash right after the claim
    with pytest.raises(SandboxError, match="already exists"):
        await backend.create(spec(name, "true"))
    assert name in await backend.list_own()
    assert name in await backend.sweep()
    assert not _claim(containerd_session, name).exists()
    handle = await backend.create(spec(name, "true"))  # the name is free again
    await handle.destroy()


async def test_a_lone_labelled_snapshot_is_found_and_swept(
    backend: ContainerdSandbox, cd_client: ContainerdClient, containerd_session: Session
) -> None:
    """A snapshot left without claim, container or lease (say, the data dir was wiped)."""
    name = unique("lone")
    handle = await backend.create(spec(name, "true"))
    await cd_client.call(cd_client.containers.delete, containers_v1.DeleteContainerRequest(id=name))
    _claim(containerd_session, name).rmdir()
    del handle
    assert await objects_of(cd_client, name) == [f"snapshot {name}"]
    assert name in await backend.list_own()
    assert name in await backend.sweep()
    assert await objects_of(cd_client, name) == []


class RefusingClient(ContainerdClient):
    """The real client, but containerd "refuses" every snapshot removal."""

    def __init__(self, real: ContainerdClient) -> None:
        self.__dict__.update(real.__dict__)

    async def call(
        self, method: Callable[..., Awaitable[R]], request: betterproto.Message, **kw: Any
    ) -> R:
        if isinstance(request, snapshots_v1.RemoveSnapshotRequest):
            raise SandboxError("containerd Snapshots.remove: refused for the test")
        return await super().call(method, request, **kw)


async def test_a_refused_removal_keeps_the_claim_for_the_next_sweep(
    containerd_session: Session, cd_client: ContainerdClient
) -> None:
    refusing = RefusingClient(cd_client)
    name = unique("refused")
    async with open_sandbox_backend(
        refusing, data_dir=containerd_session.data_dir, images=ImageStore(refusing)
    ) as flaky:
        handle = await flaky.create(spec(name, "true"))
        await handle.start()
        await handle.wait()
        await handle.destroy()
        assert await objects_of(cd_client, name) == [f"snapshot {name}"]
        assert _claim(containerd_session, name).is_dir()
    async with open_sandbox_backend(
        cd_client, data_dir=containerd_session.data_dir, images=ImageStore(cd_client)
    ) as sound:
        assert name in await sound.sweep()
    assert await objects_of(cd_client, name) == []
    assert not _claim(containerd_session, name).exists()
