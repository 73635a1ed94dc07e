"""Network namespaces, links, sysctls and nftables: the host-side plumbing CNI does not cover.

Everything goes through iproute2's ``ip`` and ``nft`` as short-lived child processes under
``trio.run_process``: they are cancellable (the child is terminated), never block the Trio
thread, and a namespace is created by ``ip netns add`` in its own process instead of by
unsharing a worker thread of the daemon. Named namespaces live in ``/run/netns``, so
``ip netns exec`` and ``nsenter --net=`` work on them, and their path goes straight into an
OCI spec's network namespace ``path``.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Network
from pathlib import Path

import msgspec
import trio

from ephemerd._errors import ConfigError, RuntimeUnavailable, SandboxError

__all__ = [
    "NETNS_DIR",
    "Link",
    "add_netns",
    "bridge_ports",
    "check_route_overlap",
    "delete_link",
    "delete_netns",
    "dropping_forward_chains",
    "ensure_bridge",
    "forward_drop_chains",
    "list_netns",
    "load_nft",
    "peer_index",
    "run_tool",
    "set_port_isolated",
    "uplink_mtu",
    "write_sysctl",
]

NETNS_DIR = Path("/run/netns")


class Link(msgspec.Struct, frozen=True):
    """One row of ``ip -j link``; unknown fields are ignored."""

    ifindex: int
    ifname: str
    link_index: int | None = None
    master: str | None = None


class _AddrInfo(msgspec.Struct, frozen=True):
    local: str
    prefixlen: int


class _AddrLink(msgspec.Struct, frozen=True):
    addr_info: list[_AddrInfo] = []


async def run_tool(
    argv: Sequence[str], *, stdin: bytes = b"", what: str, missing_ok: bool = False
) -> bytes | None:
    """Run *argv* and return its stdout.

    With *missing_ok*, a failure whose message says the object does not exist returns
    ``None`` instead of raising, which makes deletes idempotent.

    Raises:
        RuntimeUnavailable: the tool is not installed.
        SandboxError: the tool failed; the message names *what* and the tool's error line.
    """
    try:
        proc = await trio.run_process(
            list(argv), stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
        )
    except FileNotFoundError:
        raise RuntimeUnavailable(f"{argv[0]} not found (install iproute2 and nftables)") from None
    if proc.returncode == 0:
        return proc.stdout
    message = _last_line(proc)
    if missing_ok and _is_missing(message):
        return None
    raise SandboxError(f"{what}: {message}")


def _last_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else f"exit status {proc.returncode}"


def _is_missing(message: str) -> bool:
    lowered = message.lower()
    return any(
        s in lowered
        for s in ("no such file", "does not exist", "cannot find device", "no such device")
    )


def list_netns(prefix: str) -> list[str]:
    """Names of the namespaces in ``/run/netns`` starting with *prefix*."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))
    except FileNotFoundError:
        return []


async def add_netns(name: str) -> Path:
    """Create the named namespace and return its path."""
    await run_tool(["ip", "netns", "add", name], what=f"creating network namespace {name}")
    return NETNS_DIR / name


async def delete_netns(name: str) -> None:
    """Remove the named namespace if it exists. Idempotent."""
    if not (NETNS_DIR / name).exists():
        return
    await run_tool(
        ["ip", "netns", "delete", name],
        what=f"removing network namespace {name}",
        missing_ok=True,
    )


async def ensure_bridge(bridge: str, address: str) -> None:
    """Create *bridge* if missing, give it *address* (``gw/prefix``) and bring it up."""
    if not await trio.Path("/sys/class/net", bridge).exists():
        await run_tool(
            ["ip", "link", "add", "name", bridge, "type", "bridge"],
            what=f"creating bridge {bridge}",
        )
    out = await run_tool(
        ["ip", "-j", "-4", "addr", "show", "dev", bridge], what=f"reading addresses of {bridge}"
    )
    for link in msgspec.json.decode(out or b"[]", type=list[_AddrLink]):
        for info in link.addr_info:
            # A left-over address from another subnet setting would keep a stale route.
            if f"{info.local}/{info.prefixlen}" != address:
                await run_tool(
                    ["ip", "addr", "del", f"{info.local}/{info.prefixlen}", "dev", bridge],
                    what=f"removing a stale address from {bridge}",
                    missing_ok=True,
                )
    await run_tool(
        ["ip", "addr", "replace", address, "dev", bridge], what=f"addressing bridge {bridge}"
    )
    await run_tool(["ip", "link", "set", bridge, "up"], what=f"bringing bridge {bridge} up")


async def delete_link(name: str) -> None:
    """Delete a link (a veth end deletes the pair). Idempotent."""
    await run_tool(["ip", "link", "delete", name], what=f"deleting link {name}", missing_ok=True)


async def set_port_isolated(port: str) -> None:
    """Isolate a bridge port: it can talk to the bridge itself, never to another port."""
    await run_tool(
        ["ip", "link", "set", "dev", port, "type", "bridge_slave", "isolated", "on"],
        what=f"isolating bridge port {port}",
    )


async def bridge_ports(bridge: str) -> list[Link]:
    """The links enslaved to *bridge* (empty when the bridge does not exist)."""
    out = await run_tool(
        ["ip", "-j", "link", "show", "master", bridge],
        what=f"listing ports of {bridge}",
        missing_ok=True,
    )
    if not out or not out.strip():
        return []
    return msgspec.json.decode(out, type=list[Link])


async def peer_index(netns: str, ifname: str) -> int | None:
    """The host-side ifindex of the veth whose other end is *ifname* inside *netns*."""
    out = await run_tool(
        ["ip", "-n", netns, "-j", "link", "show", "dev", ifname],
        what=f"reading {ifname} in {netns}",
        missing_ok=True,
    )
    if not out or not out.strip():
        return None
    links = msgspec.json.decode(out, type=list[Link])
    return links[0].link_index if links else None


async def load_nft(script: str, *, what: str) -> None:
    """Load an ``nft -f`` script in one transaction (all of it applies, or none)."""
    await run_tool(["nft", "-f", "-"], stdin=script.encode(), what=what)


async def write_sysctl(key: str, value: str) -> None:
    """Write one sysctl, e.g. ``net/ipv4/ip_forward``.

    Raises:
        SandboxError: the sysctl does not exist or cannot be written.
    """
    path = trio.Path("/proc/sys", key)
    try:
        await path.write_text(value)
    except OSError as exc:
        raise SandboxError(f"setting sysctl {key.replace('/', '.')}={value}: {exc}") from None


class _Route(msgspec.Struct, frozen=True):
    dst: str
    dev: str = ""


async def check_route_overlap(net: IPv4Network, bridge: str) -> None:
    """Refuse a job subnet that overlaps a host route not on *bridge*.

    Raises:
        ConfigError: the subnet collides with a route; the message names it.
    """
    out = await run_tool(["ip", "-j", "-4", "route", "show"], what="reading the routing table")
    for route in msgspec.json.decode(out or b"[]", type=list[_Route]):
        if route.dst == "default" or route.dev == bridge:
            continue
        try:
            dst = ipaddress.ip_network(route.dst, strict=False)
        except ValueError:
            continue
        if isinstance(dst, IPv4Network) and dst.overlaps(net):
            raise ConfigError(
                f"job subnet {net} overlaps the host route {dst} on {route.dev or '?'} (another"
                " ephemerd's bridge, a VPN, a container network?); set another [sandbox] subnet"
            )


class _NftChain(msgspec.Struct, frozen=True):
    family: str
    table: str
    name: str
    hook: str = ""
    policy: str = ""


class _NftItem(msgspec.Struct, frozen=True):
    chain: _NftChain | None = None


class _NftListing(msgspec.Struct, frozen=True):
    nftables: list[_NftItem] = []


def dropping_forward_chains(listing: bytes) -> list[str]:
    """From ``nft -j list chains`` output, the forward-hook chains whose policy is drop."""
    try:
        items = msgspec.json.decode(listing, type=_NftListing).nftables
    except msgspec.DecodeError:
        return []
    return [
        f"{c.family} {c.table} {c.name}"
        for c in (item.chain for item in items)
        if c is not None and c.hook == "forward" and c.policy == "drop"
    ]


async def forward_drop_chains() -> list[str]:
    """The host's forward-hook chains (any table) that drop by default; [] if unreadable."""
    try:
        out = await run_tool(["nft", "-j", "list", "chains"], what="listing nftables chains")
    except SandboxError:
        return []
    return dropping_forward_chains(out or b"")


async def uplink_mtu() -> int:
    """The MTU of the interface holding the default route (1500 without one)."""
    out = await run_tool(
        ["ip", "-j", "-4", "route", "show", "default"], what="reading the default route"
    )
    for route in msgspec.json.decode(out or b"[]", type=list[_Route]):
        if route.dev:
            try:
                return int(await trio.Path("/sys/class/net", route.dev, "mtu").read_text())
            except (OSError, ValueError):
                continue
    return 1500
