"""GitHub without webhooks: job queued → runner process started in its sandbox, by polling.

The same setup as ``github_pickup.py`` (fake GitHub, real ``ephemerd serve``, stand-in
runners in real containerd sandboxes), but no hook is configured on the fake: the daemon
finds each job only by polling, every ``--interval`` seconds (1 s, the minimum). Jobs are
queued one at a time; the latency runs from the moment the job exists on the fake to the
stand-in's first statement in its sandbox. About half an interval of it is the poll phase.
Prints JSON (milliseconds).

    python bench/github_poll_pickup.py [--jobs 10] [--interval 1s]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.harness import (
    GATEWAY,
    TOKEN,
    build_standin_image,
    free_port,
    open_daemon,
    write_config,
)
from tests.fakes.github import open_fake_github

REPO = "acme/app"
LABELS = ["self-hosted", "linux"]


async def _pickup(data_dir: Path, jobs: int, interval: str) -> list[float]:
    latencies: list[float] = []
    async with open_fake_github() as gh:
        gh.world.tokens.add(TOKEN)
        gh.world.add_repo(REPO)
        api_port = int(gh.url.rsplit(":", 1)[1])
        gh.world.runner_url = f"http://{GATEWAY}:{api_port}"
        write_config(data_dir, api_port=api_port, webhook_port=free_port(), poll_interval=interval)
        async with open_daemon(data_dir) as daemon:
            try:
                with trio.fail_after(60 + 10 * jobs):
                    for i in range(jobs):
                        queued = time.time()
                        run = gh.world.add_run(REPO, [(f"poll-{i}", LABELS)])
                        gh.app.jobs_queued()
                        job = run.jobs[0]
                        await gh.app.wait_until(lambda job=job: job.status == "completed")
                        latencies.append(gh.world.runner_starts[job.runner_name or ""] - queued)
                    await gh.app.wait_until(lambda: not gh.world.live_runners())
            except trio.TooSlowError:
                print(daemon.log(), file=sys.stderr)
                raise
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--interval", default="1s")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        print("github_poll_pickup: needs root and containerd", file=sys.stderr)
        return 2
    data_dir = Path(tempfile.mkdtemp(prefix="ephemerd-bench-ghpoll-"))
    try:
        build_standin_image(data_dir)
        latencies = trio.run(_pickup, data_dir, args.jobs, args.interval)
    finally:
        subprocess.run(["umount", "-l", str(data_dir / "run" / "files")], check=False)
        shutil.rmtree(data_dir, ignore_errors=True)
    ordered = sorted(latencies)
    print(
        json.dumps(
            {
                "benchmark": "github_poll_pickup",
                "jobs": args.jobs,
                "poll_interval": args.interval,
                "median_ms": round(statistics.median(ordered) * 1000, 1),
                "min_ms": round(ordered[0] * 1000, 1),
                "max_ms": round(ordered[-1] * 1000, 1),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
