"""The small pure pieces of the executor: tags, image policy, variables, redaction."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from ephemerd._errors import ControlError
from ephemerd.capabilities import CustomExecutor, DrivesJob, ExecutorRequest, JobAction, Provider
from ephemerd.cli._gitlab import job_variables
from ephemerd.forges.gitlab import GitLabOptions, GitLabProvider, image_allowed, runner_tags


@pytest.mark.parametrize(
    ("raw", "tags"),
    [
        ("", ()),
        ('["docker", "linux"]', ("docker", "linux")),
        ("docker, linux", ("docker", "linux")),
        ('{"not": "a list"}', ()),
        ('[" ", "x"]', ("x",)),
    ],
)
def test_runner_tags(raw: str, tags: tuple[str, ...]) -> None:
    assert runner_tags({"CI_RUNNER_TAGS": raw}) == tags


def test_image_policy() -> None:
    assert image_allowed("anything:1", ())
    assert image_allowed("registry.example/team/app:1", ("registry.example/team/*",))
    assert not image_allowed("evil/miner:1", ("registry.example/*", "busybox*"))


def test_job_variables_strip_the_prefix() -> None:
    env = {"CUSTOM_ENV_CI_JOB_ID": "7", "CUSTOM_ENV_X": "y", "PATH": "/bin"}
    assert job_variables(env) == {"CI_JOB_ID": "7", "X": "y"}


def test_requests_and_events_carry_no_secret() -> None:
    request = ExecutorRequest(
        job_id="7", variables={"CI_JOB_TOKEN": "glcbt-secret"}, job_response=b'{"token": "t"}'
    )
    assert "glcbt-secret" not in repr(request) and '"t"' not in repr(request)
    provider = GitLabProvider(GitLabOptions(token="glrt-secret"))
    assert "glrt-secret" not in repr(provider) and "glrt-secret" not in repr(provider.options)
    event = provider.expect(request)
    assert event.action is JobAction.QUEUED and event.raw == b""
    assert "glcbt-secret" not in repr(event)


def test_the_provider_satisfies_its_protocols() -> None:
    provider = GitLabProvider(GitLabOptions())
    assert isinstance(provider, Provider)
    assert isinstance(provider, DrivesJob)
    assert isinstance(provider, CustomExecutor)


def test_a_job_is_expected_once_and_needs_an_id() -> None:
    provider = GitLabProvider(GitLabOptions())
    with pytest.raises(ControlError, match="CUSTOM_ENV_CI_JOB_ID"):
        provider.expect(ExecutorRequest(job_id=" "))
    provider.expect(ExecutorRequest(job_id="8"))
    with pytest.raises(ControlError, match="already prepared"):
        provider.expect(ExecutorRequest(job_id="8"))
    provider.forget("8")
    provider.expect(ExecutorRequest(job_id="8"))
    assert provider.cleanup("8") and not provider.cleanup("9")


async def test_a_stage_script_ends_the_shell_itself() -> None:
    import trio

    from ephemerd.capabilities import SandboxSpec
    from ephemerd.forges.gitlab import GitLabJob
    from ephemerd.testing import MemorySandbox

    backend = MemorySandbox(log_dir=Path(tempfile.mkdtemp()))
    handle = await backend.create(SandboxSpec(name="gl-1", image="i", argv=("sleep", "infinity")))
    await handle.start()
    job = GitLabJob(ExecutorRequest(job_id="1", variables={}), image="i")
    job.handle = handle

    async def output(stream: str, chunk: bytes) -> None:
        await trio.lowlevel.checkpoint()

    # no trailing newline: the exit goes on a line of its own
    assert await job.run(b"exit 3", "build_script", output, shell=("sh", "-s")) == 3
    assert backend.execs[-1].stdin == b"exit 3\nexit $?\n"
    assert await job.run(b"", "after_script", output, shell=("sh", "-s")) == 0
    assert backend.execs[-1].stdin == b"exit $?\n"
