"""Benchmark of image mounts (a directory of another image, read-only in a sandbox).

Prints one JSON object. Measured in one run on this host (root needed), each with its
floor, the same trivial job without a mount, interleaved so load affects both alike:

- ``plain_job_ms``: create → start → exit → destroyed for ``true``, no image mount;
- ``mounted_job_ms``: the same with one image mount (a view snapshot, bind of its layer);
- ``overhead_ms``: the difference of the medians;
- ``leak_check``: snapshots, leases and containers before and after ``--sequential``
  mounted jobs; ``leaked`` must be 0.

Usage: ``python bench/image_mounts.py [--runs 20] [--sequential 50]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from ephemerd._proto.containerd.services.containers import v1 as containers_v1
from ephemerd._proto.containerd.services.leases import v1 as leases_v1
from ephemerd._proto.containerd.services.snapshots import v1 as snapshots_v1
from ephemerd.capabilities import ImageMount, SandboxSpec
from ephemerd.sandbox import (
    HOST_IMAGE,
    ContainerdClient,
    ContainerdSandbox,
    ImageStore,
    build_host_image,
    open_containerd,
    open_sandbox_backend,
)

TOOL_IMAGE = "ephemerd.local/bench-tool:latest"
MOUNT = ImageMount(image=TOOL_IMAGE, source="/opt/tool", target="/ephemerd/runner")
_ids = iter(range(1, 1 << 30))


async def job(backend: ContainerdSandbox, *, mounted: bool) -> float:
    started = time.perf_counter()
    handle = await backend.create(
        SandboxSpec(
            name=f"bench-mount-{next(_ids)}",
            image=HOST_IMAGE,
            argv=("/ephemerd/runner/tool",) if mounted else ("true",),
            network="none",
            image_mounts=(MOUNT,) if mounted else (),
        )
    )
    try:
        await handle.start()
        outcome = await handle.wait()
        assert outcome.succeeded, outcome
    finally:
        await handle.destroy()
    return time.perf_counter() - started


async def counts(client: ContainerdClient) -> dict[str, int]:
    containers = await client.call(client.containers.list, containers_v1.ListContainersRequest())
    leases = await client.call(client.leases.list, leases_v1.ListRequest())
    snapshots = 0
    async with client.stream(
        client.snapshots.list, snapshots_v1.ListSnapshotsRequest(snapshotter="overlayfs")
    ) as replies:
        async for reply in replies:
            snapshots += len(reply.info)
    return {
        "containers": len(containers.containers),
        "snapshots": snapshots,
        "leases": len(leases.leases),
    }


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered) * 1000, 1),
        "p90": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 1),
        "min": round(ordered[0] * 1000, 1),
    }


async def main(runs: int, sequential: int, data_dir: Path) -> dict[str, object]:
    result: dict[str, object] = {}
    async with open_containerd(data_dir=data_dir) as client:
        images = ImageStore(client)
        await build_host_image(images, work_dir=data_dir / "tmp")
        await build_host_image(
            images, TOOL_IMAGE, work_dir=data_dir / "tmp", files={"/opt/tool/tool": b"#!/bin/sh\n"}
        )
        async with open_sandbox_backend(client, data_dir=data_dir, images=images) as backend:
            await job(backend, mounted=True)  # warm up
            plain: list[float] = []
            mounted: list[float] = []
            for _ in range(runs):
                plain.append(await job(backend, mounted=False))
                mounted.append(await job(backend, mounted=True))
            result["plain_job_ms"] = _ms(plain)
            result["mounted_job_ms"] = _ms(mounted)
            result["overhead_ms"] = round(
                (statistics.median(mounted) - statistics.median(plain)) * 1000, 1
            )
            before = await counts(client)
            for _ in range(sequential):
                await job(backend, mounted=True)
            after = await counts(client)
            result["leak_check"] = {
                "jobs": sequential,
                "before": before,
                "after": after,
                "leaked": sum(after.values()) - sum(before.values()),
            }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sequential", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("containerd") is None:
        sys.exit("containerd not found: install the Debian package 'containerd'")
    tmp = tempfile.mkdtemp(prefix="ephemerd-bench-")
    try:
        print(json.dumps(trio.run(main, args.runs, args.sequential, Path(tmp)), indent=2))
    finally:
        subprocess.run(["umount", "-l", f"{tmp}/run/files"], check=False, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
