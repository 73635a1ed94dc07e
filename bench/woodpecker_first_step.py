"""Woodpecker: workflow queued on the server → its first step running in its sandbox.

Runs the fake Woodpecker server (gRPC on loopback), the real scheduler and the Woodpecker
provider with the in-memory sandbox, then queues ``--rounds`` one-step workflows one after
the other. For each, the latency is from ``enqueue`` on the server to the server receiving
the first step's "started" ``Update``, which the agent sends right before it ``exec``s the
step in the sandbox: the whole path Next → JobEvent → admission → claim → sandbox create and
start → Init → Update. Prints JSON (milliseconds).

    python bench/woodpecker_first_step.py [--rounds 50]
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

import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ephemerd.forges.woodpecker import WoodpeckerOptions, open_woodpecker_provider
from ephemerd.scheduler import HostLabels, Journal, Scheduler, SchedulerOptions
from ephemerd.testing import MemorySandbox
from tests.fakes.woodpecker import open_fake_woodpecker

SECRET = "bench-agent-secret"


def _payload(n: int) -> bytes:
    step = {
        "name": "build",
        "uuid": f"step-{n}",
        "type": "commands",
        "image": "alpine:3",
        "on_success": True,
        "entrypoint": ["exit", "0"],
        "environment": {"CI_REPO": "bench/app", "CI_PIPELINE_NUMBER": str(n)},
    }
    return msgspec.json.encode({"pipeline": [{"steps": [step]}]})


async def main(rounds: int, concurrency: int) -> dict[str, object]:
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ephemerd-bench-") as tmp:
        tmp_path = Path(tmp)
        async with open_fake_woodpecker(agent_secret=SECRET) as fake:
            options = WoodpeckerOptions(
                name="wp",
                server=fake.address,
                agent_secret=SECRET,
                state_dir=tmp_path,
                max_concurrent=concurrency,
                hostname="bench",
                log_flush_interval=0.05,
            )
            journal = Journal(tmp_path / "journal.sqlite")
            try:
                async with open_woodpecker_provider(options) as provider:
                    scheduler = Scheduler(
                        providers=[provider],
                        sandbox=MemorySandbox(log_dir=tmp_path / "logs"),
                        journal=journal,
                        options=SchedulerOptions(
                            max_concurrent=concurrency, labels=HostLabels(), poll_interval=5.0
                        ),
                        rng=random.Random(7),
                    )
                    async with trio.open_nursery() as nursery:
                        await nursery.start(scheduler.run)
                        await fake.state.wait_polling(concurrency)
                        for n in range(rounds):
                            began = time.perf_counter()
                            fake.state.enqueue(str(1000 + n), _payload(n))
                            await fake.state.wait_step_started(f"step-{n}")
                            latencies.append((time.perf_counter() - began) * 1000)
                            await fake.state.wait_done(str(1000 + n))
                            await fake.state.wait_polling(concurrency)
                        nursery.cancel_scope.cancel()
            finally:
                journal.close()
    ordered = sorted(latencies)
    return {
        "benchmark": "woodpecker_queued_to_first_step",
        "sandbox": "memory",
        "rounds": rounds,
        "median_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1], 2),
        "min_ms": round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(trio.run(main, args.rounds, args.concurrency)))
