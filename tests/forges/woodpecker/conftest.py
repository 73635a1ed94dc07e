"""Fixtures: a fake Woodpecker server on loopback, providers pointed at it, a scheduler."""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from ephemerd._retry import RetryPolicy
from ephemerd.forges.woodpecker import (
    WoodpeckerOptions,
    WoodpeckerProvider,
    open_woodpecker_provider,
)
from ephemerd.scheduler import HostLabels, Journal, Scheduler, SchedulerOptions
from ephemerd.testing import MemorySandbox
from tests.fakes.woodpecker import FakeWoodpecker, open_fake_woodpecker

SECRET = "agent-secret-0123456789"
IMAGE = "registry.test/ci/alpine:3"


def step(
    name: str,
    *,
    entrypoint: list[str] | None = None,
    commands: list[str] | None = None,
    image: str = IMAGE,
    **extra: Any,
) -> dict[str, Any]:
    """One step of a payload, as a server compiles it (on_success set)."""
    out: dict[str, Any] = {
        "name": name,
        "uuid": f"uuid-{name}",
        "type": "commands",
        "image": image,
        "on_success": True,
        "environment": {"CI_REPO": "acme/app", "CI_PIPELINE_NUMBER": "7"},
    }
    if entrypoint is not None:
        out["entrypoint"] = entrypoint
    if commands is not None:
        out["commands"] = commands
    out.update(extra)
    return out


def payload(*steps: dict[str, Any], **extra: Any) -> bytes:
    """A workflow payload with one stage per step."""
    return msgspec.json.encode({"pipeline": [{"steps": [s]} for s in steps], **extra})


@pytest.fixture
async def fake() -> AsyncGenerator[FakeWoodpecker]:
    async with open_fake_woodpecker(agent_secret=SECRET) as server:
        yield server


def options(fake: FakeWoodpecker, state_dir: Path, **overrides: Any) -> WoodpeckerOptions:
    base: dict[str, Any] = {
        "name": "wp",
        "server": fake.address,
        "agent_secret": SECRET,
        "state_dir": state_dir,
        "max_concurrent": 2,
        "hostname": "ci-host",
        "health_interval": 0.2,
        "extend_interval": 0.1,
        "log_flush_interval": 0.05,
        "rpc_timeout": 5.0,
        "report_timeout": 30.0,
        "retry": RetryPolicy.exponential(first=0.02, cap=0.2, jitter=0.0),
    }
    base.update(overrides)
    return WoodpeckerOptions(**base)


@asynccontextmanager
async def provider_for(
    fake: FakeWoodpecker, state_dir: Path, **overrides: Any
) -> AsyncGenerator[WoodpeckerProvider]:
    async with open_woodpecker_provider(options(fake, state_dir, **overrides)) as provider:
        yield provider


class Rig:
    """A scheduler on a memory sandbox, with a Woodpecker provider against the fake."""

    def __init__(self, tmp_path: Path, fake: FakeWoodpecker) -> None:
        self.tmp_path = tmp_path
        self.fake = fake
        self.sandbox = MemorySandbox(log_dir=tmp_path / "logs")
        self.journal = Journal(tmp_path / "journal.sqlite")

    @asynccontextmanager
    async def running(
        self, *, max_concurrent: int = 2, **overrides: Any
    ) -> AsyncGenerator[tuple[Scheduler, WoodpeckerProvider]]:
        opts = options(
            self.fake, self.tmp_path / "state", max_concurrent=max_concurrent, **overrides
        )
        async with open_woodpecker_provider(opts) as provider:
            scheduler = Scheduler(
                providers=[provider],
                sandbox=self.sandbox,
                journal=self.journal,
                options=SchedulerOptions(
                    max_concurrent=max_concurrent,
                    labels=HostLabels(arch="x86_64"),
                    poll_interval=5.0,
                ),
                rng=random.Random(7),
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(scheduler.run)
                yield scheduler, provider
                nursery.cancel_scope.cancel()


@pytest.fixture
def rig(tmp_path: Path, fake: FakeWoodpecker) -> Iterator[Rig]:
    r = Rig(tmp_path, fake)
    yield r
    r.journal.close()
