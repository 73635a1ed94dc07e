"""The fake server's label filter semantics (``filter.go``), checked directly and over Next."""

from __future__ import annotations

from pathlib import Path

import pytest

from ephemerd.capabilities import JobKey
from tests.fakes.woodpecker import FakeWoodpecker, labels_match

from .conftest import Rig, payload, step

AGENT = {"hostname": "h", "platform": "linux/amd64", "backend": "ephemerd", "repo": "*"}


@pytest.mark.parametrize(
    ("task", "agent", "expected"),
    [
        ({}, AGENT, True),
        ({"platform": "linux/amd64"}, AGENT, True),
        ({"platform": "linux/arm64"}, AGENT, False),
        ({"repo": "acme/app"}, AGENT, True),  # wildcard
        ({"gpu": "yes"}, AGENT, False),  # the agent lacks the label
        ({"gpu": ""}, AGENT, True),  # empty values are ignored
        ({"woodpecker-ci.org/org-id": "3"}, AGENT, True),  # internal keys are ignored
        ({}, {**AGENT, "!gpu": "yes"}, False),  # required by the agent
        ({"gpu": "yes"}, {**AGENT, "!gpu": "yes"}, True),
        ({"gpu": "no"}, {**AGENT, "!gpu": "yes"}, False),
    ],
)
def test_labels_match(task: dict[str, str], agent: dict[str, str], expected: bool) -> None:
    assert labels_match(task, agent) is expected


async def test_next_only_takes_workflows_the_agent_labels_fit(
    rig: Rig, fake: FakeWoodpecker, tmp_path: Path
) -> None:
    state = fake.state
    async with rig.running(labels={"gpu": "yes"}) as (scheduler, _provider):
        state.enqueue("61", payload(step("a", entrypoint=["exit", "0"])), labels={"arch": "arm"})
        state.enqueue("62", payload(step("b", entrypoint=["exit", "0"])), labels={"gpu": "yes"})
        await state.wait_done("62")
        await scheduler.wait_job_finished(JobKey("wp", "62"))
        assert [w.id for w in state.queue] == ["61"]
        assert state.running("61") is None
