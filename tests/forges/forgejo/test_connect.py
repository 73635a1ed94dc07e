"""The ConnectRPC client against the fake server, every flavour, both codecs."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from ephemerd._errors import (
    ForgeAuthError,
    ForgeConflict,
    ForgeError,
    ForgeNotFound,
    ForgeProtocolError,
    ForgeUnavailable,
)
from ephemerd._proto.runner.v1 import LogRow, Result, TaskState, UpdateLogRequest, UpdateTaskRequest
from ephemerd.forges._actions import JSON_TYPE, PROTO_TYPE, ConnectClient, RunnerCredentials
from tests.fakes.forgejo import FLAVOURS, FakeForge, open_fake_forge

ALL = sorted(FLAVOURS)


@asynccontextmanager
async def client_for(
    flavour: str, codec: str = JSON_TYPE
) -> AsyncGenerator[tuple[FakeForge, ConnectClient], None]:
    async with open_fake_forge(flavour) as forge, httpx.AsyncClient(base_url=forge.url) as http:
        yield forge, ConnectClient(http, forge=f"fake {flavour}", codec=codec)


async def _register(
    forge: FakeForge, client: ConnectClient, labels: list[str] | None = None
) -> RunnerCredentials:
    token = forge.world.add_registration_token("/repos/acme/app")
    runner = await client.register(
        token=token, name="r1", labels=labels or ["linux:host"], version="t"
    )
    assert runner.ephemeral
    return RunnerCredentials(uuid=runner.uuid, token=runner.token)


@pytest.mark.parametrize("codec", [JSON_TYPE, PROTO_TYPE])
@pytest.mark.parametrize("flavour", ALL)
async def test_register_fetch_report(flavour: str, codec: str) -> None:
    async with client_for(flavour, codec) as (forge, client):
        assert await client.ping("x") == "Hello, x!"
        creds = await _register(forge, client)
        job = forge.world.add_job("acme/app", ["linux"])
        answer = await client.fetch_task(creds)
        assert answer.task.id == job.task_id
        assert answer.task.workflow_payload and b"build" in answer.task.workflow_payload
        log = UpdateLogRequest(
            task_id=answer.task.id, rows=[LogRow(content="a"), LogRow(content="b")]
        )
        assert (await client.update_log(creds, log)).ack_index == 2
        done = UpdateTaskRequest(state=TaskState(id=answer.task.id, result=Result.SUCCESS))
        reply = await client.update_task(creds, done)
        assert reply.state.result == Result.SUCCESS
        assert job.status == "success"
        # the ephemeral runner is gone after its task
        assert not forge.world.live_runners()
        assert forge.count("/FetchTask") == 1


async def test_context_arrives_as_plain_json() -> None:
    async with client_for("forgejo-15", PROTO_TYPE) as (forge, client):
        creds = await _register(forge, client)
        forge.world.add_job("acme/app", ["linux"])
        task = (await client.fetch_task(creds)).task
        assert task.context.fields["repository"].string_value == "acme/app"


async def test_tasks_version_short_cuts_idle_fetches() -> None:
    async with client_for("gitea-1.26") as (forge, client):
        creds = await _register(forge, client)
        idle = await client.fetch_task(creds)
        assert not idle.task.id and idle.tasks_version >= 1
        picks = forge.world.picks
        same = await client.fetch_task(creds, tasks_version=idle.tasks_version)
        assert not same.task.id and forge.world.picks == picks  # nothing new: not even looked
        forge.world.add_job("acme/app", ["linux"])
        fresh = await client.fetch_task(creds, tasks_version=idle.tasks_version)
        assert fresh.task.id and fresh.tasks_version > idle.tasks_version


async def test_labels_must_be_satisfied() -> None:
    async with client_for("forgejo-14") as (forge, client):
        creds = await _register(forge, client, ["linux:host"])
        forge.world.add_job("acme/app", ["linux", "gpu"])
        assert not (await client.fetch_task(creds)).task.id


async def test_only_the_fetching_runner_owns_the_task() -> None:
    async with client_for("forgejo-15") as (forge, client):
        first = await _register(forge, client)
        second = await _register(forge, client)
        forge.world.add_job("acme/app", ["linux"])
        task = (await client.fetch_task(first)).task
        with pytest.raises(ForgeUnavailable, match="invalid runner for task"):
            await client.update_task(second, UpdateTaskRequest(state=TaskState(id=task.id)))


async def test_cancel_surfaces_in_update_task() -> None:
    async with client_for("forgejo-15") as (forge, client):
        creds = await _register(forge, client)
        job = forge.world.add_job("acme/app", ["linux"])
        task = (await client.fetch_task(creds)).task
        forge.world.cancel(job)
        reply = await client.update_task(creds, UpdateTaskRequest(state=TaskState(id=task.id)))
        assert reply.state.result == Result.CANCELLED


async def test_log_ack_rules_and_archive() -> None:
    async with client_for("gitea-1.26") as (forge, client):
        creds = await _register(forge, client)
        forge.world.add_job("acme/app", ["linux"])
        task_id = (await client.fetch_task(creds)).task.id

        def rows(*texts: str) -> list[LogRow]:
            return [LogRow(content=t) for t in texts]

        assert (
            await client.update_log(creds, UpdateLogRequest(task_id=task_id, rows=rows("a", "b")))
        ).ack_index == 2
        # a resend overlapping the acked rows appends only the new one
        overlap = UpdateLogRequest(task_id=task_id, index=1, rows=rows("b", "c"))
        assert (await client.update_log(creds, overlap)).ack_index == 3
        gap = UpdateLogRequest(task_id=task_id, index=7, rows=rows("z"))
        assert (await client.update_log(creds, gap)).ack_index == 3
        await client.update_log(creds, UpdateLogRequest(task_id=task_id, index=3, no_more=True))
        with pytest.raises(ForgeConflict, match="archived"):
            await client.update_log(
                creds, UpdateLogRequest(task_id=task_id, index=3, rows=rows("d"))
            )


@pytest.mark.parametrize(
    ("flavour", "status"), [("gitea-1.20", 500), ("gitea-1.26", 401), ("forgejo-15", 401)]
)
async def test_bad_credentials_in_each_flavours_shape(flavour: str, status: int) -> None:
    async with client_for(flavour) as (forge, client):
        with pytest.raises(ForgeAuthError, match="unregistered runner"):
            await client.fetch_task(RunnerCredentials(uuid="nope", token="nope"))
        assert forge.requests[-1].status == status
        with pytest.raises(ForgeAuthError):
            await client.register(token="wrong", name="r", labels=["x:host"], version="t")


async def test_unimplemented_declare_is_not_found() -> None:
    async with client_for("gitea-1.20") as (forge, client):
        creds = await _register(forge, client)
        with pytest.raises(ForgeNotFound, match="unimplemented"):
            await client.declare(creds, labels=["linux"], version="t")
        assert forge.requests[-1].status == 404  # old connect-go table
    async with client_for("gitea-1.26") as (forge, client):
        creds = await _register(forge, client)
        runner = await client.declare(creds, labels=["linux", "arm64"], version="t2")
        assert runner.labels == ["linux", "arm64"]
        forge.unimplemented("Declare")
        with pytest.raises(ForgeNotFound):
            await client.declare(creds, labels=["linux"], version="t")
        assert forge.requests[-1].status == 501  # new table: the code decides, not the status


async def test_unknown_fields_are_never_sent() -> None:
    # old connect-go rejects unknown JSON fields: everything we send must be a real field
    async with client_for("gitea-1.20") as (forge, client):
        creds = await _register(forge, client)
        forge.world.add_job("acme/app", ["linux"])
        task = (await client.fetch_task(creds, task_capacity=None)).task
        await client.update_task(
            creds, UpdateTaskRequest(state=TaskState(id=task.id, result=Result.FAILURE))
        )


async def test_server_errors_and_garbage() -> None:
    async with client_for("forgejo-15") as (forge, client):
        creds = await _register(forge, client)
        forge.unavailable(path="/FetchTask")
        with pytest.raises(ForgeUnavailable, match="unavailable"):
            await client.fetch_task(creds)
        forge.malformed(path="/FetchTask")
        with pytest.raises(ForgeProtocolError, match="unreadable answer"):
            await client.fetch_task(creds)
        forge.bad_credentials(path="/FetchTask")
        with pytest.raises(ForgeAuthError):
            await client.fetch_task(creds)
        assert (await client.fetch_task(creds)).tasks_version >= 1


async def test_request_key_is_idempotent_and_locked() -> None:
    async with client_for("forgejo-15") as (forge, client):
        creds = await _register(forge, client)
        job = forge.world.add_job("acme/app", ["linux"])
        first = await client.fetch_single_task(creds, handle=job.handle, request_key="k")
        again = await client.fetch_single_task(creds, handle=job.handle, request_key="k")
        assert first.task.id == again.task.id != 0  # a lost answer is recovered, not re-claimed
        forge.app.hold_fetch = trio.Event()
        errors: list[ForgeError] = []

        async def held() -> None:
            await client.fetch_single_task(creds, request_key="k2")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(held)
            await trio.testing.wait_all_tasks_blocked()
            try:
                await client.fetch_single_task(creds, request_key="k2")
            except ForgeError as exc:
                errors.append(exc)
            forge.app.hold_fetch.set()
        assert len(errors) == 1 and errors[0].retryable
        assert "locked" in str(errors[0])


async def test_fetch_single_task_needs_forgejo_15() -> None:
    async with client_for("forgejo-14") as (forge, client):
        creds = await _register(forge, client)
        with pytest.raises(ForgeNotFound):
            await client.fetch_single_task(creds, handle="h")


async def test_network_failure_is_unavailable() -> None:
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as http:
        client = ConnectClient(http, forge="nowhere")
        with pytest.raises(ForgeUnavailable, match="nowhere Ping"):
            await client.ping()
