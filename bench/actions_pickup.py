"""Forgejo/Gitea: job visible on the forge → the runner in its sandbox started / got the job.

Per server flavour (one per claim model): the fake forge, a real ``ephemerd serve``
subprocess and real containerd sandboxes running the stand-in runner of
``tests/e2e/actions_runner`` (the same setup as ``tests/e2e/test_actions_e2e.py``). Jobs
are queued one at a time; for each, two latencies from the moment the job is added:

* ``runner_start``: the stand-in process started in the job's sandbox (models that start
  a runner per job; the warm pool's runner was started before the job existed);
* ``fetched``: the runner fetched the job's task (the forge assigned it).

Discovery polls every second (the minimum), so about half a second of each figure is
the poll phase; a warm-pool runner is already waiting and polls at the runner config's
``fetch_interval`` (2 s), so its ``fetched`` is that poll phase. Needs root and containerd. Prints JSON (milliseconds).

    python bench/actions_pickup.py [--rounds 5] [--flavours gitea-1.20,gitea-1.26,forgejo-15]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ephemerd.sandbox import ImageStore, open_containerd
from tests.e2e.actions_helpers import (
    build_standin_image_into,
    start_daemon,
    unmount_files,
    write_config,
)
from tests.fakes.forgejo import World, open_fake_forge

API_TOKEN = "pat-bench-0123456789"
MODELS = {
    "gitea-1.20": "warm-pool",
    "gitea-1.26": "registered",
    "forgejo-14": "registered",
    "forgejo-15": "handle",
}


def _started(world: World) -> int:
    return sum(1 for report in world.standin_reports if report["event"] == "started")


def _median_ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1000, 1) if values else None


async def _flavour(flavour: str, rounds: int, address: str, data_dir: Path) -> dict[str, object]:
    starts: list[float] = []
    rng = random.Random(13)
    fetches: list[float] = []
    async with open_fake_forge(flavour) as forge:
        world = forge.world
        world.api_tokens.add(API_TOKEN)
        write_config(
            data_dir,
            kind=world.flavour.kind,
            port=int(forge.url.rsplit(":", 1)[1]),
            registration_token=world.add_registration_token("/repos/acme/app"),
            api_token=API_TOKEN,
            containerd_address=address,
            max_concurrent=2,
        )
        async with trio.open_nursery() as nursery:
            daemon = await start_daemon(nursery, data_dir)
            try:
                for n in range(rounds):
                    if MODELS[flavour] == "warm-pool":  # a warm runner waits: measure that
                        with trio.fail_after(60):
                            await world.wait_until(lambda: _started(world) > n)  # noqa: B023
                            picks = world.picks  # and has polled once already
                            await world.wait_until(lambda: world.picks > picks)  # noqa: B023
                        await trio.sleep(rng.uniform(0, 2.0))  # a random phase of its polling
                    added = time.time()
                    job = world.add_job("acme/app", ["ubuntu-latest"], name=f"bench-{n}")
                    with trio.fail_after(60):
                        await world.wait_until(lambda: job.status == "success")  # noqa: B023
                    task = world.tasks[job.task_id]
                    fetches.append(task.fetched_at - added)
                    runner = world.runners[task.runner_id]
                    started = [
                        float(str(r["started"]))
                        for r in world.standin_reports
                        if r["uuid"] == runner.uuid and r["event"] == "started"
                    ]
                    if started and started[0] >= added:
                        starts.append(started[0] - added)
            except BaseException:
                print(daemon.log, file=sys.stderr)
                for path in sorted((data_dir / "logs").rglob("*")):
                    if path.is_file():
                        print(
                            f"--- {path.name}\n{path.read_text(errors='replace')}", file=sys.stderr
                        )
                raise
            finally:
                await daemon.stop()
                unmount_files(data_dir)
            nursery.cancel_scope.cancel()
    return {
        "flavour": flavour,
        "claim_model": MODELS[flavour],
        "rounds": rounds,
        "runner_start_median_ms": _median_ms(starts),
        "fetched_median_ms": _median_ms(fetches),
        "fetched_max_ms": round(max(fetches) * 1000, 1),
    }


async def main(rounds: int, flavours: list[str]) -> dict[str, object]:
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="ephemerd-bench-") as tmp:
        base = Path(tmp)
        async with open_containerd(data_dir=base / "cd") as client:
            await build_standin_image_into(ImageStore(client), work_dir=base / "tmp")
            for flavour in flavours:
                data_dir = base / flavour
                data_dir.mkdir()
                results.append(await _flavour(flavour, rounds, client.address, data_dir))
        unmount_files(base / "cd")
    return {"benchmark": "actions_pickup", "poll_interval_s": 1.0, "results": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--flavours", default="gitea-1.20,gitea-1.26,forgejo-15")
    args = parser.parse_args()
    chosen = [f.strip() for f in args.flavours.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in MODELS]
    if unknown:
        parser.error(f"unknown flavour(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    print(json.dumps(trio.run(main, args.rounds, chosen)))
