"""Jobs per minute through a real daemon with real sandboxes, at max_concurrent 8.

``ephemerd serve`` (memory provider, containerd backend, job network ``none``) is handed
``--jobs`` trivial jobs (``true``) in one delivery; the figure is jobs finished per minute,
from the delivery to the last job counted finished in ``/metrics``. The floor, measured in
the same run on the same containerd image: the same number of ``true`` sandboxes created,
run and destroyed straight through the sandbox backend, 8 at a time, with no daemon, forge
or scheduler in between. Prints JSON.

    python bench/jobs_per_minute.py [--jobs 120] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _daemon import IMAGE, bench_daemon, build_image

from ephemerd.capabilities import SandboxSpec
from ephemerd.sandbox import ImageStore, open_containerd, open_sandbox_backend


def through_daemon(data_dir: Path, jobs: int, concurrency: int) -> tuple[float, int]:
    with bench_daemon(data_dir, max_concurrent=concurrency) as daemon:
        daemon.submit([("warm", ["true"])])  # the page cache
        daemon.wait("warm-up job", lambda: daemon.finished() >= 1, timeout=60)
        started = time.perf_counter()
        daemon.submit([(f"j{i}", ["true"]) for i in range(jobs)])
        daemon.wait("all jobs", lambda: daemon.finished() >= jobs + 1, timeout=30 + 5 * jobs)
        elapsed = time.perf_counter() - started
        return elapsed, daemon.failed()


async def floor(data_dir: Path, jobs: int, concurrency: int) -> float:
    async with open_containerd(data_dir=data_dir) as client:
        images = ImageStore(client)
        async with open_sandbox_backend(client, data_dir=data_dir, images=images) as backend:
            limit = trio.CapacityLimiter(concurrency)

            async def one(name: str) -> None:
                async with limit:
                    spec = SandboxSpec(name=name, image=IMAGE, argv=("true",), network="none")
                    handle = await backend.create(spec)
                    try:
                        await handle.start()
                        await handle.wait()
                    finally:
                        await handle.destroy()

            await one("floor-warm")
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for i in range(jobs):
                    nursery.start_soon(one, f"floor-{i}")
            return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("jobs_per_minute: needs root and containerd", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ephemerd-bench-jpm-") as tmp:
        data_dir = Path(tmp)
        build_image(data_dir)
        elapsed, failed = through_daemon(data_dir, args.jobs, args.concurrency)
        floor_s = trio.run(floor, data_dir, args.jobs, args.concurrency)
    per_minute = args.jobs / elapsed * 60
    floor_per_minute = args.jobs / floor_s * 60
    print(
        json.dumps(
            {
                "benchmark": "jobs_per_minute",
                "jobs": args.jobs,
                "max_concurrent": args.concurrency,
                "failed_jobs": failed,
                "seconds": round(elapsed, 2),
                "jobs_per_minute": round(per_minute, 1),
                "floor_seconds": round(floor_s, 2),
                "floor_jobs_per_minute": round(floor_per_minute, 1),
                "slowdown_vs_floor": round(floor_per_minute / per_minute, 2),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
