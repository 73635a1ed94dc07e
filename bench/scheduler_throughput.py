"""Scheduler throughput through a real daemon: 10,000 queued events, in-memory sandbox.

Starts ``ephemerd serve`` as a subprocess with the in-memory sandbox and provider (the
test doubles of ``ephemerd.testing``), measures its idle RSS, then POSTs 10,000 queued
events to its webhook route: 30 % duplicates of earlier events and 10 % asking for a
label this host lacks. Exactly the unique, runnable jobs must be claimed. A fresh daemon
is fed the events ``--repeat`` times (3); the median time is reported, since one run on
a small shared machine varies by a fifth. Prints JSON.

    python bench/scheduler_throughput.py [--events 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _daemon import SECRET, free_port, rss_mib


def claims(client: httpx.Client) -> int:
    text = client.get("/metrics").text
    match = re.search(
        r'^ephemerd_claims_total\{instance="bench",outcome="claimed"\} (\d+)', text, re.M
    )
    return int(match.group(1)) if match else 0


def make_events(total: int, rng: random.Random) -> tuple[list[dict[str, object]], int]:
    duplicates = int(total * 0.3)
    mismatched = int(total * 0.1)
    unique = total - duplicates - mismatched
    events: list[dict[str, object]] = [
        {
            "action": "queued",
            "job_id": str(i),
            "repo": "octo/app",
            "labels": ["self-hosted", "linux"],
        }
        for i in range(unique)
    ]
    events += [
        {
            "action": "queued",
            "job_id": f"gpu-{i}",
            "repo": "octo/app",
            "labels": ["self-hosted", "gpu"],
        }
        for i in range(mismatched)
    ]
    events += [dict(events[rng.randrange(unique)]) for _ in range(duplicates)]
    rng.shuffle(events)
    return events, unique


def run_once(
    events: list[dict[str, object]], expected: int, *, batch: int, timeout: float
) -> dict[str, float]:
    """One fresh daemon fed every event; its figures."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ephemerd-bench-") as tmp:
        data_dir = Path(tmp)
        (data_dir / "config.toml").write_text(
            f"""
[sandbox]
backend = "memory"
[[memory]]
name = "bench"
secret = "{SECRET}"
[runner]
max_concurrent = 64
[webhook]
listen = "127.0.0.1:{port}"
[metrics]
enabled = true
listen = "127.0.0.1:{port}"
"""
        )
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ephemerd",
                "--data-dir",
                str(data_dir),
                "serve",
                "--log-level",
                "warning",
            ],
            stderr=subprocess.PIPE,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or daemon.poll() is not None:
                        raise SystemExit("daemon did not start")
                    time.sleep(0.05)
                time.sleep(1.0)
                idle_rss = rss_mib(daemon.pid)
                started = time.perf_counter()
                headers = {"x-ephemerd-test-token": SECRET}
                for i in range(0, len(events), batch):
                    reply = client.post(
                        "/webhook/bench", headers=headers, json=events[i : i + batch]
                    )
                    reply.raise_for_status()
                delivered = time.perf_counter() - started
                deadline = time.monotonic() + timeout
                while claims(client) < expected and time.monotonic() < deadline:
                    time.sleep(0.02)
                elapsed = time.perf_counter() - started
                time.sleep(0.5)
                final = claims(client)
                busy_rss = rss_mib(daemon.pid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
    return {
        "claims": final,
        "seconds": elapsed,
        "deliver": delivered,
        "idle_rss": idle_rss,
        "busy_rss": busy_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--repeat", type=int, default=3, help="fresh daemons; median reported")
    args = parser.parse_args()

    rng = random.Random(7)
    events, expected = make_events(args.events, rng)
    runs = [
        run_once(events, expected, batch=args.batch, timeout=args.timeout)
        for _ in range(args.repeat)
    ]
    elapsed = statistics.median(run["seconds"] for run in runs)
    exact = all(run["claims"] == expected for run in runs)
    result = {
        "benchmark": "scheduler_throughput",
        "events": args.events,
        "expected_claims": expected,
        "claims": min(run["claims"] for run in runs),
        "exact": exact,
        "runs": [round(run["seconds"], 3) for run in runs],
        "seconds_to_all_claims": round(elapsed, 3),
        "seconds_to_deliver": round(statistics.median(run["deliver"] for run in runs), 3),
        "events_per_second": round(args.events / elapsed, 1),
        "target_seconds": 5.0,
        "within_target": exact and elapsed <= 5.0,
        "daemon_rss_idle_mib": round(runs[0]["idle_rss"], 1),
        "daemon_rss_after_mib": round(runs[0]["busy_rss"], 1),
        "rss_target_mib": 80,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
