"""pytest fixtures for the registry tests: real registries (per session) and the fake."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator

import hypercorn
import hypercorn.trio
import pytest
import trio

from tests.fakes.registry import FakeRegistry, RealRegistry, TokenServer, run_registry

USERS = {"alice": "s3cret"}


@pytest.fixture(scope="session")
def real_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRegistry]:
    with run_registry(tmp_path_factory.mktemp("registry-anon")) as registry:
        yield registry


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRegistry]:
    with run_registry(tmp_path_factory.mktemp("registry-basic"), users=USERS) as registry:
        yield registry


@pytest.fixture(scope="session")
def token_server() -> Iterator[TokenServer]:
    with TokenServer(users=USERS).serve() as server:
        yield server


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[RealRegistry]:
    root = tmp_path_factory.mktemp("registry-token")
    with run_registry(root, token=token_server) as registry:
        yield registry


async def serve_fake(nursery: trio.Nursery, fake: FakeRegistry, host: str = "127.0.0.1") -> str:
    config = hypercorn.Config()
    config.bind = [f"{host}:0"]
    config.accesslog = None
    config.errorlog = None
    urls: list[str] = await nursery.start(functools.partial(hypercorn.trio.serve, fake, config))
    return urls[0]


@pytest.fixture
async def fake_registry(nursery: trio.Nursery) -> AsyncIterator[FakeRegistry]:
    fake = FakeRegistry()
    fake.url = await serve_fake(nursery, fake)
    yield fake
