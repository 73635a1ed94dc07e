"""How long `ephemerd status` takes against a running control server, beside the floor.

Starts the test suite's fake daemon (a real control server on a unix socket), then runs
`ephemerd status` and `python -c pass` alternately N times each, and prints JSON:
median and p90 wall times in milliseconds and the median overhead over the floor.

    python bench/status_latency.py [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATUS = "import sys; from ephemerd.cli import main; sys.exit(main())"  # = the console script


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return (time.perf_counter() - start) * 1000


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ephemerd-bench-") as tmp:
        sock = Path(tmp) / "ephemerd.sock"
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.control.fake_daemon", "--socket", str(sock)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != "ready":
                sys.exit("fake daemon did not start")
            status_argv = [sys.executable, "-c", STATUS, "--data-dir", tmp, "status"]
            floor_argv = [sys.executable, "-c", "pass"]
            _wall(status_argv)  # warm the page cache and .pyc files
            status_ms: list[float] = []
            floor_ms: list[float] = []
            for _ in range(args.runs):
                floor_ms.append(_wall(floor_argv))
                status_ms.append(_wall(status_argv))
        finally:
            server.terminate()
            server.wait(10)
    status_median = statistics.median(status_ms)
    floor_median = statistics.median(floor_ms)
    print(
        json.dumps(
            {
                "benchmark": "status_latency",
                "runs": args.runs,
                "status_median_ms": round(status_median, 1),
                "status_p90_ms": round(_p90(status_ms), 1),
                "floor_median_ms": round(floor_median, 1),
                "floor_p90_ms": round(_p90(floor_ms), 1),
                "overhead_median_ms": round(status_median - floor_median, 1),
                "target_overhead_ms": 150,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
