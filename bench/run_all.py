"""Run every benchmark of the project, one after another, and write one report.

Each benchmark is a script in ``bench/`` that prints JSON. This runs them sequentially
(they share the machine's cores and the embedded containerd's tree), collects their JSON
with a description of the machine into ``bench/results/latest.json``, and renders a
markdown table (figure, target, floor measured in the same run, ratio, met/missed) into
``bench/results/latest.md``. ``--write-readme`` also replaces the README's performance
section between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``. Run it on an idle
machine: the figures are only as good as the quiet around them.

    python bench/run_all.py [--quick] [--only NAME,...] [--out DIR] [--write-readme]
    python bench/run_all.py --from-json bench/results/latest.json --write-readme
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import render_table, replace_section, rows_of

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


class Bench(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    script: str
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    timeout: float = 900.0


BENCHES = (
    Bench(
        name="scheduler_throughput",
        script="scheduler_throughput.py",
        quick=("--events", "1000", "--repeat", "1"),
    ),
    Bench(
        name="status_latency",
        script="status_latency.py",
        full=("--runs", "30"),
        quick=("--runs", "5"),
    ),
    Bench(name="sandbox", script="sandbox.py", quick=("--runs", "5", "--sequential", "10")),
    Bench(
        name="sandbox_network",
        script="sandbox.py",
        full=("--network", "default", "--sequential", "50"),
        quick=("--network", "default", "--runs", "5", "--sequential", "10"),
    ),
    Bench(
        name="jobs_per_minute",
        script="jobs_per_minute.py",
        full=("--jobs", "120"),
        quick=("--jobs", "16"),
    ),
    Bench(name="daemon_rss", script="daemon_rss.py"),
    Bench(
        name="github_pickup",
        script="github_pickup.py",
        full=("--jobs", "20"),
        quick=("--jobs", "3", "--repos", "5", "--cycles", "2"),
    ),
    Bench(
        name="github_poll_pickup",
        script="github_poll_pickup.py",
        full=("--jobs", "10"),
        quick=("--jobs", "3"),
    ),
    Bench(
        name="actions_pickup",
        script="actions_pickup.py",
        full=("--rounds", "5"),
        quick=("--rounds", "2", "--flavours", "gitea-1.26"),
    ),
    Bench(
        name="actions_claim",
        script="actions_claim.py",
        full=("--runs", "50"),
        quick=("--runs", "5"),
    ),
    Bench(
        name="woodpecker_first_step",
        script="woodpecker_first_step.py",
        full=("--sandbox", "containerd", "--rounds", "20"),
        quick=("--sandbox", "containerd", "--rounds", "3"),
    ),
    Bench(
        name="woodpecker_first_step_memory",
        script="woodpecker_first_step.py",
        full=("--rounds", "50"),
        quick=("--rounds", "5"),
    ),
    Bench(
        name="network_attach",
        script="network_attach.py",
        quick=("--cycles", "5", "--parallel", "4"),
    ),
    Bench(
        name="image_mounts",
        script="image_mounts.py",
        quick=("--runs", "3", "--sequential", "5"),
    ),
    Bench(
        name="gitlab_executor",
        script="gitlab_executor.py",
        full=("--jobs", "10", "--cli-runs", "10"),
        quick=("--jobs", "3", "--cli-runs", "3"),
    ),
    Bench(
        name="bench_registry_pull",
        script="bench_registry_pull.py",
        quick=("--mib", "4", "--rounds", "2"),
    ),
)


class Result(msgspec.Struct, kw_only=True):
    argv: list[str]
    seconds: float
    ok: bool
    output: dict[str, object] | None = None
    error: str = ""


class Report(msgspec.Struct, kw_only=True):
    machine: dict[str, object]
    results: dict[str, Result]


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def machine(*, quick: bool) -> dict[str, object]:
    """What the figures were measured on, including the load while they were."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    cores = os.cpu_count() or 0
    ram_gib = round(mem_kib / (1 << 20), 1)
    os_name = platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    return {
        "cpu": cpu,
        "cores": cores,
        "ram_gib": ram_gib,
        "os": os_name,
        "kernel": platform.release(),
        "containerd": _first_line(["containerd", "--version"]),
        "runc": _first_line(["runc", "--version"]),
        "python": platform.python_version(),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
        "quick": quick,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "description": f"{cores} cores ({cpu}), {ram_gib} GiB RAM, {os_name}, kernel "
        f"{platform.release()}, {_first_line(['containerd', '--version'])}, "
        f"{_first_line(['runc', '--version'])}, Python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.1f} at the start",
    }


def run(bench: Bench, *, quick: bool) -> Result:
    """One benchmark as a subprocess; its stdout is its JSON."""
    argv = [sys.executable, str(BENCH / bench.script), *(bench.quick if quick else bench.full)]
    began = time.monotonic()
    try:
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=bench.timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return Result(argv=argv, seconds=bench.timeout, ok=False, error="timed out")
    seconds = round(time.monotonic() - began, 1)
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-1:]) or f"exit {done.returncode}"
        return Result(argv=argv, seconds=seconds, ok=False, error=tail[:300])
    try:
        output = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        return Result(argv=argv, seconds=seconds, ok=False, error=f"not JSON: {exc}")
    return Result(argv=argv, seconds=seconds, ok=True, output=output)


def render(report: Report) -> str:
    rows = [row for name, r in report.results.items() for row in rows_of(name, r.output)]
    failed = [name for name, r in report.results.items() if not rows_of(name, r.output)]
    return render_table(rows, machine=report.machine, failed=failed)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sample sizes (plumbing)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--from-json", type=Path, help="render an earlier report, run nothing")
    parser.add_argument("--write-readme", action="store_true")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--list", action="store_true", help="print the benchmark names")
    args = parser.parse_args()
    if args.list:
        print("\n".join(b.name for b in BENCHES))
        return 0
    if args.from_json:
        report = msgspec.json.decode(args.from_json.read_bytes(), type=Report)
    else:
        chosen = set(filter(None, args.only.split(",")))
        unknown = chosen - {b.name for b in BENCHES}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        report = Report(machine=machine(quick=args.quick), results={})
        for bench in BENCHES:
            if chosen and bench.name not in chosen:
                continue
            print(f"run_all: {bench.name} ...", file=sys.stderr, flush=True)
            result = run(bench, quick=args.quick)
            report.results[bench.name] = result
            state = "ok" if result.ok else f"FAILED: {result.error}"
            print(f"run_all: {bench.name} {state} ({result.seconds} s)", file=sys.stderr)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "latest.json").write_bytes(msgspec.json.format(msgspec.json.encode(report)))
    table = render(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(table)
    if args.write_readme:
        args.readme.write_text(replace_section(args.readme.read_text(), table))
    print(table)
    return 0 if all(r.ok for r in report.results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
