"""Small helpers shared by the containerd sandbox tests."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from ephemerd._proto.containerd.services.containers import v1 as containers_v1
from ephemerd._proto.containerd.services.leases import v1 as leases_v1
from ephemerd._proto.containerd.services.snapshots import v1 as snapshots_v1
from ephemerd.capabilities import ResourceLimits, SandboxExit, SandboxSpec
from ephemerd.sandbox import HOST_IMAGE, ContainerdClient, ContainerdSandbox

_ids = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


def spec(name: str, *argv: str, **options: object) -> SandboxSpec:
    values: dict[str, object] = {"network": "none", "image": HOST_IMAGE}
    values.update(options)
    return SandboxSpec(name=name, argv=tuple(argv), **values)  # type: ignore[arg-type]


async def run(
    backend: ContainerdSandbox,
    script: str,
    *,
    limits: ResourceLimits | None = None,
    **options: object,
) -> tuple[SandboxExit, str]:
    """Run ``sh -c script`` in a fresh sandbox; return its exit and its log."""
    if limits is not None:
        options["limits"] = limits
    handle = await backend.create(spec(unique("run"), "sh", "-c", script, **options))
    try:
        await handle.start()
        outcome = await handle.wait()
    finally:
        await handle.destroy()
    return outcome, handle.log_path.read_text()


def runc_pids(*words: str) -> list[int]:
    """runc processes whose argv holds every one of *words* (whole arguments)."""
    wanted = {word.encode() for word in words}
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0] == b"runc" and wanted <= set(argv):
                found.append(int(proc.name))
    return found


async def objects_of(client: ContainerdClient, name: str) -> list[str]:
    """Everything containerd, runc and the bundle directory still hold for sandbox *name*."""
    found: list[str] = []
    containers = await client.call(
        client.containers.list, containers_v1.ListContainersRequest(filters=[f"id=={name}"])
    )
    found += [f"container {c.id}" for c in containers.containers]
    leases = await client.call(client.leases.list, leases_v1.ListRequest())
    found += [f"lease {lease.id}" for lease in leases.leases if name in lease.id]
    async with client.stream(
        client.snapshots.list, snapshots_v1.ListSnapshotsRequest(snapshotter="overlayfs")
    ) as replies:
        async for reply in replies:
            found += [f"snapshot {i.name}" for i in reply.info if i.name == name]
    run = Path(client.address.removeprefix("unix://")).parent.parent / "run"  # the session's
    found += [f"runc state {name}"] if (run / "runc" / name).exists() else []
    found += [f"bundle {name}"] if (run / "bundles" / name).exists() else []
    return found
