"""``ephemerd run`` for real: a workflow in a fresh containerd sandbox, as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "ephemerd" / "examples" / "workflow.yml"

pytestmark = [
    pytest.mark.containerd,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("containerd") is None,
        reason="needs root and containerd",
    ),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("run")
    yield path
    subprocess.run(["umount", "-l", str(path / "run" / "files")], check=False, capture_output=True)


def run(data_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "run", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def test_the_bundled_example_succeeds_in_a_real_sandbox(data_dir: Path) -> None:
    result = run(data_dir, str(EXAMPLE), "--network", "none")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "hello from a sandbox" in out
    assert "hostname: run-demo" in out
    assert "NoNewPrivs: 1" in out
    assert "/proc/kcore is masked" in out
    assert "/workspace/scratch" in out and "step-level env wins" in out
    assert "exit 3" in out and "continued" in out
    assert "not printed" not in out  # if: failure() is skipped after an allowed failure
    assert "done; the sandbox is destroyed next" in out
    assert "Job succeeded" in out


def test_a_failing_step_fails_the_job_and_always_steps_still_run(
    data_dir: Path, tmp_path: Path
) -> None:
    workflow = tmp_path / ".github" / "workflows" / "ci.yml"
    workflow.parent.mkdir(parents=True)
    (tmp_path / "input.txt").write_text("from the repository\n")
    workflow.write_text(
        """
jobs:
  build:
    steps:
      - run: cat input.txt && echo changed > input.txt
      - run: exit 7
      - run: echo never
      - if: always()
        run: echo cleanup ran
"""
    )
    result = run(data_dir, "--network", "none", cwd=tmp_path)  # found in .github/workflows
    assert result.returncode == 1, result.stdout + result.stderr
    assert "from the repository" in result.stdout
    assert "exit 7" in result.stdout
    assert "never" not in result.stdout.replace("Run echo never", "")
    assert "cleanup ran" in result.stdout
    assert "Job failed" in result.stdout
    # the job worked on a copy: the repository is untouched
    assert (tmp_path / "input.txt").read_text() == "from the repository\n"


def test_unsupported_features_are_refused_before_anything_runs(
    data_dir: Path, tmp_path: Path
) -> None:
    workflow = tmp_path / "wf.yml"
    workflow.write_text("jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v4\n")
    result = run(data_dir, str(workflow))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {workflow}: jobs.a.steps[0].uses: 'uses:' steps not supported yet by 'ephemerd run'"
    ]


def test_no_workflow_found_is_one_line(data_dir: Path, tmp_path: Path) -> None:
    result = run(data_dir, cwd=tmp_path)
    assert result.returncode == 1
    assert "no workflow file given and none found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
