"""Per-job network namespaces on one ephemerd bridge, with NAT egress and deny rules.

The bridge (``<name>0``), the nftables table ``inet <name>`` (see ``_firewall``) and IP
forwarding are shared by every job; ``open_job_network`` (``_host_network``) sets them up.
``JobNetwork.prepare`` gives one job its own namespace ``/run/netns/<name>-<job>``
(the path an OCI spec's network namespace ``path`` takes) and ``connect`` joins it to the
bridge by the CNI ``bridge`` plugin with a ``host-local`` address. The two are apart so the
sandbox can create its task in the namespace while it is being connected: the CNI plugins
take about as long as containerd's task create. ``attach`` does both; ``detach`` undoes it.

Nothing about a job is kept anywhere but in the kernel and in ``host-local``'s lease files,
each named after the job, so ``sweep`` can find and remove whatever a crashed run left behind
without a journal of its own: namespaces by name prefix, leases by owner, bridge ports by
their peer. The firewall has no per-job rules at all.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from ipaddress import IPv4Network
from pathlib import Path

import msgspec
import trio

from ephemerd._errors import EphemerdError, SandboxError

from ._cni import bridge_config, cni_call, loopback_config, release_stray_leases
from ._dns import DnsPlan
from ._netns import (
    NETNS_DIR,
    add_netns,
    bridge_ports,
    delete_link,
    delete_netns,
    list_netns,
    peer_index,
    run_tool,
    set_port_isolated,
)

__all__ = ["JobAttachment", "JobNetwork"]

log = logging.getLogger(__name__)

_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
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
        self._prepared: set[str] = set()  # namespaces made, interfaces not yet
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
        """Names of the jobs attached (or with a namespace prepared) through this object."""
        return sorted({*self._attached, *self._prepared})

    def resolv_conf(self) -> bytes:
        """The ``/etc/resolv.conf`` to mount into every job (see ``_dns``)."""
        return self._dns.resolv_conf()

    async def attach(self, name: str) -> str:
        """Give job *name* its own network namespace on the bridge; return the netns path.

        ``prepare`` then ``connect``; see those.
        """
        path = await self.prepare(name)
        await self.connect(name)
        return path

    async def prepare(self, name: str) -> str:
        """Create job *name*'s network namespace, with no interface yet; return its path.

        A task may be created in it right away; ``connect`` configures it meanwhile. A
        leftover namespace of the same name (from a crashed run) is removed first.

        Raises:
            SandboxError: *name* is invalid or already has a namespace, or a step failed.

        Cancellation: safe; whatever was created is removed (shielded, bounded by the
        teardown timeout) before the cancellation propagates.
        """
        self._check(name)
        async with self._lock(name):
            if name in self._attached or name in self._prepared:
                raise SandboxError(f"network of {name} is already attached")
            ns = self._netns_name(name)
            try:
                if (NETNS_DIR / ns).exists():
                    await self._teardown(name)
                path = str(await add_netns(ns))
            except BaseException:
                await self._teardown_shielded(name)
                raise
            self._prepared.add(name)
            return path

    async def connect(self, name: str) -> None:
        """Put job *name*'s prepared namespace on the bridge: loopback, address, route.

        Raises:
            SandboxError: no namespace was prepared for *name*, or a step failed (the
                namespace is removed then).

        Cancellation: safe, as for ``prepare``.
        """
        self._check(name)
        async with self._lock(name):
            if name not in self._prepared:
                raise SandboxError(f"network of {name} has no namespace to connect")
            try:
                attachment = await self._setup(name)
            except BaseException:
                await self._teardown_shielded(name)
                self._prepared.discard(name)
                raise
            self._prepared.discard(name)
            self._attached[name] = attachment

    async def _setup(self, name: str) -> JobAttachment:
        path = self.netns_path(name)
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
                self._prepared.discard(name)
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
        keep = {*keep, *self._attached, *self._prepared, *self._busy}
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
            for name in self.attached():
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
