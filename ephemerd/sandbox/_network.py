"""Per-job network namespaces on one ephemerd bridge, with NAT egress and deny rules.

``open_job_network`` owns the shared parts: the bridge (``<name>0``), the nftables table
``inet <name>`` (see ``_firewall``) and ``net.ipv4.ip_forward=1``, which routing jobs to the
internet needs. ``ip_forward`` is left on at exit: other software on the host may rely on it
by then. ``JobNetwork.attach`` gives one job its own namespace ``/run/netns/<name>-<job>``,
joined to the bridge by the CNI ``bridge`` plugin with a ``host-local`` address; the returned
path is what an OCI spec's network namespace ``path`` takes. ``detach`` undoes it.

Nothing about a job is kept anywhere but in the kernel and in ``host-local``'s lease files,
each named after the job, so ``sweep`` can find and remove whatever a crashed run left behind
without a journal of its own: namespaces by name prefix, leases by owner, bridge ports by
their peer. The firewall has no per-job rules at all.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, Collection, Sequence
from contextlib import asynccontextmanager
from ipaddress import IPv4Network
from pathlib import Path

import msgspec
import trio

from ephemerd._errors import ConfigError, EphemerdError, RuntimeUnavailable, SandboxError

from ._cni import bridge_config, cni_call, loopback_config, release_stray_leases
from ._dns import DnsPlan, plan_dns
from ._firewall import EgressPolicy, build_policy, parse_subnet, render_ruleset
from ._netlock import hold_network
from ._netns import (
    NETNS_DIR,
    add_netns,
    bridge_ports,
    check_route_overlap,
    delete_link,
    delete_netns,
    ensure_bridge,
    forward_drop_chains,
    list_netns,
    load_nft,
    peer_index,
    run_tool,
    set_port_isolated,
    uplink_mtu,
    write_sysctl,
)

__all__ = ["DEFAULT_SUBNET", "JobAttachment", "JobNetwork", "open_job_network"]

log = logging.getLogger(__name__)

DEFAULT_SUBNET = "10.88.0.0/16"
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_NETWORK_NAME = re.compile(r"[a-z][a-z0-9]{0,13}")
_IFNAME = "eth0"


class JobAttachment(msgspec.Struct, frozen=True, kw_only=True):
    """What ``attach`` set up for one job."""

    netns: str
    address: str
    gateway: str


class JobNetwork:
    """Attaches jobs to the ephemerd bridge. Create it with ``open_job_network``."""

    def __init__(
        self,
        *,
        name: str,
        subnet: IPv4Network,
        cni_bin_dir: Path,
        ipam_dir: Path,
        dns: DnsPlan,
        mtu: int,
        teardown_timeout: float,
    ) -> None:
        self._name = name
        self._bridge = f"{name}0"
        self._subnet = subnet
        self._gateway = next(subnet.hosts())
        self._bridge_plugin = cni_bin_dir / "bridge"
        self._loopback_plugin = cni_bin_dir / "loopback"
        self._ipam_dir = ipam_dir
        self._bridge_conf = bridge_config(
            network=name,
            bridge=self._bridge,
            subnet=subnet,
            gateway=self._gateway,
            ipam_dir=ipam_dir,
            mtu=mtu,
        )
        self._dns = dns
        self._teardown_timeout = teardown_timeout
        self._attached: dict[str, JobAttachment] = {}
        self._busy: dict[str, trio.Lock] = {}
        self._closed = False

    @property
    def bridge(self) -> str:
        return self._bridge

    @property
    def gateway(self) -> str:
        """The bridge's address: where jobs reach allow-listed host-loopback services."""
        return str(self._gateway)

    @property
    def subnet(self) -> str:
        return str(self._subnet)

    def netns_path(self, name: str) -> str:
        """Where the namespace of job *name* is (or would be) bound."""
        return str(NETNS_DIR / self._netns_name(name))

    def attachment(self, name: str) -> JobAttachment | None:
        """What ``attach`` set up for *name*, if it is attached through this object."""
        return self._attached.get(name)

    def attached(self) -> list[str]:
        """Names of the jobs attached through this object."""
        return sorted(self._attached)

    def resolv_conf(self) -> bytes:
        """The ``/etc/resolv.conf`` to mount into every job (see ``_dns``)."""
        return self._dns.resolv_conf()

    async def attach(self, name: str) -> str:
        """Give job *name* its own network namespace on the bridge; return the netns path.

        A leftover namespace of the same name (from a crashed run) is removed first.

        Raises:
            SandboxError: *name* is invalid or already attached, or a step failed.

        Cancellation: safe; whatever was created is removed (shielded, bounded by the
        teardown timeout) before the cancellation propagates.
        """
        self._check(name)
        async with self._lock(name):
            if name in self._attached:
                raise SandboxError(f"network of {name} is already attached")
            try:
                attachment = await self._setup(name)
            except BaseException:
                await self._teardown_shielded(name)
                raise
            self._attached[name] = attachment
            return attachment.netns

    async def _setup(self, name: str) -> JobAttachment:
        ns = self._netns_name(name)
        if (NETNS_DIR / ns).exists():
            await self._teardown(name)
        path = str(await add_netns(ns))
        await cni_call(
            self._loopback_plugin,
            "ADD",
            loopback_config(network=self._name),
            container_id=name,
            netns=path,
            ifname="lo",
        )
        result = await cni_call(
            self._bridge_plugin,
            "ADD",
            self._bridge_conf,
            container_id=name,
            netns=path,
            ifname=_IFNAME,
        )
        veth = result.host_veth(self._bridge)
        if veth is None or not result.ips:
            raise SandboxError(f"CNI bridge ADD for {name} returned no host veth or address")
        await set_port_isolated(veth)
        address = result.ips[0].address.partition("/")[0]
        return JobAttachment(netns=path, address=address, gateway=str(self._gateway))

    async def detach(self, name: str) -> None:
        """Remove job *name*'s namespace, veth pair and address lease. Idempotent.

        Raises:
            SandboxError: a step failed, or teardown took longer than its timeout.

        Cancellation: shielded; teardown runs to completion (bounded by the teardown
        timeout) even if the caller is cancelled.
        """
        self._check(name, closing_ok=True)
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._teardown_timeout
            async with self._lock(name):
                await self._teardown(name)
                self._attached.pop(name, None)
        if scope.cancelled_caught:
            raise SandboxError(f"detaching network of {name} took over {self._teardown_timeout:g}s")

    async def sweep(self, keep: Collection[str]) -> list[str]:
        """Remove every namespace, lease and bridge port of ours whose job is not in *keep*.

        Meant for start-up, with *keep* = the jobs the journal says are still alive. Jobs
        attached (or being attached) through this object are always kept. Returns the names
        of the namespaces removed.

        Raises:
            SandboxError: a removal failed (after trying every other one).
        """
        keep = {*keep, *self._attached, *self._busy}
        prefix = f"{self._name}-"
        swept: list[str] = []
        errors: list[EphemerdError] = []
        for ns in list_netns(prefix):
            name = ns.removeprefix(prefix)
            if name in keep:
                continue
            try:
                async with self._lock(name):
                    await self._teardown(name)
                swept.append(name)
            except EphemerdError as exc:
                errors.append(exc)
        leases = await release_stray_leases(self._ipam_dir / self._name, keep)
        # Ports are listed before the namespaces are read: a port appears on the bridge only
        # after its peer is inside a namespace, so an attach in flight is never mistaken.
        ports = await bridge_ports(self._bridge)
        valid: set[int] = set()
        for ns in list_netns(prefix):
            index = await peer_index(ns, _IFNAME)
            if index is not None:
                valid.add(index)
        stray = [p.ifname for p in ports if p.ifindex not in valid]
        for port in stray:
            try:
                await delete_link(port)
            except EphemerdError as exc:
                errors.append(exc)
        if swept or leases or stray:
            log.info(
                "swept %d namespaces, %d leases, %d bridge ports left by earlier runs",
                len(swept),
                len(leases),
                len(stray),
            )
        if errors:
            raise SandboxError(f"sweeping job networks: {errors[0]}")
        return swept

    async def aclose(self) -> None:
        """Detach every job attached through this object; remove the table and the bridge."""
        self._closed = True
        with trio.CancelScope(shield=True):
            for name in list(self._attached):
                try:
                    await self.detach(name)
                except EphemerdError as exc:
                    log.warning("leaving network of %s for the next sweep: %s", name, exc)
            with trio.move_on_after(self._teardown_timeout):
                try:
                    await run_tool(
                        ["nft", "delete", "table", "inet", self._name],
                        what=f"deleting nftables table inet {self._name}",
                        missing_ok=True,
                    )
                except EphemerdError as exc:
                    log.warning("%s", exc)
                try:
                    await delete_link(self._bridge)
                except EphemerdError as exc:
                    log.warning("%s", exc)

    def _check(self, name: str, *, closing_ok: bool = False) -> None:
        if not _JOB_NAME.fullmatch(name):
            raise SandboxError(f"invalid sandbox name for a network namespace: {name!r}")
        if self._closed and not closing_ok:
            raise SandboxError("the job network is closed")

    def _netns_name(self, name: str) -> str:
        return f"{self._name}-{name}"

    def _lock(self, name: str) -> _NameLock:
        return _NameLock(self._busy, name)

    async def _teardown(self, name: str) -> None:
        ns = self._netns_name(name)
        path = NETNS_DIR / ns
        errors: list[SandboxError] = []
        try:
            await self._cni_del(name, str(path) if path.exists() else None)
        except SandboxError:
            # The namespace may be half-made (its mount point not bound yet): release the
            # lease alone; the veth, if any, dies with the namespace below.
            try:
                await self._cni_del(name, None)
            except SandboxError as exc:
                errors.append(exc)
        try:
            await delete_netns(ns)
        except SandboxError as exc:
            errors.append(exc)
        if errors:
            raise errors[0]

    async def _cni_del(self, name: str, netns: str | None) -> None:
        await cni_call(
            self._bridge_plugin,
            "DEL",
            self._bridge_conf,
            container_id=name,
            netns=netns,
            ifname=_IFNAME,
        )

    async def _teardown_shielded(self, name: str) -> None:
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._teardown_timeout
            try:
                await self._teardown(name)
            except EphemerdError as exc:
                log.warning("network of %s left for the next sweep: %s", name, exc)
        if scope.cancelled_caught:
            log.warning("network teardown of %s timed out; left for the next sweep", name)


class _NameLock:
    """One lock per job name, dropped from the table when nobody holds or waits for it."""

    def __init__(self, table: dict[str, trio.Lock], name: str) -> None:
        self._table = table
        self._name = name

    async def __aenter__(self) -> None:
        lock = self._table.setdefault(self._name, trio.Lock())
        try:
            await lock.acquire()
        except BaseException:
            self._forget(lock)
            raise

    def _forget(self, lock: trio.Lock) -> None:
        stats = lock.statistics()
        if not stats.locked and stats.tasks_waiting == 0:
            self._table.pop(self._name, None)

    async def __aexit__(self, *exc: object) -> None:
        lock = self._table[self._name]
        lock.release()
        self._forget(lock)


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
