"""The benchmark report: rows from each benchmark's JSON, the markdown table, the README.

Pure functions, no I/O, so the formatting is tested without running a benchmark.
Each benchmark's JSON becomes ``Row``s: one figure, its target (if the project set one),
the floor measured in the same run (if the benchmark measures one), their ratio, and
whether the target was met. ``EXTRACTORS`` maps a benchmark name to its row maker.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"

Json = Mapping[str, Any]


class Target(msgspec.Struct, frozen=True):
    """``figure <op> value``: ``<=`` for times and sizes, ``>=`` for rates, ``==`` for counts."""

    op: str
    value: float

    def met(self, figure: float) -> bool:
        compare = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}[self.op]
        return bool(compare(figure, self.value))

    def __str__(self) -> str:
        symbol = {"<=": "≤", ">=": "≥", "==": "="}[self.op]
        return f"{symbol} {_num(self.value)}"


class Row(msgspec.Struct, frozen=True, kw_only=True):
    benchmark: str
    metric: str
    figure: float
    unit: str
    target: Target | None = None
    floor: float | None = None
    floor_label: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor == 0:
            return None
        return round(self.figure / self.floor, 2)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.figure)


def _num(value: float) -> str:
    if value == int(value) and abs(value) >= 10:
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"


def _row(bench: str, metric: str, figure: Any, unit: str, **extra: Any) -> list[Row]:
    if not isinstance(figure, int | float):
        return []
    return [Row(benchmark=bench, metric=metric, figure=float(figure), unit=unit, **extra)]


def _sandbox(out: Json) -> list[Row]:
    if out.get("network", "none") != "none":
        return _sandbox_network(out)
    b = "sandbox"
    rows = _row(
        b,
        "containerd ready after start",
        out.get("containerd_ready_s"),
        "s",
        target=Target("<=", 1.0),
    )
    rows += _row(
        b,
        "trivial job create → exit → destroyed, median",
        out.get("trivial_job_ms", {}).get("median"),
        "ms",
        target=Target("<=", 110),
        floor=out.get("runc_floor_ms", {}).get("median"),
        floor_label="`runc run`",
    )
    rows += _row(
        b,
        "20 concurrent trivial jobs, median of 5 rounds",
        out.get("concurrent_20_s"),
        "s",
        target=Target("<=", 1.5),
    )
    rows += _row(
        b,
        "leaked objects after the sequential jobs",
        out.get("leak_check", {}).get("leaked"),
        "",
        target=Target("==", 0),
    )
    return rows


def _sandbox_network(out: Json) -> list[Row]:
    """The same jobs, each on the job network (its own namespace, address and rules)."""
    b = "sandbox_network"
    rows = _row(
        b,
        "trivial job on the job network, create → exit → destroyed, median",
        out.get("trivial_job_ms", {}).get("median"),
        "ms",
        floor=out.get("runc_floor_ms", {}).get("median"),
        floor_label="`runc run`",
    )
    rows += _row(
        b,
        "20 concurrent trivial jobs on the job network, median of 5 rounds",
        out.get("concurrent_20_s"),
        "s",
    )
    rows += _row(
        b,
        "leaked objects (namespaces, ports, rules too) after the sequential jobs",
        out.get("leak_check", {}).get("leaked"),
        "",
        target=Target("==", 0),
    )
    return rows


def _status(out: Json) -> list[Row]:
    return _row(
        "status_latency",
        "`ephemerd status`, median",
        out.get("status_median_ms"),
        "ms",
        target=Target("<=", out.get("target_status_median_ms", 150)),
        floor=out.get("floor_median_ms"),
        floor_label="`python -c pass`",
    )


def _throughput(out: Json) -> list[Row]:
    b = "scheduler_throughput"
    rows = _row(
        b,
        f"{out.get('events', 0):,} queued events → every unique job claimed"
        + (f", median of {len(out['runs'])} daemons" if len(out.get("runs", ())) > 1 else ""),
        out.get("seconds_to_all_claims"),
        "s",
        target=Target("<=", out.get("target_seconds", 5.0)),
    )
    if "exact" in out:
        exact = int(bool(out["exact"]))
        rows += _row(b, "claims exactly as expected (1 = yes)", exact, "", target=Target("==", 1))
    return rows


def _github(out: Json) -> list[Row]:
    pickup = out.get("pickup", {})
    rows = _row(
        "github_pickup",
        "GitHub webhook → runner started in its sandbox, median",
        pickup.get("median_ms"),
        "ms",
        target=Target("<=", 300),
    )
    poll = out.get("poll", {})
    rows += _row(
        "github_pickup",
        "GitHub idle poll cycle, quota used",
        poll.get("idle_cycle_quota_used"),
        "requests",
        target=Target("==", 0),
    )
    return rows


def _github_poll(out: Json) -> list[Row]:
    return _row(
        "github_poll_pickup",
        f"GitHub poll ({out.get('poll_interval', '?')}) → runner started, median",
        out.get("median_ms"),
        "ms",
        target=Target("<=", 1300),
    )


def _actions(out: Json) -> list[Row]:
    rows: list[Row] = []
    for result in out.get("results", []):
        name = f"{result.get('flavour')} ({result.get('claim_model')})"
        figure = result.get("runner_start_median_ms") or result.get("fetched_median_ms")
        rows += _row(
            "actions_pickup",
            f"{name} poll (1 s) → runner started, median",
            figure,
            "ms",
            target=Target("<=", 1300),
        )
    return rows


def _actions_claim(out: Json) -> list[Row]:
    rows: list[Row] = []
    for model, figures in out.items():
        if isinstance(figures, Mapping):
            rows += _row(
                "actions_claim",
                f"Forgejo/Gitea claim, {model}, median",
                figures.get("median_ms"),
                "ms",
            )  # pyright: ignore[reportUnknownMemberType]
    return rows


def _woodpecker(out: Json) -> list[Row]:
    sandbox = out.get("sandbox", "memory")
    return _row(
        "woodpecker_first_step",
        f"Woodpecker queued → first step running ({sandbox} sandbox), median",
        out.get("median_ms"),
        "ms",
    )


def _network(out: Json) -> list[Row]:
    return _row(
        "network_attach", "job network attach, median", out.get("attach", {}).get("median_ms"), "ms"
    )


def _registry(out: Json) -> list[Row]:
    return _row(
        "bench_registry_pull", "registry pull throughput (loopback)", out.get("mib_per_s"), "MiB/s"
    )


def _jobs(out: Json) -> list[Row]:
    return _row(
        "jobs_per_minute",
        f"trivial jobs per minute at max_concurrent {out.get('max_concurrent', 8)}",
        out.get("jobs_per_minute"),
        "jobs/min",
        floor=out.get("floor_jobs_per_minute"),
        floor_label="sandbox backend alone",
    )


def _rss(out: Json) -> list[Row]:
    floor = out.get("floor_python_trio_mib")
    rows = _row(
        "daemon_rss",
        "daemon RSS, idle",
        out.get("idle_mib"),
        "MiB",
        target=Target("<=", 80),
        floor=floor,
        floor_label="bare python + trio",
    )
    rows += _row(
        "daemon_rss",
        f"daemon RSS, {out.get('jobs', 8)} jobs running",
        out.get("busy_mib"),
        "MiB",
        floor=floor,
        floor_label="bare python + trio",
    )
    rows += _row(
        "daemon_rss",
        f"embedded containerd + runc, {out.get('jobs', 8)} jobs running",
        _sum(out.get("containerd_busy_mib"), out.get("runc_busy_mib")),
        "MiB",
    )
    return rows


def _sum(*values: Any) -> float | None:
    if not all(isinstance(v, int | float) for v in values):
        return None
    return float(sum(values))


def _image_mounts(out: Json) -> list[Row]:
    b = "image_mounts"
    rows = _row(
        b,
        "trivial job with one image mount, median",
        out.get("mounted_job_ms", {}).get("median"),
        "ms",
        floor=out.get("plain_job_ms", {}).get("median"),
        floor_label="no mount",
    )
    rows += _row(
        b,
        "leaked objects after the mounted jobs",
        out.get("leak_check", {}).get("leaked"),
        "",
        target=Target("==", 0),
    )
    return rows


def _gitlab(out: Json) -> list[Row]:
    b = "gitlab_executor"
    rows = _row(
        b,
        "executor prepare → sandbox ready, median",
        out.get("prepare_ready_ms", {}).get("median"),
        "ms",
        floor=out.get("bare_create_start_ms", {}).get("median"),
        floor_label="sandbox create + start",
    )
    rows += _row(
        b,
        "run stage (`true`) over the socket, median",
        out.get("stage_true_ms", {}).get("median"),
        "ms",
        floor=out.get("bare_exec_ms", {}).get("median"),
        floor_label="sandbox exec",
    )
    rows += _row(
        b,
        "`ephemerd gitlab-executor run` (`true`), median",
        out.get("cli_run_ms", {}).get("median"),
        "ms",
        floor=out.get("cli_startup_floor_ms", {}).get("median"),
        floor_label="`python -c pass`",
    )
    return rows


EXTRACTORS: dict[str, Callable[[Json], list[Row]]] = {
    "scheduler_throughput": _throughput,
    "status_latency": _status,
    "sandbox": _sandbox,
    "sandbox_network": _sandbox,
    "jobs_per_minute": _jobs,
    "daemon_rss": _rss,
    "github_pickup": _github,
    "github_poll_pickup": _github_poll,
    "actions_pickup": _actions,
    "actions_claim": _actions_claim,
    "woodpecker_first_step": _woodpecker,
    "woodpecker_first_step_memory": _woodpecker,
    "network_attach": _network,
    "image_mounts": _image_mounts,
    "bench_registry_pull": _registry,
    "gitlab_executor": _gitlab,
}


def rows_of(name: str, output: Json | None) -> list[Row]:
    """The rows of benchmark *name*'s JSON; none when it failed or is unknown."""
    if output is None or name not in EXTRACTORS:
        return []
    try:
        return EXTRACTORS[name](output)
    except (AttributeError, TypeError, KeyError):  # a benchmark changed its output shape
        return []


def _cell(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{_num(value)} {unit}".strip()


def render_table(rows: list[Row], *, machine: Mapping[str, object], failed: list[str]) -> str:
    """The markdown section: a machine line, the table, and the benchmarks that failed."""
    lines = [
        f"Measured on {machine.get('description', 'an unknown machine')}; generated by "
        "`python bench/run_all.py --write-readme`"
        + (" (quick run: small samples)" if machine.get("quick") else "")
        + ". Each floor is measured in the same run.",
        "",
        "| benchmark | figure | target | floor (same run) | ratio | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        floor = (
            f"{_cell(row.floor, row.unit)} ({row.floor_label})" if row.floor is not None else "—"
        )
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}x"
        met = {True: "met", False: "**missed**", None: "—"}[row.met]
        target = "—" if row.target is None else f"{row.target} {row.unit}".strip()
        lines.append(
            f"| `{row.benchmark}`: {row.metric} | {_cell(row.figure, row.unit)} | {target} "
            f"| {floor} | {ratio} | {met} |"
        )
    if failed:
        lines += [
            "",
            "Did not produce a figure in this run: " + ", ".join(f"`{f}`" for f in failed),
        ]
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str) -> str:
    """*text* with everything between the bench markers replaced by *section*.

    Raises:
        ValueError: the markers are missing, repeated or out of order.
    """
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"README needs exactly one {BEGIN} ... {END} pair")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{section}{END}{tail}"
