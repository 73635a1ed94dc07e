"""The egress policy of job networks, parsed from config and rendered as one nftables table.

Every rule is per bridge, none per job: a job's traffic is recognised by the interface it
arrives on (the ephemerd bridge) and by the job subnet. So attaching or detaching a job never
touches the firewall, a crash cannot leave a job's rule behind, and deleting the one table
removes everything. The table is loaded in a single ``nft -f`` transaction that replaces any
previous copy atomically; no other table is read or flushed.

What a job may reach:

* the internet: anything outside ``DENY_V4`` / ``DENY_V6`` (private, loopback, link-local,
  CGNAT, ULA, multicast, reserved), masqueraded behind the host;
* never another job: ports of the bridge are isolated at layer 2 (set per port at attach),
  and routed traffic back into the bridge or into the job subnet is rejected;
* never the host itself (any of its addresses, on any port), except the allow-listed
  ``host:port`` entries;
* allow-listed CIDRs and ``host:port`` entries, even inside the denied ranges.

A host-loopback service (``127.0.0.1:5000``) cannot be reached as 127.0.0.1 from a job: that is
the job's own loopback. An allow-listed loopback ``host:port`` is therefore *published on the
bridge gateway address, same port*: a DNAT rule rewrites ``gateway:port`` to the loopback
address, and ``route_localnet`` is enabled on the ephemerd bridge only (never globally) so the
kernel accepts the rewritten packet. Jobs reach a local registry mirror on 127.0.0.1:5000 as
``<gateway>:5000``.

Rejections are ``icmpx admin-prohibited`` so a denied connection fails at once instead of
timing out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Literal

import msgspec

from ephemerd._errors import ConfigError

__all__ = [
    "DENY_V4",
    "DENY_V6",
    "AllowPort",
    "EgressPolicy",
    "build_policy",
    "is_denied",
    "parse_allow",
    "parse_subnet",
    "render_ruleset",
]

Protocol = Literal["tcp", "udp"]
IPNetwork = IPv4Network | IPv6Network
IPAddress = IPv4Address | IPv6Address

DENY_V4: tuple[str, ...] = (
    "0.0.0.0/8",  # "this" network
    "10.0.0.0/8",  # RFC 1918
    "100.64.0.0/10",  # CGNAT, Tailscale
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, cloud metadata
    "172.16.0.0/12",  # RFC 1918
    "192.0.0.0/24",  # IETF protocol assignments
    "192.168.0.0/16",  # RFC 1918
    "198.18.0.0/15",  # benchmarking, used as internal space
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved and broadcast
)
"""IPv4 ranges a job may not reach unless allow-listed."""

DENY_V6: tuple[str, ...] = (
    "::/128",  # unspecified
    "::1/128",  # loopback
    "::ffff:0.0.0.0/96",  # IPv4-mapped: would bypass the IPv4 rules
    "64:ff9b:1::/48",  # local-use NAT64
    "100::/64",  # discard
    "fc00::/7",  # unique local (ULA)
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local (deprecated)
    "ff00::/8",  # multicast
)
"""IPv6 ranges a job may not reach unless allow-listed."""

_DENY_NETS: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in DENY_V4 + DENY_V6)


class AllowPort(msgspec.Struct, frozen=True, kw_only=True):
    """One allow-listed ``host:port``: a service a job may open connections to."""

    address: IPAddress
    port: int
    proto: Protocol = "tcp"

    @property
    def published(self) -> bool:
        """True for a host-loopback service, which jobs reach on the bridge gateway."""
        return self.address.is_loopback


class EgressPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """The parsed allow-list: CIDRs and ``host:port`` entries, deduplicated."""

    networks: tuple[IPNetwork, ...] = ()
    ports: tuple[AllowPort, ...] = ()


def is_denied(address: IPAddress) -> bool:
    """Whether *address* lies in a range jobs may not reach by default."""
    return any(address in net for net in _DENY_NETS if net.version == address.version)


def parse_allow(entry: str) -> IPNetwork | AllowPort:
    """Parse one allow-list entry.

    Accepted forms: a CIDR or bare address (``203.0.113.0/24``, ``fd12::/64``, ``10.1.2.3``),
    or ``host:port`` with an optional ``/tcp`` or ``/udp`` (default tcp): ``127.0.0.1:5000``,
    ``10.0.0.7:53/udp``, ``[fd12::7]:443``. Hosts are address literals, never names: a name
    would be resolved once and silently go stale.

    Raises:
        ConfigError: the entry is malformed; the message quotes it.
    """
    text = entry.strip()

    def bad(why: str) -> ConfigError:
        return ConfigError(f"network allow entry {entry!r}: {why}")

    proto: Protocol | None = None
    head, sep, tail = text.rpartition("/")
    if sep and tail.lower() in ("tcp", "udp"):
        proto = "tcp" if tail.lower() == "tcp" else "udp"
        text = head
    host, port_text = _split_host_port(text)
    if port_text is None:
        if proto is not None:
            raise bad("a protocol needs a port (host:port/udp)")
        try:
            network = ipaddress.ip_network(host, strict=True)
        except ValueError as exc:
            raise bad(f"not a CIDR or host:port ({exc})") from None
        if network.is_loopback:
            raise bad("loopback is reached with host:port entries, not a CIDR")
        return network
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise bad(f"{host!r} is not an IP address literal") from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise bad("port must be a number from 1 to 65535")
    if address.is_loopback and address.version == 6:
        raise bad("IPv6 loopback cannot be published to jobs; bind the service to 127.0.0.1")
    return AllowPort(address=address, port=int(port_text), proto=proto or "tcp")


def _split_host_port(text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            return text, None
        return host, rest[1:]
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def build_policy(allow: Iterable[str], *, extra_ports: Iterable[AllowPort] = ()) -> EgressPolicy:
    """Parse a whole allow-list (plus *extra_ports*, e.g. DNS servers) into a policy.

    Raises:
        ConfigError: an entry is malformed, or two loopback entries claim the same
            gateway port.
    """
    networks: list[IPNetwork] = []
    ports: list[AllowPort] = []
    for entry in allow:
        parsed = parse_allow(entry)
        if isinstance(parsed, AllowPort):
            ports.append(parsed)
        elif parsed not in networks:
            networks.append(parsed)
    published: dict[tuple[str, int], AllowPort] = {}
    unique: list[AllowPort] = []
    for rule in [*ports, *extra_ports]:
        if rule in unique:
            continue
        if rule.published:
            other = published.setdefault((rule.proto, rule.port), rule)
            if other != rule:
                raise ConfigError(
                    f"network allow entries {other.address}:{rule.port} and "
                    f"{rule.address}:{rule.port} would share gateway port {rule.port}/{rule.proto}"
                )
        unique.append(rule)
    return EgressPolicy(networks=tuple(networks), ports=tuple(unique))


def render_ruleset(
    *,
    table: str,
    bridge: str,
    subnet: IPv4Network,
    gateway: IPv4Address,
    policy: EgressPolicy,
) -> str:
    """The ``nft -f`` script that (re)creates the ``inet`` table *table* atomically."""
    allow4 = [str(n) for n in policy.networks if n.version == 4]
    allow6 = [str(n) for n in policy.networks if n.version == 6]
    remote = [p for p in policy.ports if not p.published]
    ports4 = [f"{p.address} . {p.proto} . {p.port}" for p in remote if p.address.version == 4]
    ports6 = [f"{p.address} . {p.proto} . {p.port}" for p in remote if p.address.version == 6]
    local = [p for p in policy.ports if p.published]
    published = [f"{p.address} . {p.proto} . {p.port}" for p in local]
    reject = "reject with icmpx admin-prohibited"
    l4 = "meta l4proto { tcp, udp }"
    br = f'"{bridge}"'
    dnat = [
        f"iifname {br} ip daddr {gateway} {p.proto} dport {p.port} dnat ip to {p.address}:{p.port}"
        for p in local
    ]
    lines = [
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        _set("deny_v4", "ipv4_addr", DENY_V4, interval=True),
        _set("deny_v6", "ipv6_addr", DENY_V6, interval=True),
        _set("allow_v4", "ipv4_addr", allow4, interval=True),
        _set("allow_v6", "ipv6_addr", allow6, interval=True),
        _set("allow_port_v4", "ipv4_addr . inet_proto . inet_service", ports4),
        _set("allow_port_v6", "ipv6_addr . inet_proto . inet_service", ports6),
        _set("published_v4", "ipv4_addr . inet_proto . inet_service", published),
        # Job to job through the gateway is refused before routing: rejected in the forward
        # hook (in and out the same bridge), the kernel sends no ICMP and the job would wait.
        _chain(
            "pre_filter",
            "type filter hook prerouting priority mangle; policy accept;",
            [f"iifname {br} ip daddr {subnet} ip daddr != {gateway} {reject}"],
        ),
        _chain("nat_pre", "type nat hook prerouting priority dstnat; policy accept;", dnat),
        _chain(
            "nat_post",
            "type nat hook postrouting priority srcnat; policy accept;",
            [f"ip saddr {subnet} ip daddr != {subnet} oifname != {br} masquerade"],
        ),
        _chain(
            "forward",
            "type filter hook forward priority filter; policy accept;",
            [
                f"iifname {br} jump job_egress",
                f"oifname {br} ct state established,related accept",
                f"oifname {br} {reject}",
            ],
        ),
        _chain(
            "job_egress",
            "",
            [
                "ct state established,related accept",
                f"oifname {br} {reject}",
                f"ip daddr {subnet} {reject}",
                "ip daddr @allow_v4 accept",
                "ip6 daddr @allow_v6 accept",
                f"{l4} ip daddr . meta l4proto . th dport @allow_port_v4 accept",
                f"{l4} ip6 daddr . meta l4proto . th dport @allow_port_v6 accept",
                f"ip daddr @deny_v4 {reject}",
                f"ip6 daddr @deny_v6 {reject}",
                "accept",
            ],
        ),
        _chain(
            "input",
            "type filter hook input priority filter; policy accept;",
            [f"iifname {br} jump job_host"],
        ),
        _chain(
            "job_host",
            "",
            [
                "ct state established,related accept",
                f"{l4} ct status dnat ip daddr . meta l4proto . th dport @published_v4 accept",
                f"{l4} ip daddr . meta l4proto . th dport @allow_port_v4 accept",
                f"{l4} ip6 daddr . meta l4proto . th dport @allow_port_v6 accept",
                reject,
            ],
        ),
        "}",
    ]
    return "\n".join(lines) + "\n"


def _set(name: str, kind: str, elements: Iterable[str], *, interval: bool = False) -> str:
    body = [f"type {kind};"]
    if interval:
        body.append("flags interval; auto-merge;")
    items = list(elements)
    if items:
        body.append(f"elements = {{ {', '.join(items)} }}")
    return f"\tset {name} {{\n\t\t" + "\n\t\t".join(body) + "\n\t}"


def _chain(name: str, hook: str, rules: Iterable[str]) -> str:
    body = [hook] if hook else []
    body.extend(rules)
    if not body:
        return f"\tchain {name} {{\n\t}}"
    return f"\tchain {name} {{\n\t\t" + "\n\t\t".join(body) + "\n\t}"


def parse_subnet(subnet: str) -> IPv4Network:
    """Parse the job subnet: IPv4, /8 to /28, not loopback, link-local or multicast.

    Raises:
        ConfigError: the subnet is malformed or unusable.
    """
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as exc:
        raise ConfigError(f"network subnet {subnet!r}: {exc}") from None
    if not isinstance(net, IPv4Network) or not 8 <= net.prefixlen <= 28:
        raise ConfigError(f"network subnet {subnet!r}: need an IPv4 network from /8 to /28")
    if net.is_loopback or net.is_link_local or net.is_multicast:
        raise ConfigError(f"network subnet {subnet!r} is not usable for jobs")
    return net
