"""The whole sandbox layer in one block: containerd, registry, images, network, backend.

The daemon, ``ephemerd run`` and ``ephemerd images`` all need the same pieces in the same
order, and must take them down in reverse (the backend before the network, containerd
last). ``open_sandbox_stack`` is that order, written once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import msgspec
import trio

from ._backend import ContainerdSandbox, open_sandbox_backend
from ._client import ContainerdClient
from ._embedded import open_containerd
from ._host_network import DEFAULT_SUBNET, open_job_network
from ._hostimage import HOST_IMAGE, build_host_image
from ._images import ImageInfo, ImageStore
from ._logs import prune_logs
from ._network import JobNetwork
from ._reference import parse_reference
from ._registry import RegistryCredentials, open_registry_client

__all__ = ["SandboxStack", "ensure_host_image", "open_sandbox_stack"]

log = logging.getLogger("ephemerd.sandbox")

_LOG_PRUNE_INTERVAL = 3600.0


class SandboxStack(msgspec.Struct, frozen=True, kw_only=True):
    """The running sandbox layer: what the rest of ephemerd may use of it."""

    client: ContainerdClient
    images: ImageStore
    backend: ContainerdSandbox
    network: JobNetwork | None


def _canonical(reference: str) -> str:
    return str(parse_reference(reference))


@asynccontextmanager
async def open_sandbox_stack(
    *,
    data_dir: Path,
    containerd_address: str | None = None,
    network: str = "default",
    network_name: str = "ephemerd",
    subnet: str = DEFAULT_SUBNET,
    allow: Sequence[str] = (),
    insecure_registries: Sequence[str] = (),
    registry_credentials: Mapping[str, RegistryCredentials] | None = None,
    log_retention: float | None = None,
    log_dir: Path | None = None,
    runtime: str = "runc",
) -> AsyncGenerator[SandboxStack]:
    """Start (or connect to) containerd and everything built on it, for the block.

    Args:
        data_dir: ephemerd's data dir; containerd, logs and network state live below it.
        containerd_address: an existing containerd's socket; ``None`` starts a private one.
        network: ``"default"`` gives each sandbox its own netns behind the egress firewall;
            ``"none"`` gives it an empty netns (loopback only).
        network_name: names the bridge (``<name>0``), the nft table and the namespaces;
            one ephemerd per name on a host (a second one is refused, see ``_netlock``).
        subnet: the IPv4 job subnet; must not overlap another ephemerd's on the host.
        allow: CIDRs or ``host:port`` a sandbox may reach despite the private-range deny.
        insecure_registries: registries that may be reached over plain HTTP.
        registry_credentials: basic credentials per registry host.
        log_retention: seconds to keep job logs; pruned at start and hourly (``None``: forever).
        log_dir: where job logs go (``None``: ``<data_dir>/logs``).
        runtime: the OCI runtime binary sandboxes run under (runc's command line).

    Raises:
        ConfigError: a bad network name or subnet, or another ephemerd uses the network.
        RuntimeUnavailable: containerd, runc, ``ip``, ``nft`` or the CNI plugins are missing.
    """
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            open_containerd(data_dir=data_dir, address=containerd_address)
        )
        registry = await stack.enter_async_context(
            open_registry_client(
                credentials=registry_credentials, insecure_registries=insecure_registries
            )
        )
        images = ImageStore(client, source=registry, normalize=_canonical)
        job_network: JobNetwork | None = None
        if network == "default":
            job_network = await stack.enter_async_context(
                open_job_network(data_dir=data_dir, allow=allow, name=network_name, subnet=subnet)
            )
            # Whatever a previous run left attached belongs to sandboxes that are about to
            # be swept as orphans: their namespaces, links and leases go first.
            swept = await job_network.sweep(keep=())
            if swept:
                log.warning("removed the network of %d leftover sandbox(es)", len(swept))
            log.info(
                "job network %s: bridge %s, subnet %s",
                network_name,
                job_network.bridge,
                job_network.subnet,
            )
        backend = await stack.enter_async_context(
            open_sandbox_backend(
                client,
                data_dir=data_dir,
                images=images,
                network=job_network,
                log_dir=log_dir,
                runtime=runtime,
            )
        )
        nursery = await stack.enter_async_context(trio.open_nursery())
        if log_retention is not None:
            nursery.start_soon(_prune_logs_hourly, backend.log_dir, log_retention)
        try:
            yield SandboxStack(client=client, images=images, backend=backend, network=job_network)
        finally:
            nursery.cancel_scope.cancel()


async def ensure_host_image(images: ImageStore, name: str = HOST_IMAGE) -> ImageInfo:
    """The offline base image, built from the host's busybox the first time it is needed."""
    info = await images.get(images.normalize(name))
    if info is not None:
        return info
    log.info("building image %s from the host's busybox", name)
    return await build_host_image(images, name)


async def _prune_logs_hourly(log_dir: Path, retention: float) -> None:
    while True:
        removed = await trio.to_thread.run_sync(
            lambda: prune_logs(log_dir, max_age_days=retention / 86400)
        )
        if removed:
            log.info("removed %d job log(s) older than %.0f days", len(removed), retention / 86400)
        await trio.sleep(_LOG_PRUNE_INTERVAL)
