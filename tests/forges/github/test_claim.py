"""Claim = JIT runner config handed in as a file; release = delete at the same scope."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from ephemerd._errors import ForgeConflict, ForgeError, ForgeUnavailable
from ephemerd.capabilities import JobAction, JobEvent
from ephemerd.forges.github import JITCONFIG_PATH, RUNNER_ENTRYPOINT
from tests.fakes.github import FakeGitHub

from .conftest import provider_for

HOST_LABELS = ("self-hosted", "linux", "x64")


def queued(repo: str = "acme/app", job_id: str = "101") -> JobEvent:
    return JobEvent(instance="gh", action=JobAction.QUEUED, job_id=job_id, repo=repo)


async def test_claim_generates_a_jit_runner_with_host_labels_and_group(fake: FakeGitHub) -> None:
    async with provider_for(fake, runner_group_id=7) as provider:
        claim = await provider.claim_job(queued(), runner_name="eph-gh-app-1", labels=HOST_LABELS)
    (request,) = fake.requests
    assert (request.method, request.path) == (
        "POST",
        "/repos/acme/app/actions/runners/generate-jitconfig",
    )
    body = json.loads(request.body)
    assert body == {
        "name": "eph-gh-app-1",
        "runner_group_id": 7,
        "labels": list(HOST_LABELS),
        "work_folder": "_work",
    }
    runner = fake.world.runner_by_name("eph-gh-app-1")
    assert runner is not None and runner.group_id == 7
    assert (claim.runner_id, claim.runner_name, claim.repo) == (
        str(runner.id),
        "eph-gh-app-1",
        "acme/app",
    )
    (file,) = claim.files
    assert file.path == JITCONFIG_PATH
    assert file.content == runner.jit_config.encode()
    assert runner.jit_config not in repr(claim)
    assert claim.entrypoint == RUNNER_ENTRYPOINT
    assert all(runner.jit_config not in arg for arg in claim.entrypoint)
    assert all(runner.jit_config not in value for value in claim.env.values())


async def test_self_hosted_is_always_among_the_labels(fake: FakeGitHub) -> None:
    async with provider_for(fake) as provider:
        await provider.claim_job(queued(), runner_name="r1", labels=["linux", "linux", "gpu"])
    assert json.loads(fake.requests[0].body)["labels"] == ["self-hosted", "linux", "gpu"]


async def test_org_scope_claims_and_releases_on_the_org(fake: FakeGitHub) -> None:
    async with provider_for(fake, repos=()) as provider:
        claim = await provider.claim_job(queued("acme/any"), runner_name="r1", labels=HOST_LABELS)
        await provider.release_job(claim)
    assert [(r.method, r.path, r.status) for r in fake.requests] == [
        ("POST", "/orgs/acme/actions/runners/generate-jitconfig", 201),
        ("DELETE", f"/orgs/acme/actions/runners/{claim.runner_id}", 204),
    ]
    assert fake.world.live_runners() == []


async def test_taken_name_is_a_conflict(fake: FakeGitHub) -> None:
    async with provider_for(fake) as provider:
        await provider.claim_job(queued(), runner_name="twin", labels=HOST_LABELS)
        with pytest.raises(ForgeConflict, match="409"):
            await provider.claim_job(queued(job_id="102"), runner_name="twin", labels=HOST_LABELS)


async def test_a_job_of_an_unserved_repository_is_refused_without_a_request(
    fake: FakeGitHub,
) -> None:
    async with provider_for(fake) as provider:
        with pytest.raises(ForgeError, match="not served") as caught:
            await provider.claim_job(queued("acme/secret"), runner_name="r", labels=HOST_LABELS)
    assert not caught.value.retryable
    assert fake.count() == 0


async def test_release_deletes_the_runner_and_a_missing_runner_counts_as_released(
    fake: FakeGitHub,
) -> None:
    async with provider_for(fake) as provider:
        claim = await provider.claim_job(queued(), runner_name="r1", labels=HOST_LABELS)
        await provider.release_job(claim)
        assert fake.world.live_runners() == []
        await provider.release_job(claim)  # 404 now: already gone
    assert [r.status for r in fake.requests if r.method == "DELETE"] == [204, 404]


async def test_release_of_a_busy_runner_is_retryable(fake: FakeGitHub) -> None:
    fake.world.add_run("acme/app", [("build", ["self-hosted", "linux"])])
    async with provider_for(fake) as provider:
        claim = await provider.claim_job(queued(), runner_name="r1", labels=HOST_LABELS)
        assert fake.world.connect("r1") is not None
        with pytest.raises(ForgeUnavailable, match="busy") as caught:
            await provider.release_job(claim)
        assert caught.value.retryable


async def test_unreadable_jit_answer_is_unavailable_and_leaves_no_runner(
    fake: FakeGitHub,
) -> None:
    fake.world.create_runner("repos/acme/app", "someone-elses", ["self-hosted"], 1)
    fake.malformed(path="generate-jitconfig", status=201, after=True)
    async with provider_for(fake) as provider:
        with pytest.raises(ForgeUnavailable, match="unreadable"):
            await provider.claim_job(queued(), runner_name="r1", labels=HOST_LABELS)
    assert fake.world.runner_by_name("r1") is None  # registered, then found and deleted
    assert [r.name for r in fake.world.live_runners()] == ["someone-elses"]


def test_entrypoint_hands_the_config_to_run_sh_through_the_environment_only(
    tmp_path: Path,
) -> None:
    """Run the real entrypoint script against a stand-in ``run.sh`` that reports what it got."""
    secret = base64.b64encode(b'{".runner": "abc"}').decode()
    config = tmp_path / "jitconfig"
    config.write_text(secret)
    report = tmp_path / "report"
    run_sh = tmp_path / "run.sh"
    run_sh.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$ACTIONS_RUNNER_INPUT_JITCONFIG" > {report}\n'
        f'echo "argc=$#" >> {report}\n'
        f"tr '\\0' ' ' < /proc/$$/cmdline >> {report}\n"
    )
    run_sh.chmod(0o755)
    shell, flag, script = RUNNER_ENTRYPOINT
    argv = [shell, flag, script.replace(JITCONFIG_PATH, str(config))]
    assert all(secret not in arg for arg in argv)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    subprocess.run(argv, cwd=tmp_path, env=env, check=True, timeout=10)
    got, argc, cmdline = report.read_text().splitlines()
    assert got == secret
    assert argc == "argc=0"
    assert secret not in cmdline


def test_entrypoint_fails_when_the_config_file_is_missing(tmp_path: Path) -> None:
    shell, flag, script = RUNNER_ENTRYPOINT
    (tmp_path / "run.sh").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "run.sh").chmod(0o755)
    argv = [shell, flag, script.replace(JITCONFIG_PATH, str(tmp_path / "absent"))]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=10, check=False)
    assert result.returncode != 0


async def test_cancelled_claim_still_hands_over_the_registered_runner(fake: FakeGitHub) -> None:
    import trio

    from ephemerd.capabilities import Claim

    claims: list[Claim] = []
    async with provider_for(fake) as provider:

        async def claimer() -> None:
            claims.append(await provider.claim_job(queued(), runner_name="r1", labels=HOST_LABELS))

        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(claimer)
                await fake.app.wait_requests(1)  # GitHub registered the runner
                scope.cancel()
        (claim,) = claims  # the caller got it, so it can release it
        await provider.release_job(claim)
    assert fake.world.live_runners() == []


async def test_the_sandbox_runs_the_runner_image_whatever_the_job_names(fake: FakeGitHub) -> None:
    async with provider_for(fake, default_image="ghcr.io/actions/actions-runner:2.330") as p:
        claim = await p.claim_job(queued(), runner_name="r1", labels=HOST_LABELS)
    # GitHub may give this runner another job; the runner must be in the sandbox either way
    assert claim.image == "ghcr.io/actions/actions-runner:2.330"
