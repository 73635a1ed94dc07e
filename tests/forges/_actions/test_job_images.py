"""Forgejo/Gitea jobs run in their ``container:`` image, the runner mounted from its own.

Against the fake forge: the provider learns the image from the run and its workflow file
(per flavour: Forgejo's ``workflow_id``/``commit_sha``, Gitea's ``path``/``head_sha``),
before it creates a runner, and puts it in the claim together with the runner mount.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from ephemerd._errors import ConfigError, ForgeUnavailable
from ephemerd.capabilities import Claim, ImageMount, PollConfig, SandboxSpec
from ephemerd.config import ForgejoConfig, Secret
from ephemerd.forges._actions import RUNNER_MOUNT, ActionsProvider
from ephemerd.forges.forgejo import FLAVOUR as FORGEJO
from ephemerd.forges.forgejo import options_from_config
from ephemerd.scheduler import HostLabels, Journal, Scheduler, SchedulerOptions
from ephemerd.testing import MemorySandbox
from tests.fakes.forgejo import FakeForge, FakeJob
from tests.forges.forgejo.helpers import forge_for, options, provider_for
from tests.forges.forgejo.test_scheduler import StandInBackend

LABELS = ("linux",)
WITH_LISTING = ["forgejo-15", "forgejo-14", "gitea-1.26"]
SHA = "c0ffee" + "0" * 34

WORKFLOW = """
on: push
jobs:
  build:
    runs-on: linux
    container: node:20-bookworm
    steps: [{run: make}]
  lint:
    runs-on: linux
    container: {image: "ghcr.io/acme/lint:2", options: "--cpus 1"}
  plain:
    runs-on: linux
  dynamic:
    runs-on: linux
    container: ${{ vars.IMAGE }}
"""


def _folder(forge: FakeForge) -> str:
    return ".forgejo/workflows" if forge.world.flavour.kind == "forgejo" else ".gitea/workflows"


def _add(forge: FakeForge, name: str, *, run_id: int = 77, folder: str | None = None) -> FakeJob:
    forge.world.add_file("acme/app", f"{folder or _folder(forge)}/ci.yml", WORKFLOW, commit=SHA)
    return forge.world.add_job(
        "acme/app", ["linux"], name=name, run_id=run_id, workflow="ci.yml", commit_sha=SHA
    )


async def _claims(provider: ActionsProvider) -> dict[str, Claim]:
    events = await provider.poll_once(PollConfig(labels=LABELS))
    return {
        e.job_name: await provider.claim_job(e, runner_name=f"eph-{i}", labels=LABELS)
        for i, e in enumerate(events)
    }


def _runner_binary(kind: str) -> tuple[str, str]:
    return ("/bin", "forgejo-runner") if kind == "forgejo" else ("/usr/local/bin", "act_runner")


@pytest.mark.parametrize("flavour", WITH_LISTING)
async def test_job_with_a_container_runs_in_it_with_the_runner_mounted(flavour: str) -> None:
    async with forge_for(flavour) as (forge, token), provider_for(forge, token) as provider:
        _add(forge, "build")
        _add(forge, "plain")
        claims = await _claims(provider)
        folder, binary = _runner_binary(forge.world.flavour.kind)
        build, plain = claims["build"], claims["plain"]
        assert build.image == "node:20-bookworm"
        assert build.image_mounts == (
            ImageMount(image=provider.image, source=folder, target=RUNNER_MOUNT),
        )
        assert build.entrypoint[0] == f"{RUNNER_MOUNT}/{binary}"
        # otherwise the very argv the runner image would run, credentials still files
        assert plain.image == provider.image and plain.image_mounts == ()
        assert plain.entrypoint[0] == binary
        assert build.entrypoint[1:3] == plain.entrypoint[1:3]
        assert [f.path for f in build.files] == [f.path for f in plain.files]
        # one run, one workflow read (the matrix legs and sibling jobs share it)
        assert forge.count("/contents/") == 1 and forge.count("/actions/runs/77") == 1


@pytest.mark.parametrize("flavour", ["forgejo-15", "gitea-1.26"])
async def test_mapping_form_and_github_folder(flavour: str) -> None:
    async with forge_for(flavour) as (forge, token), provider_for(forge, token) as provider:
        _add(forge, "lint", folder=".github/workflows")
        claims = await _claims(provider)
        assert claims["lint"].image == "ghcr.io/acme/lint:2"
        assert forge.count("/contents/") == 2  # the forge's own folder first, then .github


async def test_expression_image_falls_back_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with forge_for("forgejo-15") as (forge, token), provider_for(forge, token) as provider:
        _add(forge, "dynamic")
        with caplog.at_level(logging.WARNING):
            claims = await _claims(provider)
        assert claims["dynamic"].image == provider.image
        assert claims["dynamic"].image_mounts == ()
        assert "is an expression" in caplog.text and "vars.IMAGE" in caplog.text


async def test_missing_or_broken_workflow_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    async with forge_for("gitea-1.26") as (forge, token), provider_for(forge, token) as provider:
        forge.world.add_job("acme/app", ["linux"], name="build", workflow="gone.yml")
        forge.world.add_file("acme/app", ".gitea/workflows/bad.yml", "jobs: [", commit=SHA)
        forge.world.add_job("acme/app", ["linux"], name="build", workflow="bad.yml", commit_sha=SHA)
        with caplog.at_level(logging.WARNING):
            events = await provider.poll_once(PollConfig(labels=LABELS))
            for i, event in enumerate(events):
                claim = await provider.claim_job(event, runner_name=f"e{i}", labels=LABELS)
                assert claim.image == provider.image and claim.image_mounts == ()
        assert "not found" in caplog.text and "not YAML" in caplog.text


async def test_forge_down_fails_the_claim_before_any_runner_exists() -> None:
    async with forge_for("forgejo-15") as (forge, token), provider_for(forge, token) as provider:
        _add(forge, "build")
        events = await provider.poll_once(PollConfig(labels=LABELS))
        forge.unavailable(path="/actions/runs/", times=1)
        with pytest.raises(ForgeUnavailable):
            await provider.claim_job(events[0], runner_name="e1", labels=LABELS)
        assert not forge.world.live_runners()
        claim = await provider.claim_job(events[0], runner_name="e2", labels=LABELS)
        assert claim.image == "node:20-bookworm"  # the retry learns it


async def test_warm_pool_runners_keep_the_runner_image() -> None:
    """Without a job list the job is unknown until the runner fetches it."""
    async with forge_for("gitea-1.20") as (forge, token), provider_for(forge, token) as provider:
        _add(forge, "build")
        claims = list((await _claims(provider)).values())
        assert claims and all(c.image == provider.image and not c.image_mounts for c in claims)
        assert forge.count("/contents/") == 0


async def test_configured_runner_path() -> None:
    async with (
        forge_for("forgejo-15") as (forge, token),
        provider_for(
            forge, token, runner_image="r.example/runner:9", runner_path="/opt/r/fr"
        ) as provider,
    ):
        _add(forge, "build")
        claim = (await _claims(provider))["build"]
        assert claim.image_mounts == (
            ImageMount(image="r.example/runner:9", source="/opt/r", target=RUNNER_MOUNT),
        )
        assert claim.entrypoint[0] == f"{RUNNER_MOUNT}/fr"


@pytest.mark.parametrize("path", ["relative/fr", "/opt/dir/"])
async def test_bad_runner_path_is_a_config_error(path: str) -> None:
    async with forge_for("forgejo-15") as (forge, token):
        with pytest.raises(ConfigError, match="runner_path"):
            options(forge, token, runner_path=path).validate(FORGEJO)
    with pytest.raises(ValueError, match="runner_path"):  # the loader names the section too
        ForgejoConfig(instance_url="https://f.example", token=Secret("t"), runner_path=path)
    section = ForgejoConfig(
        instance_url="https://f.example", token=Secret("t"), runner_path="/x/fr"
    )
    assert options_from_config(section).runner_path == "/x/fr"


async def test_scheduler_hands_the_sandbox_the_job_image_and_mount(
    tmp_path: Path, io_clock: trio.testing.MockClock
) -> None:
    async with forge_for("forgejo-15") as (forge, token), provider_for(forge, token) as provider:
        jobs = [_add(forge, "build"), _add(forge, "plain")]
        async with trio.open_nursery() as nursery:
            backend = StandInBackend(nursery, tmp_path)
            scheduler = Scheduler(
                providers=[provider],
                sandbox=backend,
                journal=Journal(tmp_path / "journal.sqlite"),
                options=SchedulerOptions(labels=HostLabels(arch="x86_64"), poll_interval=5.0),
            )
            async with trio.open_nursery() as inner:
                await inner.start(scheduler.run)
                with trio.fail_after(600):
                    await forge.world.wait_until(lambda: all(j.status == "success" for j in jobs))
                inner.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
        by_image = {spec.image: spec for spec in backend.specs}
        assert set(by_image) == {"node:20-bookworm", provider.image}
        assert by_image["node:20-bookworm"].image_mounts[0].target == RUNNER_MOUNT
        assert by_image[provider.image].image_mounts == ()
        assert not forge.world.live_runners()


async def test_memory_sandbox_records_image_mounts(tmp_path: Path) -> None:
    sandboxes = MemorySandbox(log_dir=tmp_path)
    mount = ImageMount(image="runner:1", source="/bin", target=RUNNER_MOUNT)
    handle = await sandboxes.create(SandboxSpec(name="m1", image="job:1", image_mounts=(mount,)))
    assert sandboxes.created[-1].image_mounts == (mount,)
    await handle.destroy()
    assert f"image mount runner:1:/bin at {RUNNER_MOUNT}" in handle.log_path.read_text()
