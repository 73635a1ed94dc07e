"""The agent lifecycle against the fake server: auth, version, registration, health."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpclib.client
import grpclib.const
import grpclib.exceptions
import pytest

from ephemerd._aio import open_aio_loop, run_aio
from ephemerd._errors import ForgeAuthError, ForgeProtocolError
from ephemerd._proto import proto as pb
from ephemerd.forges.woodpecker import HEALTH_STATUS
from tests.fakes.woodpecker import FakeWoodpecker, open_fake_woodpecker

from .conftest import SECRET, provider_for


async def test_registers_with_capacity_labels_and_reports_health(
    fake: FakeWoodpecker, tmp_path: Path
) -> None:
    state = fake.state
    async with provider_for(fake, tmp_path, max_concurrent=3, labels={"gpu": "yes"}) as provider:
        await provider.agent.register()
        await state.wait_health(2)
        agent_id = provider.agent_id
        assert provider.agent.labels() == {
            "hostname": "ci-host",
            "platform": "linux/amd64",
            "backend": "ephemerd",
            "repo": "*",
            "gpu": "yes",
        }
    agent = state.agents[agent_id]
    assert agent.system and agent.info is not None
    assert (agent.info.capacity, agent.info.backend, agent.info.platform) == (
        3,
        "ephemerd",
        "linux/amd64",
    )
    assert agent.info.custom_labels == {"gpu": "yes"}
    assert state.health_statuses[:2] == [HEALTH_STATUS, HEALTH_STATUS] == ["I am alive!"] * 2
    assert [name for name, _ in state.calls[:3]] == ["Version", "RegisterAgent", "ReportHealth"]
    assert {who for _, who in state.calls} == {agent_id}


async def test_refuses_a_server_on_another_protocol_version(tmp_path: Path) -> None:
    async with open_fake_woodpecker(agent_secret=SECRET, check_version=False) as fake:
        fake.state.grpc_version = 17
        async with provider_for(fake, tmp_path) as provider:
            with pytest.raises(ForgeProtocolError, match=r"protocol 17 .*ephemerd speaks 16"):
                await provider.agent.register()
    assert all(name != "RegisterAgent" for name, _ in fake.state.calls)


async def test_a_server_checking_the_proto_version_header_refuses_a_mismatch(
    fake: FakeWoodpecker, tmp_path: Path
) -> None:
    fake.state.grpc_version = 15  # our header says 16
    async with provider_for(fake, tmp_path) as provider:
        with pytest.raises(ForgeProtocolError, match="proto version mismatch"):
            await provider.agent.register()


async def test_an_individual_agent_token_authenticates_as_that_agent(
    fake: FakeWoodpecker, tmp_path: Path
) -> None:
    agent = fake.state.add_agent_token("agent-token-42")
    async with provider_for(fake, tmp_path, agent_secret="", agent_token="agent-token-42") as p:
        await p.agent.register()
        assert p.agent_id == agent.id
    assert list(fake.state.agents) == [agent.id]  # no system agent created


async def test_a_wrong_credential_is_a_clear_auth_error(
    fake: FakeWoodpecker, tmp_path: Path
) -> None:
    async with provider_for(fake, tmp_path, agent_secret="wrong") as provider:
        with pytest.raises(ForgeAuthError, match="agent could not auth"):
            await provider.agent.register()


async def test_a_restart_reuses_the_agent_id(fake: FakeWoodpecker, tmp_path: Path) -> None:
    state = fake.state
    async with provider_for(fake, tmp_path) as provider:
        await provider.agent.register()
        first = provider.agent_id
    path = tmp_path / "woodpecker-wp.agent.json"
    assert json.loads(path.read_text()) == {"agent_id": first}
    assert os.stat(path).st_mode & 0o777 == 0o600
    async with provider_for(fake, tmp_path) as provider:
        await provider.agent.register()
        assert provider.agent_id == first
    assert [a.id for a in state.agents.values() if a.system] == [first]
    assert not state.agents[first].unregistered  # kept for the next start


async def test_an_agent_id_the_server_forgot_is_replaced(
    fake: FakeWoodpecker, tmp_path: Path
) -> None:
    path = tmp_path / "woodpecker-wp.agent.json"
    path.write_text(json.dumps({"agent_id": 999}))
    async with provider_for(fake, tmp_path) as provider:
        await provider.agent.register()
        new = provider.agent_id
    assert new != 999 and new in fake.state.agents
    assert json.loads(path.read_text()) == {"agent_id": new}


async def test_an_agent_whose_id_cannot_be_kept_unregisters_at_stop(
    fake: FakeWoodpecker, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    async with provider_for(fake, blocker / "state") as provider:
        await provider.agent.register()
        agent_id = provider.agent_id
        assert agent_id in fake.state.agents
    assert agent_id not in fake.state.agents  # a system agent is deleted by UnregisterAgent
    assert ("UnregisterAgent", agent_id) in fake.state.calls


async def test_an_unauthenticated_reply_reauthenticates(
    fake: FakeWoodpecker, tmp_path: Path
) -> None:
    state = fake.state
    async with provider_for(fake, tmp_path) as provider:
        await provider.agent.register()
        await state.wait_health(1)
        state.revoke_tokens()
        seen = len(state.health_statuses)
        await state.wait_health(seen + 2)
        assert provider.agent_id in state.agents


async def test_the_fake_requires_a_token_and_the_exact_health_string(
    fake: FakeWoodpecker,
) -> None:
    async def call(metadata: dict[str, str]) -> pb.VersionResponse:
        channel = grpclib.client.Channel("127.0.0.1", fake.port)
        try:
            return await pb.WoodpeckerStub(channel).version(pb.Empty(), metadata=metadata)
        finally:
            channel.close()

    async with open_aio_loop():
        with pytest.raises(grpclib.exceptions.GRPCError) as caught:
            await run_aio(call, {})
        assert caught.value.status is grpclib.const.Status.UNAUTHENTICATED
        with pytest.raises(grpclib.exceptions.GRPCError) as caught:
            await run_aio(call, {"token": "forged"})
        assert caught.value.status is grpclib.const.Status.UNAUTHENTICATED
    reply = await fake.state.auth(pb.AuthRequest(agent_token=SECRET, agent_id=-1))
    with pytest.raises(grpclib.exceptions.GRPCError, match="Are you alive"):
        await fake.state.report_health(reply.agent_id, pb.ReportHealthRequest(status="ok"))


async def test_an_agent_the_server_forgot_comes_back_registered(
    fake: FakeWoodpecker, tmp_path: Path
) -> None:
    state = fake.state
    async with provider_for(fake, tmp_path, max_concurrent=4) as provider:
        await provider.agent.register()
        old = provider.agent_id
        del state.agents[old]  # an admin deleted the agent
        state.revoke_tokens()
        while not any(a.info is not None and a.id != old for a in state.agents.values()):
            await state.wait_health(len(state.health_statuses) + 1)
        new = provider.agent_id
    assert new != old
    info = state.agents[new].info
    assert info is not None and info.capacity == 4
    assert json.loads((tmp_path / "woodpecker-wp.agent.json").read_text()) == {"agent_id": new}
