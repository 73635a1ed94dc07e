"""Forgejo/Gitea: job visible on the forge -> its runner holding the task, per claim model.

Runs the fake forge on loopback and, for each flavour, N times: add a job, one discovery
cycle (``poll_once``), ``claim_job``, then the stand-in runner fetches with exactly what
the claim gives a sandbox. The sandbox itself and the poll interval are left out: this
is the forge-side cost ephemerd adds. Prints JSON: median and p90 milliseconds per model.

    python bench/actions_claim.py [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ephemerd.capabilities import PollConfig
from tests.forges.forgejo.helpers import forge_for, provider_for
from tests.forges.forgejo.standin import run_one_job

CASES = {
    "handle (forgejo-15, REST list)": ("forgejo-15", {}),
    "registered (gitea-1.26, REST list)": ("gitea-1.26", {}),
    "registered (forgejo-15, warm pool)": ("forgejo-15", {"api_token": "", "pool_size": 1}),
}


async def _measure(flavour: str, overrides: dict[str, object], runs: int) -> list[float]:
    times: list[float] = []
    async with forge_for(flavour) as (forge, token), provider_for(forge, token, **overrides) as p:
        for i in range(runs):
            start = time.perf_counter()
            forge.world.add_job("acme/app", ["linux"], name=f"j{i}")
            events = await p.poll_once(PollConfig(labels=("linux",)))
            claim = await p.claim_job(events[0], runner_name=f"r{i}", labels=("linux",))
            outcome = await run_one_job(claim)  # fetch, log, report
            times.append((time.perf_counter() - start) * 1000)
            assert outcome is not None
            await p.release_job(claim)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    out: dict[str, dict[str, float]] = {}
    for name, (flavour, overrides) in CASES.items():
        times = await _measure(flavour, overrides, args.runs)
        out[name] = {
            "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(statistics.quantiles(times, n=10)[-1], 2),
            "runs": len(times),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    trio.run(main)
