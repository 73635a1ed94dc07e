"""GitHub: webhook delivery → runner process started in its sandbox; and idle poll cost.

Part one (root, containerd): the fake GitHub, a real ``ephemerd serve`` subprocess and
real containerd sandboxes running the stand-in runner of ``tests/e2e`` (see its
``harness``). Jobs are queued one at a time; for each, the latency runs from the moment
the fake starts POSTing the signed ``queued`` delivery to the daemon's intake to the
first statement of the stand-in's process in its sandbox (it reports ``time.time()``,
taken before any import, when it connects; sandbox and host share the clock). That is
the whole path: intake → scheduler → JIT config → sandbox create/start → exec.

Part two (no root): one GitHub provider polling ``--repos`` repositories of the fake,
nothing queued. The first cycle fetches everything; later cycles send ``If-None-Match``
and get 304s, which cost no primary quota.

    python bench/github_pickup.py [--jobs 20] [--repos 50] [--cycles 5] [--no-sandbox]

Prints JSON (milliseconds). Target: pickup median ≤ 300 ms on loopback.
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

from ephemerd.capabilities import JobEvent
from ephemerd.forges.github import GitHubOptions, open_github_provider
from tests.e2e.harness import (
    GATEWAY,
    INSTANCE,
    SECRET,
    TOKEN,
    build_standin_image,
    free_port,
    open_daemon,
    write_config,
)
from tests.fakes.github import open_fake_github

REPO = "acme/app"
LABELS = ["self-hosted", "linux"]


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
        "min_ms": round(ordered[0] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def _pickup(data_dir: Path, jobs: int) -> dict[str, object]:
    latencies: list[float] = []
    to_claim: list[float] = []
    async with open_fake_github() as gh:
        gh.world.tokens.add(TOKEN)
        gh.world.add_repo(REPO)
        api_port = int(gh.url.rsplit(":", 1)[1])
        gh.world.runner_url = f"http://{GATEWAY}:{api_port}"
        webhook_port = free_port()
        hook_url = f"http://127.0.0.1:{webhook_port}/webhook/{INSTANCE}"
        gh.world.create_hook(f"repos/{REPO}", hook_url, SECRET, ["workflow_job"])
        write_config(data_dir, api_port=api_port, webhook_port=webhook_port)
        async with open_daemon(data_dir) as daemon:
            try:
                with trio.fail_after(30 + 5 * jobs):
                    for i in range(jobs):
                        run = await gh.queue(REPO, [(f"bench-{i}", LABELS)])
                        job = run.jobs[0]
                        await gh.app.wait_until(lambda job=job: job.status == "completed")
                        started = gh.world.runner_starts[job.runner_name or ""]
                        delivered = gh.delivered[(job.id, "queued")]
                        latencies.append(started - delivered)
                        claims = [r.at for r in gh.requests if "generate-jitconfig" in r.path]
                        to_claim.append(claims[-1] - delivered)
                    await gh.app.wait_until(lambda: not gh.world.live_runners())
            except trio.TooSlowError:
                print(daemon.log(), file=sys.stderr)
                raise
        failed = daemon.count("failed exit code") + daemon.count("crashed")
    return {
        "jobs": jobs,
        "failed_jobs": failed,
        **_ms(latencies),
        "delivery_to_jit_request_median_ms": round(statistics.median(to_claim) * 1000, 1),
    }


async def _poll(repos: int, cycles: int) -> dict[str, object]:
    names = tuple(f"app{i:02d}" for i in range(repos))
    async with open_fake_github() as gh:
        gh.world.tokens.add(TOKEN)
        for name in names:
            gh.world.add_repo(f"acme/{name}")
        options = GitHubOptions(
            name=INSTANCE, owner="acme", repos=names, token=TOKEN, api_url=gh.url
        )
        async with open_github_provider(options) as provider:
            send, receive = trio.open_memory_channel[JobEvent](1000)
            per_cycle: list[tuple[int, int, int]] = []
            async with send, receive:
                for _ in range(cycles + 1):
                    before, quota = len(gh.requests), gh.world.rate_remaining
                    await provider._poller.poll_once(send)  # pyright: ignore[reportPrivateUsage]
                    cycle = gh.requests[before:]
                    not_modified = sum(1 for r in cycle if r.status == 304)
                    per_cycle.append((len(cycle), not_modified, quota - gh.world.rate_remaining))
    first, idle = per_cycle[0], per_cycle[1:]
    return {
        "repos": repos,
        "first_cycle_requests": first[0],
        "idle_cycle_requests": max(c[0] for c in idle),
        "idle_cycle_304s": min(c[1] for c in idle),
        "idle_cycle_quota_used": max(c[2] for c in idle),
        "idle_cycles": len(idle),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--no-sandbox", action="store_true", help="only the poll part")
    args = parser.parse_args()
    result: dict[str, object] = {"benchmark": "github_pickup"}
    if not args.no_sandbox:
        if os.geteuid() != 0 or shutil.which("containerd") is None:
            print("github_pickup: the pickup part needs root and containerd", file=sys.stderr)
            return 2
        data_dir = Path(tempfile.mkdtemp(prefix="ephemerd-bench-github-"))
        try:
            began = time.monotonic()
            build_standin_image(data_dir)
            result["image_build_ms"] = round((time.monotonic() - began) * 1000, 1)
            result["pickup"] = trio.run(_pickup, data_dir, args.jobs)
        finally:
            subprocess.run(["umount", "-l", str(data_dir / "run" / "files")], check=False)
            shutil.rmtree(data_dir, ignore_errors=True)
    result["poll"] = trio.run(_poll, args.repos, args.cycles)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
