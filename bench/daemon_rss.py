"""Daemon memory: RSS of ``ephemerd serve`` idle and with 8 jobs running in real sandboxes.

The daemon runs the memory provider on the containerd backend (see ``_daemon.py``). Idle:
after it answers ``/healthz`` and has run one job (every code path a job takes is
imported). Busy: while ``/healthz`` reports 8 active jobs, each a sandbox running
``sleep``. The daemon's own RSS is the figure; its embedded containerd and the runc
process of each running sandbox are reported beside it. The floor: RSS of a bare ``python -c`` that imports trio and waits.
Prints JSON (MiB).

    python bench/daemon_rss.py [--jobs 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _daemon import bench_daemon, build_image, containerd_rss_mib, rss_mib, runc_rss_mib


def python_floor() -> float:
    probe = subprocess.Popen(
        [sys.executable, "-c", "import sys, trio; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert probe.stdout is not None
        probe.stdout.readline()
        return rss_mib(probe.pid)
    finally:
        probe.communicate("")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("daemon_rss: needs root and containerd", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ephemerd-bench-rss-") as tmp:
        data_dir = Path(tmp)
        build_image(data_dir)
        with bench_daemon(data_dir, max_concurrent=args.jobs) as daemon:
            pid = daemon.process.pid
            daemon.submit([("warm", ["true"])])
            daemon.wait("warm-up job", lambda: daemon.finished() >= 1, timeout=60)
            time.sleep(1.0)  # let the finished job's teardown settle
            idle, idle_containerd = rss_mib(pid), containerd_rss_mib(data_dir)
            daemon.submit([(f"s{i}", ["sleep", "600"]) for i in range(args.jobs)])
            daemon.wait(
                f"{args.jobs} running jobs", lambda: daemon.active() >= args.jobs, timeout=120
            )
            daemon.wait(
                f"{args.jobs} sandboxes running",
                lambda: runc_rss_mib(data_dir)[0] >= args.jobs,
                timeout=120,
            )
            busy, busy_containerd = rss_mib(pid), containerd_rss_mib(data_dir)
            runc, runc_mib = runc_rss_mib(data_dir)
    floor = python_floor()
    print(
        json.dumps(
            {
                "benchmark": "daemon_rss",
                "jobs": args.jobs,
                "idle_mib": round(idle, 1),
                "busy_mib": round(busy, 1),
                "containerd_idle_mib": round(idle_containerd, 1),
                "containerd_busy_mib": round(busy_containerd, 1),
                "runc_busy": runc,
                "runc_busy_mib": round(runc_mib, 1),
                "floor_python_trio_mib": round(floor, 1),
                "idle_ratio": round(idle / floor, 2),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
