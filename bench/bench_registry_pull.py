"""Pull throughput from a real registry on loopback (Debian's docker-registry).

Pushes one image with a layer of ``--mib`` random MiB, then pulls it ``--rounds`` times
into an in-memory sink (every blob verified while streaming). Prints JSON.

    python bench/bench_registry_pull.py --mib 64 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ephemerd.sandbox._oci import Platform
from ephemerd.sandbox._registry import open_registry_client
from tests.fakes.oci_images import MemorySink, build_image
from tests.fakes.registry import push_image, run_registry


async def main(mib: int, rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, run_registry(Path(tmp)) as registry:
        image = build_image([{"blob": os.urandom(mib << 20)}])
        await push_image(registry.url, "bench/img", "v1", image)
        ref = f"{registry.host}/bench/img:v1"
        times: list[float] = []
        async with open_registry_client(platform=Platform(architecture="amd64")) as client:
            for _ in range(rounds):
                sink = MemorySink()
                start = time.perf_counter()
                await client.pull(ref, sink)
                times.append(time.perf_counter() - start)
        size = sum(len(layer.blob) for layer in image.layers)
        median = statistics.median(times)
        return {
            "bench": "registry_pull",
            "layer_bytes": size,
            "rounds": rounds,
            "median_s": round(median, 4),
            "min_s": round(min(times), 4),
            "mib_per_s": round(size / (1 << 20) / median, 1),
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(trio.run(main, args.mib, args.rounds)))
