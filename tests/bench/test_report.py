"""The benchmark report's plumbing: rows from benchmark JSON, the table, the README section.

Formatting only; no benchmark runs here (``bench/run_all.py --quick`` exercises the rest).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _report import BEGIN, END, EXTRACTORS, Row, Target, render_table, replace_section, rows_of
from run_all import BENCHES, Report, Result, render

MACHINE = {"description": "2 cores (Test CPU), 4.0 GiB RAM", "quick": False}


def test_every_benchmark_script_is_run_and_has_a_row_maker() -> None:
    bench = Path(__file__).resolve().parents[2] / "bench"
    scripts = {p.name for p in bench.glob("*.py") if not p.name.startswith("_")} - {"run_all.py"}
    assert scripts == {entry.script for entry in BENCHES}, "add new benchmarks to run_all"
    for entry in BENCHES:
        assert entry.name in EXTRACTORS, entry.name
        assert rows_of(entry.name, {}) == []  # an empty or reshaped output gives no rows


def test_sandbox_json_gives_figure_target_floor_ratio_and_verdict() -> None:
    out = {
        "containerd_ready_s": 0.2,
        "trivial_job_ms": {"median": 150.0},
        "runc_floor_ms": {"median": 50.0},
        "concurrent_20_s": 1.9,
        "leak_check": {"leaked": 0},
    }
    rows = {r.metric: r for r in rows_of("sandbox", out)}
    trivial = rows["trivial job create → exit → destroyed, median"]
    assert (trivial.figure, trivial.floor, trivial.ratio, trivial.met) == (150.0, 50.0, 3.0, False)
    assert rows["20 concurrent trivial jobs, median of 5 rounds"].met is False
    assert rows["containerd ready after start"].met is True
    assert rows["leaked objects after the sequential jobs"].met is True


def test_table_shows_each_column_and_marks_misses() -> None:
    rows = [
        Row(
            benchmark="a",
            metric="fast",
            figure=90.0,
            unit="ms",
            target=Target("<=", 100),
            floor=30.0,
            floor_label="`runc run`",
        ),
        Row(benchmark="b", metric="slow", figure=1234.5, unit="ms", target=Target("<=", 300)),
        Row(benchmark="c", metric="rate", figure=42.0, unit="jobs/min"),
    ]
    table = render_table(rows, machine=MACHINE, failed=["d"])
    lines = table.splitlines()
    assert lines[0].startswith("Measured on 2 cores (Test CPU)")
    assert "| benchmark | figure | target | floor (same run) | ratio | met |" in lines
    assert "| `a`: fast | 90 ms | ≤ 100 ms | 30 ms (`runc run`) | 3.00x | met |" in lines
    assert "| `b`: slow | 1,234.5 ms | ≤ 300 ms | — | — | **missed** |" in lines
    assert "| `c`: rate | 42 jobs/min | — | — | — | — |" in lines
    assert lines[-1] == "Did not produce a figure in this run: `d`"


def test_a_failed_or_reshaped_benchmark_is_listed_not_crashed() -> None:
    report = Report(
        machine={**MACHINE, "quick": True},
        results={
            "daemon_rss": Result(
                argv=[],
                seconds=1.0,
                ok=True,
                output={
                    "idle_mib": 50.0,
                    "busy_mib": 70.0,
                    "floor_python_trio_mib": 20.0,
                    "jobs": 8,
                },
            ),
            "sandbox": Result(argv=[], seconds=1.0, ok=True, output={"trivial_job_ms": 3}),
            "github_pickup": Result(argv=[], seconds=1.0, ok=False, error="timed out"),
        },
    )
    table = render(report)
    assert "(quick run: small samples)" in table
    assert "| `daemon_rss`: daemon RSS, idle | 50 MiB | ≤ 80 MiB | 20 MiB" in table
    assert table.rstrip().endswith("`sandbox`, `github_pickup`")


def test_readme_section_is_replaced_between_the_markers_only() -> None:
    text = f"# x\n\n## Performance\n\n{BEGIN}\nold table\n{END}\n\n## Development\n"
    new = replace_section(text, "new table\n")
    assert new == f"# x\n\n## Performance\n\n{BEGIN}\nnew table\n{END}\n\n## Development\n"
    assert replace_section(new, "new table\n") == new  # idempotent
    for broken in ("no markers", f"{END}\n{BEGIN}", f"{BEGIN}{BEGIN}{END}"):
        with pytest.raises(ValueError, match="bench:begin"):
            replace_section(broken, "t\n")


def test_the_readme_has_the_markers() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert replace_section(readme, "t\n").count("t\n") >= 1
