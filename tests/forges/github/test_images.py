"""fetch_job_image: the job's container: from the workflow at head_sha, matched by name."""

from __future__ import annotations

import pytest

from ephemerd.capabilities import JobAction, JobEvent
from ephemerd.forges.github import GitHubProvider
from ephemerd.forges.github._images import find_image, job_images
from tests.fakes.github import FakeGitHub

from .conftest import provider_for

SH = ["self-hosted", "linux"]

WORKFLOW = """
name: CI
on: push
jobs:
  plain:
    runs-on: [self-hosted, linux]
    container: node:20
  mapped:
    runs-on: [self-hosted, linux]
    container:
      image: ghcr.io/acme/builder:1.2
      options: --cpus 2
  build:
    runs-on: [self-hosted, linux]
    strategy:
      matrix:
        os: [debian, alpine]
        py: ["3.11", "3.12"]
    container: python:3.12
  titled:
    name: Test on ${{ matrix.os }}
    strategy:
      matrix:
        os: [a, b]
    container:
      image: "busybox:1.36"
  computed:
    container: ${{ matrix.image }}
  none:
    runs-on: self-hosted
"""


async def image_for(
    provider: GitHubProvider, fake: FakeGitHub, name: str, run_id: int
) -> str | None:
    found = next(j for r in fake.world.repos["acme/app"] for j in r.jobs if j.run_id == run_id)
    event = JobEvent(
        instance="gh",
        action=JobAction.QUEUED,
        job_id=str(found.id),
        run_id=str(run_id),
        repo="acme/app",
        job_name=name,
    )
    return await provider.fetch_job_image(event)


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("plain", "node:20"),
        ("mapped", "ghcr.io/acme/builder:1.2"),
        ("build (debian, 3.11)", "python:3.12"),
        ("build", "python:3.12"),
        ("Test on b", "busybox:1.36"),
        ("computed", None),
        ("none", None),
        ("unknown job", None),
        ("caller / callee", None),
    ],
)
async def test_container_image_by_job_name(fake: FakeGitHub, name: str, image: str | None) -> None:
    run = fake.world.add_run("acme/app", [(name, SH)], workflow=WORKFLOW)
    async with provider_for(fake) as provider:
        assert await image_for(provider, fake, name, run.id) == image


async def test_workflow_is_read_at_head_sha_and_cached_per_run(fake: FakeGitHub) -> None:
    run = fake.world.add_run("acme/app", [("plain", SH), ("mapped", SH)], workflow=WORKFLOW)
    async with provider_for(fake) as provider:
        assert await image_for(provider, fake, "plain", run.id) == "node:20"
        assert await image_for(provider, fake, "mapped", run.id) == "ghcr.io/acme/builder:1.2"
    (contents,) = [r for r in fake.requests if "/contents/" in r.path]
    assert contents.query == {"ref": run.head_sha}
    assert contents.path == "/repos/acme/app/contents/.github/workflows/ci.yml"
    assert fake.count("GET", f"/actions/runs/{run.id}") == 1


@pytest.mark.parametrize(
    "breakage", ["missing file", "bad yaml", "no jobs", "server error", "rate limited"]
)
async def test_any_failure_gives_none_never_an_exception(fake: FakeGitHub, breakage: str) -> None:
    workflow = {"missing file": None, "bad yaml": "jobs: [unclosed", "no jobs": "name: x"}.get(
        breakage, WORKFLOW
    )
    run = fake.world.add_run("acme/app", [("plain", SH)], workflow=workflow)
    if breakage == "server error":
        fake.server_error(path="/contents/")
    if breakage == "rate limited":
        fake.secondary_limit(retry_after=60)
    async with provider_for(fake) as provider:
        assert await image_for(provider, fake, "plain", run.id) is None


async def test_event_without_run_or_name_gives_none_without_requests(fake: FakeGitHub) -> None:
    async with provider_for(fake) as provider:
        event = JobEvent(instance="gh", action=JobAction.QUEUED, job_id="1", repo="acme/app")
        assert await provider.fetch_job_image(event) is None
    assert fake.requests == []


def test_ambiguous_names_give_none() -> None:
    jobs = job_images(
        "jobs:\n  a:\n    name: ${{ matrix.x }}\n    container: one\n"
        "  b:\n    name: ${{ matrix.y }}\n    container: two\n"
    )
    assert find_image(jobs, "anything") is None
