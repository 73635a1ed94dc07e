"""The egress policy and DNS choice of job networks: parsing, rendering, validation."""

from __future__ import annotations

import os
import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from pathlib import Path

import pytest

from ephemerd._errors import ConfigError
from ephemerd.sandbox._dns import FALLBACK_RESOLVERS, plan_dns
from ephemerd.sandbox._firewall import (
    AllowPort,
    build_policy,
    is_denied,
    parse_allow,
    render_ruleset,
)

GW = IPv4Address("10.88.0.1")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("203.0.113.0/24", ip_network("203.0.113.0/24")),
        (" 10.1.2.3 ", ip_network("10.1.2.3/32")),
        ("fd12::/64", ip_network("fd12::/64")),
        ("127.0.0.1:5000", AllowPort(address=ip_address("127.0.0.1"), port=5000)),
        ("10.0.0.7:53/udp", AllowPort(address=ip_address("10.0.0.7"), port=53, proto="udp")),
        ("10.0.0.7:443/TCP", AllowPort(address=ip_address("10.0.0.7"), port=443)),
        ("[fd12::7]:443", AllowPort(address=ip_address("fd12::7"), port=443)),
    ],
)
def test_parse_allow_accepts(entry: str, expected: object) -> None:
    assert parse_allow(entry) == expected


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("registry.local:5000", "not an IP address literal"),
        ("10.0.0.7:0", "port must be"),
        ("10.0.0.7:65536", "port must be"),
        ("10.0.0.7:http", "port must be"),
        ("10.0.0.5/8", "not a CIDR"),
        ("10.0.0.0/8/udp", "protocol needs a port"),
        ("127.0.0.0/8", "loopback is reached with host:port"),
        ("[::1]:5000", "IPv6 loopback"),
        ("", "not a CIDR"),
    ],
)
def test_parse_allow_rejects_with_one_line(entry: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        parse_allow(entry)
    assert repr(entry) in str(info.value)
    assert "\n" not in str(info.value)


def test_two_loopback_services_cannot_share_a_gateway_port() -> None:
    with pytest.raises(ConfigError, match="share gateway port 5000/tcp"):
        build_policy(["127.0.0.1:5000", "127.0.0.2:5000"])
    # Different protocols, or duplicates, are fine.
    policy = build_policy(["127.0.0.1:5000", "127.0.0.2:5000/udp", "127.0.0.1:5000"])
    assert len(policy.ports) == 2


@pytest.mark.parametrize(
    ("address", "denied"),
    [
        ("10.1.2.3", True),
        ("172.20.0.1", True),
        ("192.168.1.1", True),
        ("100.100.100.100", True),
        ("169.254.169.254", True),
        ("127.0.0.1", True),
        ("fd00::2", True),
        ("fe80::1", True),
        ("::ffff:10.0.0.1", True),
        ("203.0.113.10", False),
        ("1.1.1.1", False),
        ("2606:4700::1111", False),
    ],
)
def test_denied_ranges(address: str, denied: bool) -> None:
    assert is_denied(ip_address(address)) is denied


def test_ruleset_publishes_loopback_services_on_the_gateway() -> None:
    policy = build_policy(["127.0.0.1:5000", "10.0.0.7:53/udp", "198.51.100.0/24"])
    script = render_ruleset(
        table="ephx", bridge="ephx0", subnet=IPv4Network("10.88.0.0/16"), gateway=GW, policy=policy
    )
    assert 'iifname "ephx0" ip daddr 10.88.0.1 tcp dport 5000 dnat ip to 127.0.0.1:5000' in script
    assert "10.0.0.7 . udp . 53" in script
    assert "198.51.100.0/24" in script
    assert "fc00::/7" in script and "100.64.0.0/10" in script
    # Replaces its own table atomically and touches no other.
    assert script.startswith("table inet ephx\ndelete table inet ephx\n")
    assert script.count("table ") == 3


@pytest.mark.network
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nft")
def test_ruleset_passes_nft_check() -> None:
    policy = build_policy(["127.0.0.1:5000", "[fd12::7]:443", "fd00::/8", "203.0.113.0/24"])
    script = render_ruleset(
        table="ephchk",
        bridge="ephchk0",
        subnet=IPv4Network("10.88.0.0/16"),
        gateway=GW,
        policy=policy,
    )
    proc = subprocess.run(
        ["nft", "-c", "-f", "-"], check=False, input=script.encode(), capture_output=True
    )
    assert proc.returncode == 0, proc.stderr.decode()


def _resolv(tmp_path: Path, *servers: str) -> Path:
    path = tmp_path / "resolv.conf"
    path.write_text("search corp.example\n" + "".join(f"nameserver {s}\n" for s in servers))
    return path


def test_dns_uses_public_host_resolvers(tmp_path: Path) -> None:
    plan = plan_dns(None, gateway=GW, host_resolv_conf=_resolv(tmp_path, "10.0.0.2", "9.9.9.9"))
    assert plan.resolv_conf() == b"nameserver 9.9.9.9\n"
    assert plan.allow == ()


def test_dns_falls_back_when_host_resolvers_are_private(tmp_path: Path) -> None:
    plan = plan_dns(None, gateway=GW, host_resolv_conf=_resolv(tmp_path, "10.255.255.53"))
    assert plan.nameservers == FALLBACK_RESOLVERS
    assert b"corp.example" not in plan.resolv_conf()
    missing = plan_dns(None, gateway=GW, host_resolv_conf=tmp_path / "absent")
    assert missing.nameservers == FALLBACK_RESOLVERS


def test_explicit_private_and_loopback_resolvers_are_allow_listed(tmp_path: Path) -> None:
    plan = plan_dns(["10.1.1.1", "127.0.0.53"], gateway=GW, host_resolv_conf=tmp_path / "x")
    assert plan.resolv_conf() == b"nameserver 10.1.1.1\nnameserver 10.88.0.1\n"
    assert {(str(p.address), p.port, p.proto) for p in plan.allow} == {
        ("10.1.1.1", 53, "udp"),
        ("10.1.1.1", 53, "tcp"),
        ("127.0.0.53", 53, "udp"),
        ("127.0.0.53", 53, "tcp"),
    }
    assert all(p.port == 53 for p in plan.allow)


@pytest.mark.parametrize("bad", [["dns.google"], ["2001:4860:4860::8888"], []])
def test_bad_explicit_resolvers(bad: list[str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="network dns"):
        plan_dns(bad, gateway=GW, host_resolv_conf=tmp_path / "x")
