from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ephemerd.local import WorkflowError, load_workflow

EXAMPLE = Path(__file__).parents[2] / "ephemerd" / "examples" / "workflow.yml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wf.yml"
    path.write_text(text)
    return path


def test_bundled_example_parses() -> None:
    workflow = load_workflow(EXAMPLE)
    job = workflow.job(None)
    assert job.runs_on == ("self-hosted", "linux")
    assert [s.condition for s in job.steps][-2:] == ["failure", "always"]
    assert any(s.continue_on_error for s in job.steps)
    assert workflow.env["GREETING"] == "hello from a sandbox"


def test_env_levels_and_defaults(tmp_path: Path) -> None:
    workflow = load_workflow(
        write(
            tmp_path,
            """
env: {A: "1", FLAG: true}
jobs:
  build:
    runs-on: ubuntu-latest
    container: {image: "alpine:3"}
    defaults: {run: {shell: sh, working-directory: src}}
    env: {B: 2}
    steps:
      - run: echo hi
        if: ${{ !failure() }}
        env: {C: x}
""",
        )
    )
    job = workflow.job("build")
    assert workflow.env == {"A": "1", "FLAG": "true"}
    assert job.env == {"B": "2"}
    assert job.image == "alpine:3"
    step = job.steps[0]
    assert (step.shell, step.working_directory, step.condition) == ("sh", "src", "!failure")
    assert step.name == "Run echo hi"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v4\n",
            "jobs.a.steps[0].uses: 'uses:' steps not supported yet",
        ),
        (
            "jobs:\n  a:\n    services: {db: {image: x}}\n    steps: [{run: x}]\n",
            "jobs.a.services: 'services:' not supported yet",
        ),
        (
            "jobs:\n  a:\n    strategy: {matrix: {x: [1]}}\n    steps: [{run: x}]\n",
            "jobs.a.strategy.matrix: 'matrix' not supported yet",
        ),
        (
            "jobs:\n  a:\n    steps: [{run: x, if: github.ref == 'main'}]\n",
            "jobs.a.steps[0].if: the condition",
        ),
        (
            "jobs:\n  a:\n    steps: [{run: 'echo ${{ github.sha }}'}]\n",
            "expressions in scripts not supported yet",
        ),
        ("jobs: {}\n", "jobs: no jobs defined"),
        ("jobs:\n  a:\n    steps: []\n", "jobs.a.steps: no steps"),
        ("jobs:\n  a:\n    steps: [{name: x}]\n", "a step needs a 'run:' script"),
        ("- just\n- a list\n", "the file: expected a mapping"),
        ("jobs: [\n", "not valid YAML at line"),
    ],
)
def test_clear_errors(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(WorkflowError) as info:
        load_workflow(write(tmp_path, body))
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_job_selection(tmp_path: Path) -> None:
    workflow = load_workflow(
        write(tmp_path, "jobs:\n  a: {steps: [{run: x}]}\n  b: {steps: [{run: y}]}\n")
    )
    with pytest.raises(WorkflowError, match="several jobs"):
        workflow.job(None)
    with pytest.raises(WorkflowError, match="no job 'c'"):
        workflow.job("c")
    assert workflow.job("b").steps[0].run == "y"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_parsed_or_rejected_clearly(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("wf") / "wf.yml"
    path.write_text(text)
    try:
        load_workflow(path)
    except WorkflowError as exc:
        assert "\n" not in str(exc)
