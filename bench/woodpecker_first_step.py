"""Woodpecker: workflow queued on the server → its first step running in its sandbox.

Runs the fake Woodpecker server (gRPC on loopback), the real scheduler and the Woodpecker
provider with the in-memory sandbox, then queues ``--rounds`` one-step workflows one after
the other. For each, the latency is from ``enqueue`` on the server to the server receiving
the first step's "started" ``Update``, which the agent sends right before it ``exec``s the
step in the sandbox: the whole path Next → JobEvent → admission → claim → sandbox create and
start → Init → Update. Prints JSON (milliseconds).

With ``--sandbox containerd`` (root) the sandboxes are real: an embedded containerd, the
busybox host image, no network; each step is a ``true`` shell script.

    python bench/woodpecker_first_step.py [--rounds 50] [--sandbox memory|containerd]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ephemerd.capabilities import SandboxBackend
from ephemerd.forges.woodpecker import WoodpeckerOptions, open_woodpecker_provider
from ephemerd.sandbox import (
    HOST_IMAGE,
    ImageStore,
    build_host_image,
    open_containerd,
    open_sandbox_backend,
)
from ephemerd.scheduler import HostLabels, Journal, Scheduler, SchedulerOptions
from ephemerd.testing import MemorySandbox
from tests.fakes.woodpecker import open_fake_woodpecker

SECRET = "bench-agent-secret"


def _payload(n: int, *, real: bool) -> bytes:
    step: dict[str, object] = {
        "name": "build",
        "uuid": f"step-{n}",
        "type": "commands",
        "image": HOST_IMAGE if real else "alpine:3",
        "on_success": True,
        "environment": {"CI_REPO": "bench/app", "CI_PIPELINE_NUMBER": str(n)},
    }
    if real:
        step["commands"] = ["true"]
    else:
        step["entrypoint"] = ["exit", "0"]
    return msgspec.json.encode({"pipeline": [{"steps": [step]}]})


@asynccontextmanager
async def _sandbox(kind: str, data_dir: Path) -> AsyncGenerator[SandboxBackend]:
    if kind == "memory":
        yield MemorySandbox(log_dir=data_dir / "logs")
        return
    async with open_containerd(data_dir=data_dir) as client:
        images = ImageStore(client)
        await build_host_image(images, work_dir=data_dir / "tmp")
        async with open_sandbox_backend(client, data_dir=data_dir, images=images) as backend:
            yield backend


async def main(rounds: int, concurrency: int, sandbox: str) -> dict[str, object]:
    latencies: list[float] = []
    real = sandbox == "containerd"
    with tempfile.TemporaryDirectory(prefix="ephemerd-bench-") as tmp:
        tmp_path = Path(tmp)
        async with (
            _sandbox(sandbox, tmp_path / "sandbox") as backend,
            open_fake_woodpecker(agent_secret=SECRET) as fake,
        ):
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
                        sandbox=backend,
                        journal=journal,
                        options=SchedulerOptions(
                            max_concurrent=concurrency,
                            labels=HostLabels(),
                            keepalive_argv=("sleep", "3600"),
                            network="none",
                        ),
                        rng=random.Random(7),
                    )
                    async with trio.open_nursery() as nursery:
                        await nursery.start(scheduler.run)
                        await fake.state.wait_polling(concurrency)
                        for n in range(rounds):
                            began = time.perf_counter()
                            fake.state.enqueue(str(1000 + n), _payload(n, real=real))
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
        "sandbox": sandbox,
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
    parser.add_argument("--sandbox", choices=("memory", "containerd"), default="memory")
    args = parser.parse_args()
    print(json.dumps(trio.run(main, args.rounds, args.concurrency, args.sandbox)))
