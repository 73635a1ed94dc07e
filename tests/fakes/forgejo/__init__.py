"""A faithful fake Forgejo/Gitea for tests: one server, a flavour switch, both codecs.

Usage::

    async with open_fake_forge("forgejo-15") as forge:
        token = forge.world.add_registration_token("/repos/acme/app")
        forge.world.api_tokens.add("pat")
        job = forge.world.add_job("acme/app", ["ubuntu-latest"])
        ...  # point a provider at forge.url; a runner fetches with its own credentials
        forge.inject(Failure(503, b"...", path="/api/v1/"))

Flavours (``FLAVOURS``): ``gitea-1.20`` (no Declare, plain errors as 500 ``unknown``, no
tasks_version, no job listing, strict JSON), ``gitea-1.26``, ``forgejo-14`` (job listing
without handles) and ``forgejo-15`` (handles, FetchSingleTask, REST runner creation,
request keys).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

from tests.fakes._asgi import serve_on_loopback

from ._app import FakeForgeApp, Recorded
from ._state import FLAVOURS, Failure, FakeJob, FakeRunner, FakeTask, ServerFlavour, World

__all__ = [
    "FLAVOURS",
    "Failure",
    "FakeForge",
    "FakeJob",
    "FakeRunner",
    "FakeTask",
    "Recorded",
    "ServerFlavour",
    "World",
    "open_fake_forge",
]


class FakeForge:
    """The running fake: ``url`` is the instance URL, ``world`` its state."""

    def __init__(self, url: str, app: FakeForgeApp) -> None:
        self.url = url
        self.app = app
        self.world = app.world

    @property
    def requests(self) -> list[Recorded]:
        return self.app.requests

    def count(self, path: str = "", method: str = "") -> int:
        return self.app.count(path, method)

    def inject(self, failure: Failure) -> None:
        self.world.failures.append(failure)

    def unavailable(self, *, path: str = "", times: int = 1) -> None:
        self.inject(Failure(503, b"<html>503 Service Unavailable</html>", path, times, "text/html"))

    def malformed(self, *, path: str = "", times: int = 1) -> None:
        self.inject(Failure(200, b'{"tasksVersion": "3", "task": {', path, times))

    def bad_credentials(self, *, path: str = "", times: int = 1) -> None:
        """The flavour's own shape of "unregistered runner"."""
        rpc = self.app.rpc
        error = rpc.error("unauthenticated", "unregistered runner")
        body = f'{{"code": "{error.code}", "message": "{error.message}"}}'.encode()
        self.inject(Failure(rpc.status_of(error.code), body, path, times))

    def unimplemented(self, method: str) -> None:
        rpc = self.app.rpc
        body = f'{{"code": "unimplemented", "message": "{method} is not implemented"}}'.encode()
        self.inject(Failure(rpc.status_of("unimplemented"), body, f"/{method}", 1_000_000))


@asynccontextmanager
async def open_fake_forge(
    flavour: str | ServerFlavour = "forgejo-15",
) -> AsyncGenerator[FakeForge, None]:
    """Serve a fresh fake of *flavour* on an ephemeral 127.0.0.1 port for the block."""
    chosen = FLAVOURS[flavour] if isinstance(flavour, str) else flavour
    app = FakeForgeApp(World(chosen))
    async with serve_on_loopback(app) as url:
        app.url = url
        yield FakeForge(app.url, app)
