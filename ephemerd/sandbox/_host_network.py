"""The host side of job networking: the bridge, the firewall table, IP forwarding, the lock.

``open_job_network`` checks everything it can before touching the host (subnet, allow
list, DNS, name, the CNI plugins, routes that would overlap), takes the host-wide lock
on the network name (``_netlock``), then sets the shared parts up and yields the
``JobNetwork`` that attaches jobs to them. ``ip_forward`` is left on at exit: other
software on the host may rely on it by then.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from ipaddress import IPv4Network
from pathlib import Path

import trio

from ephemerd._errors import ConfigError, RuntimeUnavailable

from ._dns import DnsPlan, plan_dns
from ._firewall import EgressPolicy, build_policy, parse_subnet, render_ruleset
from ._netlock import hold_network
from ._netns import (
    check_route_overlap,
    ensure_bridge,
    forward_drop_chains,
    load_nft,
    uplink_mtu,
    write_sysctl,
)
from ._network import JobNetwork

__all__ = ["DEFAULT_SUBNET", "open_job_network"]

log = logging.getLogger(__name__)

DEFAULT_SUBNET = "10.88.0.0/16"
_NETWORK_NAME = re.compile(r"[a-z][a-z0-9]{0,13}")


@asynccontextmanager
async def open_job_network(
    *,
    data_dir: Path,
    subnet: str = DEFAULT_SUBNET,
    allow: Sequence[str] = (),
    dns: Sequence[str] | None = None,
    name: str = "ephemerd",
    cni_bin_dir: Path = Path("/usr/lib/cni"),
    host_resolv_conf: Path = Path("/etc/resolv.conf"),
    mtu: int | None = None,
    teardown_timeout: float = 10.0,
) -> AsyncGenerator[JobNetwork]:
    """Set up the bridge, the firewall table and IP forwarding; yield a ``JobNetwork``.

    Args:
        data_dir: ephemerd's data directory; address leases live in ``<data_dir>/network``.
        subnet: the IPv4 job subnet; its first address is the bridge gateway.
        allow: egress allow-list, CIDRs and ``host:port`` entries (see ``_firewall``).
        dns: explicit resolvers for jobs, or ``None`` for the host's public ones.
        name: names the bridge (``<name>0``), the nft table, the namespaces' prefix and the
            CNI network; lets two instances (or a test) share a host.
        cni_bin_dir: where the CNI plugins are.
        host_resolv_conf: the host's resolver configuration.
        mtu: MTU of the jobs' interfaces; ``None`` takes that of the host's default-route
            interface, so a smaller uplink MTU (VPN, cloud overlay) does not black-hole
            large packets.
        teardown_timeout: seconds any one teardown may take, shielded from cancellation.

    Raises:
        ConfigError: a bad subnet, allow entry, DNS entry or name, a subnet that overlaps
            a route of the host, or another ephemerd on this host owns network *name*
            (see ``_netlock``).
        RuntimeUnavailable: ``ip``, ``nft`` or a CNI plugin is missing.
        SandboxError: the host refused a step.

    Cancellation: on exit (normal, error or cancelled) every job still attached is
    detached and the table and bridge are removed, shielded.
    """
    if mtu is not None and not 576 <= mtu <= 65535:
        raise ConfigError(f"network mtu {mtu}: must be from 576 to 65535")
    if not _NETWORK_NAME.fullmatch(name):
        raise ConfigError(f"network name {name!r}: use 1-14 lowercase letters and digits")
    net = parse_subnet(subnet)
    gateway = next(net.hosts())
    dns_plan = plan_dns(dns, gateway=gateway, host_resolv_conf=host_resolv_conf)
    policy = build_policy(allow, extra_ports=dns_plan.allow)
    for plugin in ("bridge", "host-local", "loopback"):
        if not (cni_bin_dir / plugin).is_file():
            raise RuntimeUnavailable(
                f"CNI plugin {cni_bin_dir / plugin} not found (install containernetworking-plugins)"
            )
    bridge = f"{name}0"
    with hold_network(name, data_dir=data_dir):
        await check_route_overlap(net, bridge)
        async with _open_locked(
            name=name,
            net=net,
            data_dir=data_dir,
            cni_bin_dir=cni_bin_dir,
            dns_plan=dns_plan,
            policy=policy,
            mtu=mtu,
            teardown_timeout=teardown_timeout,
        ) as network:
            yield network


@asynccontextmanager
async def _open_locked(
    *,
    name: str,
    net: IPv4Network,
    data_dir: Path,
    cni_bin_dir: Path,
    dns_plan: DnsPlan,
    policy: EgressPolicy,
    mtu: int | None,
    teardown_timeout: float,
) -> AsyncGenerator[JobNetwork]:
    """The part of ``open_job_network`` that changes the host, under the network lock."""
    bridge = f"{name}0"
    gateway = next(net.hosts())
    ipam_dir = data_dir / "network"
    await trio.Path(ipam_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    network = JobNetwork(
        name=name,
        subnet=net,
        cni_bin_dir=cni_bin_dir,
        ipam_dir=ipam_dir,
        dns=dns_plan,
        mtu=mtu or await uplink_mtu(),
        teardown_timeout=teardown_timeout,
    )
    try:
        await write_sysctl("net/ipv4/ip_forward", "1")
        await ensure_bridge(bridge, f"{gateway}/{net.prefixlen}")
        # Jobs get IPv4 only; without IPv6 on the bridge they have no link-local path to the
        # host either (the input rules would reject it anyway).
        if await trio.Path(f"/proc/sys/net/ipv6/conf/{bridge}").exists():
            await write_sysctl(f"net/ipv6/conf/{bridge}/disable_ipv6", "1")
        published = any(p.published for p in policy.ports)
        await write_sysctl(f"net/ipv4/conf/{bridge}/route_localnet", "1" if published else "0")
        script = render_ruleset(
            table=name, bridge=bridge, subnet=net, gateway=gateway, policy=policy
        )
        await load_nft(script, what=f"loading nftables table inet {name}")
        for chain in await forward_drop_chains():
            log.warning(
                "nftables chain %s drops forwarded traffic by default (Docker? a host"
                " firewall?); jobs have no egress unless it accepts traffic from and to %s,"
                " e.g. iptables -I DOCKER-USER -i %s -j ACCEPT; iptables -I DOCKER-USER -o %s"
                " -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                chain,
                bridge,
                bridge,
                bridge,
            )
        yield network
    finally:
        await network.aclose()
