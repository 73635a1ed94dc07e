"""Benchmark of the containerd sandbox backend; prints one JSON object.

Measures, in one run on this host (root needed):

- ``containerd_ready_s``: a fresh embedded containerd, spawn to first answer (target ≤ 1 s);
- ``trivial_job_ms``: create → start → exit → destroyed for ``true``, median and p90
  (target ≤ 110 ms);
- ``runc_floor_ms``: ``runc run`` of the same rootfs with the same spec, median; the
  ``ratio`` of the two (target ≤ 3.5);
- ``concurrent_20_s``: wall time of 20 trivial jobs at once, median of 5 rounds
  (target ≤ 1.5 s);
- ``leak_check``: containers, snapshots, leases, name claims, runc states, bundles,
  network namespaces, bridge ports and nft rules counted before and after ``--sequential`` (200)
  jobs; ``leaked`` must be 0.

``--network default`` gives every job the job network (its own bridge ``ephbench0``, nft
table and subnet ``--subnet``, so it meets no other ephemerd on the host); the default
``none`` measures the sandbox alone.

``--runtime NAME`` (an OCI runtime binary with runc's command line) replaces the
backend's default, ``runc``, for comparisons.

Usage: ``python bench/sandbox.py [--runs 30] [--sequential 200] [--network none|default]
[--subnet 10.234.0.0/22] [--runtime NAME] [--data-dir DIR]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import trio

from ephemerd._proto.containerd.services.containers import v1 as containers_v1
from ephemerd._proto.containerd.services.leases import v1 as leases_v1
from ephemerd._proto.containerd.services.snapshots import v1 as snapshots_v1
from ephemerd.capabilities import SandboxSpec
from ephemerd.sandbox import (
    HOST_IMAGE,
    ContainerdClient,
    ContainerdSandbox,
    ImageStore,
    build_host_image,
    open_containerd,
    open_job_network,
    open_sandbox_backend,
)
from ephemerd.sandbox._spec import build_process, build_spec

_counter = 0
_network = "none"


def _name(prefix: str) -> str:
    global _counter  # noqa: PLW0603
    _counter += 1
    return f"bench-{prefix}-{_counter}"


async def trivial_job(backend: ContainerdSandbox) -> float:
    started = time.perf_counter()
    handle = await backend.create(
        SandboxSpec(name=_name("job"), image=HOST_IMAGE, argv=("true",), network=_network)
    )
    try:
        await handle.start()
        outcome = await handle.wait()
        assert outcome.succeeded, outcome
    finally:
        await handle.destroy()
    return time.perf_counter() - started


def _lines(argv: list[str]) -> list[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.stdout.splitlines()


def _entries(directory: Path) -> int:
    return len(list(directory.iterdir())) if directory.is_dir() else 0


def host_counts(data_dir: Path) -> dict[str, int]:
    """What jobs leave on the host: claims, runc states, bundles, namespaces, bridge ports,
    nft rules."""
    return {
        "claims": _entries(data_dir / "run" / "sandboxes"),
        "runc_states": _entries(data_dir / "run" / "runc"),
        "bundles": _entries(data_dir / "run" / "bundles"),
        "netns": len(list(Path("/run/netns").glob("ephbench-*"))),
        "bridge_ports": len(_lines(["ip", "-o", "link", "show", "master", "ephbench0"])),
        "nft_rules": sum(
            "handle" in line for line in _lines(["nft", "-a", "list", "table", "inet", "ephbench"])
        ),
    }


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


async def runc_floor(client: ContainerdClient, chain_id: str, work: Path, runs: int) -> list[float]:
    """``runc run`` of ``true`` in the image's rootfs (an overlay of the same snapshot)."""
    key = _name("runc-rootfs")
    await client.call(client.leases.create, leases_v1.CreateRequest(id=key))  # keeps it from GC
    prepared = await client.call(
        client.snapshots.prepare,
        snapshots_v1.PrepareSnapshotRequest(snapshotter="overlayfs", key=key, parent=chain_id),
        lease=key,
    )
    bundle = work / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    mount = prepared.mounts[0]
    await trio.run_process(
        ["mount", "-t", mount.type, mount.source, "-o", ",".join(mount.options), str(rootfs)]
    )
    try:
        times: list[float] = []
        for _ in range(runs):
            name = _name("runc")
            spec = build_spec(
                name=name,
                process=build_process(["true"], env={"PATH": "/bin"}, cwd="/"),
                hostname=name,
                limits=SandboxSpec(name="x", image="x").limits,
            )
            (bundle / "config.json").write_bytes(msgspec.json.encode(spec))
            started = time.perf_counter()
            await trio.run_process(
                ["runc", "run", "--bundle", str(bundle), name], stdin=subprocess.DEVNULL
            )
            times.append(time.perf_counter() - started)
        return times
    finally:
        await trio.run_process(["umount", str(rootfs)], check=False)
        await client.call(
            client.snapshots.remove,
            snapshots_v1.RemoveSnapshotRequest(snapshotter="overlayfs", key=key),
        )
        await client.call(client.leases.delete, leases_v1.DeleteRequest(id=key))


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered) * 1000, 1),
        "p90": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 1),
        "min": round(ordered[0] * 1000, 1),
    }


async def main(
    runs: int, sequential: int, data_dir: Path, network: str, subnet: str, runtime: str | None
) -> dict[str, object]:
    global _network  # noqa: PLW0603
    _network = network
    result: dict[str, object] = {"network": network}
    async with contextlib.AsyncExitStack() as stack:
        net = None
        if network != "none":
            net = await stack.enter_async_context(
                open_job_network(data_dir=data_dir, subnet=subnet, name="ephbench")
            )
        client = await stack.enter_async_context(open_containerd(data_dir=data_dir))
        assert client.embedded is not None
        result["containerd_ready_s"] = round(client.embedded.ready_seconds, 3)
        images = ImageStore(client)
        image = await build_host_image(images, work_dir=data_dir / "tmp")
        backend = await stack.enter_async_context(
            open_sandbox_backend(
                client, data_dir=data_dir, images=images, network=net, runtime=runtime
            )
        )
        result["runtime"] = backend.runtime
        await trivial_job(backend)  # warm up: the page cache
        jobs = [await trivial_job(backend) for _ in range(runs)]
        floor = await runc_floor(client, image.chain_id, data_dir / "runc", runs)
        result["trivial_job_ms"] = _ms(jobs)
        result["runc_floor_ms"] = _ms(floor)
        result["ratio"] = round(statistics.median(jobs) / statistics.median(floor), 2)

        rounds: list[float] = []
        for _ in range(5):
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(trivial_job, backend)
            rounds.append(time.perf_counter() - started)
        result["concurrent_20_rounds_s"] = [round(r, 3) for r in rounds]
        result["concurrent_20_s"] = round(statistics.median(rounds), 3)

        before = await counts(client) | host_counts(data_dir)
        for _ in range(sequential):
            await trivial_job(backend)
        after = await counts(client) | host_counts(data_dir)
        result["leak_check"] = {
            "jobs": sequential,
            "before": before,
            "after": after,
            "leaked": sum(after.values()) - sum(before.values()),
        }
    result["targets_met"] = {
        "ready": result["containerd_ready_s"] <= 1.0,  # type: ignore[operator]
        "trivial": result["trivial_job_ms"]["median"] <= 110,  # type: ignore[index]
        "ratio": result["ratio"] <= 3.5,  # type: ignore[operator]
        "concurrent": result["concurrent_20_s"] <= 1.5,  # type: ignore[operator]
        "no_leaks": result["leak_check"]["leaked"] == 0,  # type: ignore[index]
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--network", choices=("none", "default"), default="none")
    parser.add_argument("--subnet", default="10.234.0.0/22")
    parser.add_argument("--runtime", default=None, help="an OCI runtime binary (default: runc)")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("containerd") is None:
        sys.exit("containerd not found: install the Debian package 'containerd'")
    tmp = None if args.data_dir else tempfile.mkdtemp(prefix="ephemerd-bench-")
    try:
        data = args.data_dir or Path(tmp or "")
        print(
            json.dumps(
                trio.run(
                    main,
                    args.runs,
                    args.sequential,
                    data,
                    args.network,
                    args.subnet,
                    args.runtime,
                ),
                indent=2,
            )
        )
    finally:
        if tmp:
            subprocess.run(["umount", "-l", f"{tmp}/run/files"], check=False, capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)
