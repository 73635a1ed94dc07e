"""Which DNS servers a job uses, and which holes in the egress rules that needs.

ephemerd runs no DNS forwarder. By default a job gets the host's own upstream resolvers when
they are public addresses, and public fallbacks (``FALLBACK_RESOLVERS``) when the host only has
private or loopback ones (a LAN router, systemd-resolved's stub, dnsmasq): a job may not reach
private addresses, and an internal resolver would answer internal names.

An operator who wants jobs to use an internal resolver lists it explicitly (``dns = [...]``):
a private resolver is then allow-listed on port 53 (udp and tcp) only, and a loopback one
(``127.0.0.53``) is published on the bridge gateway like any loopback service, with the
gateway written into the job's ``resolv.conf``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path

import msgspec

from ephemerd._errors import ConfigError

from ._firewall import AllowPort, is_denied

__all__ = ["FALLBACK_RESOLVERS", "DnsPlan", "plan_dns"]

log = logging.getLogger(__name__)

FALLBACK_RESOLVERS: tuple[str, ...] = ("1.1.1.1", "8.8.8.8")
"""Public resolvers used when the host has no public one of its own."""

_SYSTEMD_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")


class DnsPlan(msgspec.Struct, frozen=True, kw_only=True):
    """The nameservers of a job's ``resolv.conf`` and the allow rules they need."""

    nameservers: tuple[str, ...]
    allow: tuple[AllowPort, ...] = ()

    def resolv_conf(self) -> bytes:
        return "".join(f"nameserver {ns}\n" for ns in self.nameservers).encode()


def plan_dns(dns: Sequence[str] | None, *, gateway: IPv4Address, host_resolv_conf: Path) -> DnsPlan:
    """Decide the job's resolvers.

    Args:
        dns: explicit resolvers (IPv4 literals), or ``None`` for the host's public ones.
        gateway: the bridge gateway, on which a loopback resolver is published.
        host_resolv_conf: the host's ``resolv.conf``.

    Raises:
        ConfigError: an explicit resolver is not an IPv4 address literal.
    """
    if dns is None:
        return _from_host(host_resolv_conf)
    nameservers: list[str] = []
    allow: list[AllowPort] = []
    for entry in dns:
        try:
            address = ipaddress.ip_address(entry.strip())
        except ValueError:
            raise ConfigError(f"network dns entry {entry!r} is not an IP address") from None
        if not isinstance(address, IPv4Address):
            raise ConfigError(f"network dns entry {entry!r}: jobs have IPv4 only")
        if address.is_loopback:
            nameservers.append(str(gateway))
        else:
            nameservers.append(str(address))
        if address.is_loopback or is_denied(address):
            allow += [AllowPort(address=address, port=53, proto=p) for p in ("udp", "tcp")]
    if not nameservers:
        raise ConfigError("network dns is empty; leave it out to use the host's resolvers")
    return DnsPlan(nameservers=tuple(dict.fromkeys(nameservers)), allow=tuple(allow))


def _from_host(path: Path) -> DnsPlan:
    found = _nameservers(path)
    if any(a.is_loopback for a in found) and _SYSTEMD_UPSTREAM.exists():
        found += _nameservers(_SYSTEMD_UPSTREAM)
    public = [str(a) for a in found if isinstance(a, IPv4Address) and not is_denied(a)]
    if public:
        return DnsPlan(nameservers=tuple(dict.fromkeys(public))[:3])
    if found:
        log.warning(
            "host resolvers %s are private; jobs use %s (set network dns to override)",
            ", ".join(map(str, found)),
            ", ".join(FALLBACK_RESOLVERS),
        )
    return DnsPlan(nameservers=FALLBACK_RESOLVERS)


def _nameservers(path: Path) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                found.append(ipaddress.ip_address(parts[1].split("%")[0]))
            except ValueError:
                continue
    return found
