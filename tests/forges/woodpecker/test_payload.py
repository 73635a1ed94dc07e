"""Payload decoding and how steps become execs, including the documented restrictions."""

from __future__ import annotations

import base64

import pytest

from ephemerd._errors import ForgeProtocolError
from ephemerd.capabilities import JobKey, JobState
from ephemerd.forges.woodpecker._payload import decode_config, step_command, workflow_image
from tests.fakes.woodpecker import FakeWoodpecker

from .conftest import Rig, payload, step


def test_a_commands_step_runs_its_script_under_sh_in_its_workdir() -> None:
    config = decode_config(
        payload(step("build", commands=["make", "make test"], working_dir="/woodpecker/src"))
    )
    command = step_command(config.steps[0], extra_env={"CI_MACHINE": "host"})
    assert command.argv[:2] == ("/bin/sh", "-c")
    assert command.argv[-1] == "/woodpecker/src"
    script = base64.b64decode(command.env["CI_SCRIPT"]).decode()
    assert "echo + make\nmake\n" in script
    assert "echo + 'make test'\nmake test\n" in script
    assert command.env["CI_REPO"] == "acme/app" and command.env["CI_MACHINE"] == "host"


def test_the_clone_step_is_a_git_script_and_plugins_need_an_entrypoint() -> None:
    config = decode_config(
        payload(
            step("clone", type="clone", image="woodpeckerci/plugin-git"),
            step("deploy", type="plugin", image="plugins/s3"),
        )
    )
    clone = step_command(config.steps[0], extra_env={})
    assert "git fetch" in base64.b64decode(clone.env["CI_SCRIPT"]).decode()
    with pytest.raises(ForgeProtocolError, match="plugin steps"):
        step_command(config.steps[1], extra_env={})


def test_the_workflow_image_is_the_first_commands_steps() -> None:
    config = decode_config(
        payload(
            step("clone", type="clone", image="woodpeckerci/plugin-git"),
            step("build", commands=["make"], image="golang:1.22"),
            step("lint", commands=["lint"], image="node:20"),
        )
    )
    assert workflow_image(config) == "golang:1.22"


def test_bad_payloads_are_protocol_errors() -> None:
    with pytest.raises(ForgeProtocolError, match="does not parse"):
        decode_config(b"{not json")
    with pytest.raises(ForgeProtocolError, match="no steps"):
        decode_config(b'{"pipeline": []}')


def test_secret_values_are_collected_for_masking_and_never_in_reprs() -> None:
    config = decode_config(
        payload(
            step("a", entrypoint=["exit", "0"], secret_mapping={"TOKEN": "s3cr3t-value"}),
            secrets=[{"name": "x", "value": "other-secret"}],
            secret_values=["third"],
        )
    )
    assert set(config.masked_values()) == {"s3cr3t-value", "other-secret", "third"}
    assert "s3cr3t" not in repr(config) + repr(config.steps) + repr(config.secrets)
    command = step_command(config.steps[0], extra_env={})
    assert command.env["TOKEN"] == "s3cr3t-value"
    assert "s3cr3t" not in repr(command)


async def test_steps_naming_other_images_run_in_the_workflow_sandbox(
    rig: Rig, fake: FakeWoodpecker
) -> None:
    state = fake.state
    async with rig.running() as (scheduler, _provider):
        state.enqueue(
            "51",
            payload(
                step("build", entrypoint=["exit", "0"], image="golang:1.22", commands=["go"]),
                step("lint", entrypoint=["exit", "0"], image="node:20", commands=["npm"]),
            ),
        )
        await state.wait_done("51")
        await scheduler.wait_job_finished(JobKey("wp", "51"))
    assert [spec.image for spec in rig.sandbox.created] == ["golang:1.22"]
    assert len({call.sandbox for call in rig.sandbox.execs}) == 1
    assert len(rig.sandbox.execs) == 2


async def test_a_step_that_cannot_run_fails_with_a_clear_error(
    rig: Rig, fake: FakeWoodpecker
) -> None:
    state = fake.state
    async with rig.running() as (scheduler, _provider):
        state.enqueue("52", payload(step("deploy", type="plugin", image="plugins/s3")))
        done = await state.wait_done("52")
        await scheduler.wait_job_finished(JobKey("wp", "52"))
        assert scheduler.job(JobKey("wp", "52")).state is JobState.FAILED
    assert "plugin steps" in done.error
    final = [s for _, s in state.updates if s.exited][-1]
    assert final.exit_code == 1 and "plugin steps" in final.error
    assert rig.sandbox.execs == []
