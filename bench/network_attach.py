"""Benchmark: job network attach/detach latency (real netns, CNI and nftables; needs root).

Prints one JSON object. Run: ``python bench/network_attach.py [--cycles N] [--parallel N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import trio

from ephemerd.sandbox import open_job_network


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def main(cycles: int, parallel: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        async with open_job_network(
            data_dir=Path(tmp), subnet="10.233.0.0/22", name="ephbench"
        ) as net:
            opened = time.perf_counter() - t0
            attach: list[float] = []
            detach: list[float] = []
            for i in range(cycles):
                t = time.perf_counter()
                await net.attach(f"b{i}")
                attach.append(time.perf_counter() - t)
                t = time.perf_counter()
                await net.detach(f"b{i}")
                detach.append(time.perf_counter() - t)
            t = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for i in range(parallel):
                    nursery.start_soon(net.attach, f"p{i}")
            parallel_attach = time.perf_counter() - t
            t = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for i in range(parallel):
                    nursery.start_soon(net.detach, f"p{i}")
            parallel_detach = time.perf_counter() - t
            t = time.perf_counter()
        closed = time.perf_counter() - t
    return {
        "benchmark": "network_attach",
        "cycles": cycles,
        "open_ms": round(opened * 1000, 1),
        "attach": _ms(attach),
        "detach": _ms(detach),
        "parallel": parallel,
        "parallel_attach_s": round(parallel_attach, 3),
        "parallel_detach_s": round(parallel_detach, 3),
        "close_ms": round(closed * 1000, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(trio.run(main, args.cycles, args.parallel)))
