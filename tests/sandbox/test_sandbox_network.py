# ruff: noqa: F811, ASYNC240  (fixtures imported from containerd_fixture shadow their names)
"""A sandbox joined to a real job network (``_network.JobNetwork``) through the hook."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from ephemerd._errors import SandboxError
from ephemerd.sandbox import (
    ContainerdClient,
    ImageStore,
    JobNetwork,
    NetworkAttacher,
    open_job_network,
    open_sandbox_backend,
)

from .containerd_fixture import Session, cd_client, containerd_session  # noqa: F401
from .sandbox_helpers import objects_of, spec, unique

pytestmark = [pytest.mark.containerd, pytest.mark.network]

SUBNET = "10.213.7.0/24"


async def test_sandbox_joins_its_job_network(
    containerd_session: Session, cd_client: ContainerdClient, tmp_path: Path
) -> None:
    net_name = "sbx" + secrets.token_hex(3)
    async with open_job_network(data_dir=tmp_path, subnet=SUBNET, name=net_name) as network:
        assert isinstance(network, NetworkAttacher)
        async with open_sandbox_backend(
            cd_client,
            data_dir=containerd_session.data_dir,
            images=ImageStore(cd_client),
            network=network,
        ) as backend:
            name = unique("net")
            handle = await backend.create(
                spec(name, "sh", "-c", "ip -4 -o addr show eth0; cat /etc/resolv.conf",
                     network="default")
            )  # fmt: skip
            try:
                await handle.start()
                outcome = await handle.wait()
                log = handle.log_path.read_text()
            finally:
                await handle.destroy()
            assert outcome.succeeded, log
            assert "inet 10.213.7." in log
            assert network.resolv_conf().decode() in log
            assert name not in network.attached()
            assert not Path(network.netns_path(name)).exists()
            assert await objects_of(cd_client, name) == []

            # network="none" skips the hook: only loopback
            handle = await backend.create(spec(unique("nonet"), "ls", "/sys/class/net"))
            try:
                await handle.start()
                assert (await handle.wait()).succeeded
                assert handle.log_path.read_text().split() == ["lo"]
            finally:
                await handle.destroy()


class _RefusesToConnect:
    """The real job network, except that connecting a namespace fails (no address left)."""

    def __init__(self, network: JobNetwork) -> None:
        self.network = network

    async def prepare(self, name: str) -> str:
        return await self.network.prepare(name)

    async def connect(self, name: str) -> None:
        await self.network.connect(name)
        await self.network.detach(name)
        raise SandboxError(f"network of {name}: no address left in the subnet")

    async def detach(self, name: str) -> None:
        await self.network.detach(name)

    def resolv_conf(self) -> bytes:
        return self.network.resolv_conf()


async def test_a_network_that_fails_while_the_task_is_created_leaves_nothing(
    containerd_session: Session, cd_client: ContainerdClient, tmp_path: Path
) -> None:
    net_name = "sbx" + secrets.token_hex(3)
    async with open_job_network(data_dir=tmp_path, subnet=SUBNET, name=net_name) as network:
        refusing = _RefusesToConnect(network)
        assert isinstance(refusing, NetworkAttacher)
        async with open_sandbox_backend(
            cd_client,
            data_dir=containerd_session.data_dir,
            images=ImageStore(cd_client),
            network=refusing,
        ) as backend:
            name = unique("refused")
            handle = await backend.create(spec(name, "true", network="default"))
            try:
                with pytest.raises(SandboxError, match="no address left"):
                    await handle.start()  # the root was mounted meanwhile: it is removed
                assert await objects_of(cd_client, name) == [
                    f"container {name}",
                    f"snapshot {name}",
                ]
            finally:
                await handle.destroy()
            assert await objects_of(cd_client, name) == []
            assert not Path(network.netns_path(name)).exists()
            assert network.attached() == []
