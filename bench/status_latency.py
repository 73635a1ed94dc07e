"""How long `ephemerd status` takes against a running control server, beside the floor.

Starts the test suite's fake daemon (a real control server on a unix socket), then runs
`ephemerd status` and `python -c pass` alternately N times each, and prints JSON:
median, minimum and p90 wall times in milliseconds, the median overhead over the floor,
and the median CPU time (user + sys) of each and their difference, which other load on
the host disturbs less. The daemon's own CPU time is not in either figure.

Both commands run with a bytecode cache (in a temporary ``PYTHONPYCACHEPREFIX``), as an
installed package has one, even where ``PYTHONDONTWRITEBYTECODE`` is set; without it,
every run also compiles ephemerd's modules. ``--no-bytecode-cache`` measures that case.

    python bench/status_latency.py [--runs 30] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATUS = "import sys; from ephemerd.cli import main; sys.exit(main())"  # = the console script


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # children waited for so far
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run of *argv*."""
    cpu = _cpu()
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT, env=env)
    return (time.perf_counter() - start) * 1000, (_cpu() - cpu) * 1000


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-bytecode-cache", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ephemerd-bench-") as tmp:
        env = dict(os.environ)
        if not args.no_bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
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
            _run(floor_argv, env)  # warm the page cache and the bytecode cache
            _run(status_argv, env)
            status_ms: list[float] = []
            floor_ms: list[float] = []
            status_cpu: list[float] = []
            floor_cpu: list[float] = []
            for _ in range(args.runs):
                wall, cpu = _run(floor_argv, env)
                floor_ms.append(wall)
                floor_cpu.append(cpu)
                wall, cpu = _run(status_argv, env)
                status_ms.append(wall)
                status_cpu.append(cpu)
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
                "bytecode_cache": not args.no_bytecode_cache,
                "status_median_ms": round(status_median, 1),
                "status_min_ms": round(min(status_ms), 1),
                "status_p90_ms": round(_p90(status_ms), 1),
                "floor_median_ms": round(floor_median, 1),
                "floor_min_ms": round(min(floor_ms), 1),
                "floor_p90_ms": round(_p90(floor_ms), 1),
                "overhead_median_ms": round(status_median - floor_median, 1),
                "overhead_min_ms": round(min(status_ms) - min(floor_ms), 1),
                "status_cpu_median_ms": round(statistics.median(status_cpu), 1),
                "floor_cpu_median_ms": round(statistics.median(floor_cpu), 1),
                "overhead_cpu_median_ms": round(
                    statistics.median(status_cpu) - statistics.median(floor_cpu), 1
                ),
                "target_status_median_ms": 150,
                "target_overhead_ms": 35,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
