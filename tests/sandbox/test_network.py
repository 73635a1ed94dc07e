"""Job networks for real: namespaces, CNI, nftables, probes from inside the jobs.

No traffic leaves the machine. The "internet" is a namespace of our own (``upstream``) joined
to the host by a veth pair and holding a public-looking address (TEST-NET-3, 203.0.113.10)
and a private one (10.199.77.10); the host routes only those two to it. Servers and probes
are small Python programs started with ``nsenter --net=``; a server says "ready" once it
listens, so nothing waits on time.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import trio

from ephemerd._errors import ConfigError, RuntimeUnavailable, SandboxError
from ephemerd.sandbox import JobNetwork, open_job_network
from ephemerd.sandbox._netns import dropping_forward_chains

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(map(shutil.which, ("ip", "nft"))),
        reason="needs root, iproute2 and nftables",
    ),
]

SUBNET = "10.231.0.0/24"
GATEWAY = "10.231.0.1"
UP_NS = "ephtup"
UP_HOST_IF = "ephtuph"
UP_HOST_ADDR = "203.0.113.1"
PUBLIC = "203.0.113.10"
PRIVATE = "10.199.77.10"

SERVER = r"""
import socket, sys
proto, host, port, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
if proto == "tcp":
    s.listen(64)
print("ready", flush=True)
while True:
    if proto == "tcp":
        c, peer = s.accept()
        c.sendall(f"{tag} {peer[0]}\n".encode())
        c.close()
    else:
        data, peer = s.recvfrom(512)
        s.sendto(f"{tag} {peer[0]}\n".encode(), peer)
"""

PROBE = r"""
import errno, socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(8)
try:
    s.connect((host, port))
    if proto == "udp":
        s.send(b"ping")
    print("ok " + s.recv(512).decode().strip())
except OSError as e:
    print("err " + (errno.errorcode.get(e.errno, "?") if e.errno else type(e).__name__))
"""


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, check=False, capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def start_server(
    ns: str | None, proto: str, host: str, port: int, tag: str
) -> subprocess.Popen[str]:
    prefix = ["nsenter", f"--net={ns}"] if ns else []
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", SERVER, proto, host, str(port), tag],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop(*servers: subprocess.Popen[str]) -> None:
    for server in servers:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


@asynccontextmanager
async def running(argv: list[str]) -> AsyncGenerator[None]:
    """Run *argv* until the block ends (then SIGKILL it); enter once it printed "ready"."""
    proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        seen = b""
        while not seen.endswith(b"\n"):
            chunk = await proc.stdout.receive_some()
            assert chunk, f"{argv[:3]} exited before it was ready"
            seen += chunk
        assert seen.strip() == b"ready"
        yield
    finally:
        proc.kill()
        await proc.wait()
        await proc.stdout.aclose()


def serving(
    ns: str | None, proto: str, host: str, port: int, tag: str
) -> AsyncContextManager[None]:
    prefix = ["nsenter", f"--net={ns}"] if ns else []
    return running([*prefix, sys.executable, "-c", SERVER, proto, host, str(port), tag])


async def probe(netns: str, host: str, port: int, proto: str = "tcp") -> str:
    """Connect from inside *netns*; "ok <server tag> <peer address seen>" or "err <errno>"."""
    proc = await trio.run_process(
        ["nsenter", f"--net={netns}", sys.executable, "-c", PROBE, proto, host, str(port)],
        capture_stdout=True,
    )
    return proc.stdout.decode().strip()


DENIED = ("err EHOSTUNREACH", "err ECONNREFUSED")


def address_of(net: JobNetwork, name: str) -> str:
    attachment = net.attachment(name)
    assert attachment is not None
    return attachment.address


class Upstream(msgspec.Struct):
    servers: list[subprocess.Popen[str]]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """A namespace playing the internet (203.0.113.10) and a private LAN host (10.199.77.10)."""
    sh("ip", "netns", "delete", UP_NS, check=False)
    sh("ip", "link", "delete", UP_HOST_IF, check=False)
    sh("ip", "netns", "add", UP_NS)
    sh("ip", "link", "add", UP_HOST_IF, "type", "veth", "peer", "name", "up0", "netns", UP_NS)
    sh("ip", "addr", "add", f"{UP_HOST_ADDR}/24", "dev", UP_HOST_IF)
    sh("ip", "link", "set", UP_HOST_IF, "up")
    for cmd in (
        ("addr", "add", f"{PUBLIC}/24", "dev", "up0"),
        ("addr", "add", f"{PRIVATE}/24", "dev", "up0"),
        ("link", "set", "up0", "up"),
        ("link", "set", "lo", "up"),
        ("route", "add", "default", "via", UP_HOST_ADDR),
    ):
        sh("ip", "-n", UP_NS, *cmd)
    sh("ip", "route", "add", "10.199.77.0/24", "via", PUBLIC, "dev", UP_HOST_IF)
    servers = [
        start_server(f"/run/netns/{UP_NS}", "tcp", PUBLIC, 8080, "public"),
        start_server(f"/run/netns/{UP_NS}", "tcp", PRIVATE, 8080, "private"),
        start_server(f"/run/netns/{UP_NS}", "tcp", PRIVATE, 9090, "private9090"),
        start_server(f"/run/netns/{UP_NS}", "udp", PRIVATE, 53, "dns"),
        start_server(f"/run/netns/{UP_NS}", "tcp", PRIVATE, 53, "dnstcp"),
    ]
    try:
        yield Upstream(servers=servers)
    finally:
        stop(*servers)
        sh("ip", "link", "delete", UP_HOST_IF, check=False)
        sh("ip", "netns", "delete", UP_NS, check=False)


def net_name() -> str:
    return "epht" + secrets.token_hex(3)


@asynccontextmanager
async def job_network(tmp_path: Path, **options: object) -> AsyncGenerator[JobNetwork]:
    async with open_job_network(
        data_dir=tmp_path,
        subnet=SUBNET,
        name=net_name(),
        host_resolv_conf=tmp_path / "no-resolv.conf",
        **options,  # pyright: ignore[reportArgumentType]
    ) as net:
        yield net


async def test_job_reaches_the_internet_but_not_private_hosts(
    upstream: Upstream, tmp_path: Path
) -> None:
    async with job_network(tmp_path) as net:
        path = await net.attach("job1")
        assert path == net.netns_path("job1") == f"/run/netns/{net.bridge[:-1]}-job1"
        attachment = net.attachment("job1")
        assert attachment is not None and attachment.gateway == GATEWAY
        # Reached, and masqueraded behind the host's upstream address.
        assert await probe(path, PUBLIC, 8080) == f"ok public {UP_HOST_ADDR}"
        assert await probe(path, PRIVATE, 8080) in DENIED
        assert await probe(path, PRIVATE, 53, "udp") in DENIED


async def test_allow_list_opens_exactly_what_it_names(upstream: Upstream, tmp_path: Path) -> None:
    async with job_network(tmp_path, allow=[f"{PRIVATE}:8080"]) as net:
        path = await net.attach("job1")
        assert (await probe(path, PRIVATE, 8080)).startswith("ok private ")
        assert await probe(path, PRIVATE, 9090) in DENIED
    async with job_network(tmp_path, allow=["10.199.77.0/24"]) as net:
        path = await net.attach("job1")
        assert (await probe(path, PRIVATE, 9090)).startswith("ok private9090 ")


async def test_explicit_private_resolver_is_reachable_on_port_53_only(
    upstream: Upstream, tmp_path: Path
) -> None:
    async with job_network(tmp_path, dns=[PRIVATE]) as net:
        assert net.resolv_conf() == f"nameserver {PRIVATE}\n".encode()
        path = await net.attach("job1")
        assert (await probe(path, PRIVATE, 53, "udp")).startswith("ok dns ")
        assert (await probe(path, PRIVATE, 53, "tcp")).startswith("ok dnstcp ")
        assert await probe(path, PRIVATE, 8080) in DENIED


async def test_loopback_resolver_is_published_on_the_gateway(tmp_path: Path) -> None:
    async with (
        serving(None, "udp", "127.0.0.77", 53, "stub"),
        serving(None, "tcp", "127.0.0.77", 80, "web"),
        job_network(tmp_path, dns=["127.0.0.77"]) as net,
    ):
        assert net.resolv_conf() == f"nameserver {GATEWAY}\n".encode()
        path = await net.attach("job1")
        assert (await probe(path, GATEWAY, 53, "udp")).startswith("ok stub ")
        assert await probe(path, GATEWAY, 80) in DENIED


async def test_default_resolvers_are_public(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.255.255.53\n")
    async with open_job_network(
        data_dir=tmp_path, subnet=SUBNET, name=net_name(), host_resolv_conf=resolv
    ) as net:
        assert net.resolv_conf() == b"nameserver 1.1.1.1\nnameserver 8.8.8.8\n"


async def test_job_cannot_reach_another_job(upstream: Upstream, tmp_path: Path) -> None:
    # Even an allow-list covering the job subnet does not open job-to-job traffic.
    async with job_network(tmp_path, allow=["10.0.0.0/8"]) as net:
        a = await net.attach("job-a")
        b = await net.attach("job-b")
        a_name = Path(a).name
        b_addr = address_of(net, "job-b")
        async with serving(b, "tcp", "0.0.0.0", 7000, "job-b"):
            assert (await probe(b, "127.0.0.1", 7000)).startswith("ok job-b")
            # Directly on the bridge: the ports are isolated, so not even ARP gets through.
            assert await probe(a, b_addr, 7000) == "err EHOSTUNREACH"
            # Routed through the gateway (a job with NET_ADMIN could do this): rejected.
            sh("ip", "-n", a_name, "route", "add", f"{b_addr}/32", "via", GATEWAY)
            assert await probe(a, b_addr, 7000) == "err EHOSTUNREACH"
            # Both still reach the internet.
            assert (await probe(a, PUBLIC, 8080)).startswith("ok public")
            assert (await probe(b, PUBLIC, 8080)).startswith("ok public")


async def test_job_cannot_reach_the_host(upstream: Upstream, tmp_path: Path) -> None:
    async with serving(None, "tcp", "0.0.0.0", 7001, "host"), job_network(tmp_path) as net:
        path = await net.attach("job1")
        for address in (GATEWAY, UP_HOST_ADDR):
            assert await probe(path, address, 7001) in DENIED, address
        # 127.0.0.1 inside the job is the job's own loopback.
        assert await probe(path, "127.0.0.1", 7001) == "err ECONNREFUSED"


async def test_loopback_service_is_published_on_the_gateway(tmp_path: Path) -> None:
    async with (
        serving(None, "tcp", "127.0.0.1", 7002, "mirror"),
        serving(None, "tcp", "127.0.0.1", 7003, "secret"),
    ):
        async with job_network(tmp_path, allow=["127.0.0.1:7002"]) as net:
            path = await net.attach("job1")
            job_addr = address_of(net, "job1")
            # The service sees the job's own address: no source NAT on the way in.
            assert await probe(path, GATEWAY, 7002) == f"ok mirror {job_addr}"
            assert await probe(path, GATEWAY, 7003) in DENIED
        assert sh("sysctl", "-n", "net.ipv4.conf.all.route_localnet").strip() == "0"


async def test_host_service_allowed_on_a_host_address(upstream: Upstream, tmp_path: Path) -> None:
    """A service bound to a host address (e.g. the bridge IP) is reached where it is bound."""
    allow = [f"{UP_HOST_ADDR}:7004", f"{GATEWAY}:7005"]
    async with (
        serving(None, "tcp", "0.0.0.0", 7004, "on-uplink"),
        serving(None, "tcp", "0.0.0.0", 7005, "on-bridge"),
        job_network(tmp_path, allow=allow) as net,
    ):
        path = await net.attach("job1")
        assert (await probe(path, UP_HOST_ADDR, 7004)).startswith("ok on-uplink ")
        assert (await probe(path, GATEWAY, 7005)).startswith("ok on-bridge ")
        # Each only where it was allowed.
        assert await probe(path, GATEWAY, 7004) in DENIED
        assert await probe(path, UP_HOST_ADDR, 7005) in DENIED


def snapshot(net_prefix: str, ipam: Path) -> dict[str, object]:
    """Everything a job network could leak, for before/after comparisons."""
    leases = sorted(p.name for p in ipam.glob("*/*") if p.name[0].isdigit())
    return {
        "netns": sorted(n for n in os.listdir("/run/netns") if n.startswith(net_prefix)),
        "links": len(msgspec.json.decode(sh("ip", "-j", "link", "show"))),
        "addresses": sorted(
            (link["ifname"], a["local"], a["prefixlen"])
            for link in msgspec.json.decode(sh("ip", "-j", "addr", "show"))
            for a in link.get("addr_info", [])
        ),
        "leases": leases,
        "nft": sh("nft", "list", "ruleset"),
        "iptables": len(sh("iptables-save").splitlines()) if shutil.which("iptables-save") else 0,
        # A bridge's carrier comes and goes with its ports; that is not a leak.
        "routes": sh("ip", "route", "show", "table", "all").replace(" linkdown", ""),
    }


async def test_fifty_attach_detach_cycles_leave_nothing(tmp_path: Path) -> None:
    async with job_network(tmp_path) as net:
        prefix = net.bridge[:-1] + "-"
        before = snapshot(prefix, tmp_path / "network")
        for i in range(50):
            await net.attach(f"cycle{i}")
            assert snapshot(prefix, tmp_path / "network") != before
            await net.detach(f"cycle{i}")
            await net.detach(f"cycle{i}")  # idempotent
        assert snapshot(prefix, tmp_path / "network") == before


async def test_concurrent_attaches_get_distinct_addresses(tmp_path: Path) -> None:
    async with job_network(tmp_path) as net:
        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(net.attach, f"par{i}")
        addresses = {address_of(net, n) for n in net.attached()}
        assert len(addresses) == 10
    assert not [n for n in os.listdir("/run/netns") if n.startswith(net.bridge[:-1])]
    assert not await trio.Path("/sys/class/net", net.bridge).exists()


async def test_cancelling_attach_at_any_point_leaves_nothing(tmp_path: Path) -> None:
    """Cancel after 0 ms, 3 ms, 6 ms, ... until an attach completes.

    Every step of an attach (netns, CNI loopback, CNI bridge with its IPAM call, port
    isolation) is a child process taking well over 3 ms, so each step, and the middle of
    each plugin run, gets cut at least once.
    """
    async with job_network(tmp_path) as net:
        prefix = net.bridge[:-1] + "-"
        before = snapshot(prefix, tmp_path / "network")
        cancelled = 0
        delay = 0.0
        while True:
            with trio.move_on_after(delay) as scope:
                await net.attach("victim")
            if not scope.cancelled_caught:
                break
            cancelled += 1
            assert net.attachment("victim") is None
            assert snapshot(prefix, tmp_path / "network") == before, f"after {delay:.3f}s"
            delay += 0.003
        assert cancelled >= 5  # cut at many points, from before the first step onwards
        await net.detach("victim")
        assert snapshot(prefix, tmp_path / "network") == before


CRASHER = r"""
import sys, trio
from pathlib import Path
from ephemerd.sandbox import open_job_network

async def main():
    async with open_job_network(data_dir=Path(sys.argv[1]), subnet=sys.argv[2], name=sys.argv[3]) as net:
        for job in ("a", "b", "c"):
            await net.attach(job)
        print("ready", flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


async def test_sweep_after_a_crash_removes_all_but_kept(tmp_path: Path) -> None:
    name = net_name()
    async with running([sys.executable, "-c", CRASHER, str(tmp_path), SUBNET, name]):
        pass  # SIGKILLed once it attached three jobs: no teardown at all
    lease_dir = tmp_path / "network" / name
    sh("ip", "addr", "add", "10.232.0.1/24", "dev", f"{name}0")  # from an older subnet setting
    assert len([p for p in lease_dir.iterdir() if p.name[0].isdigit()]) == 3
    async with open_job_network(
        data_dir=tmp_path, subnet=SUBNET, name=name, host_resolv_conf=tmp_path / "x"
    ) as net:
        assert len(await _ports(net.bridge)) == 3
        assert "10.232.0.1" not in sh("ip", "-4", "addr", "show", "dev", net.bridge)
        assert f"{GATEWAY}/24" in sh("ip", "-4", "addr", "show", "dev", net.bridge)
        swept = await net.sweep({"b"})
        assert sorted(swept) == ["a", "c"]
        assert sorted(os.listdir("/run/netns")).count(f"{name}-b") == 1
        assert not any(n in os.listdir("/run/netns") for n in (f"{name}-a", f"{name}-c"))
        assert [p.read_text().split()[0] for p in lease_dir.iterdir() if p.name[0].isdigit()] == [
            "b"
        ]
        assert len(await _ports(net.bridge)) == 1
        assert await net.sweep({"b"}) == []
        await net.detach("b")
        assert await _ports(net.bridge) == []
    assert not [n for n in os.listdir("/run/netns") if n.startswith(name)]
    assert name not in sh("nft", "list", "tables")


async def _ports(bridge: str) -> list[object]:
    out = sh("ip", "-j", "link", "show", "master", bridge)
    return msgspec.json.decode(out) if out.strip() else []


async def test_reattach_replaces_a_leftover_namespace(tmp_path: Path) -> None:
    async with job_network(tmp_path) as net:
        sh("ip", "netns", "add", net.bridge[:-1] + "-job1")
        path = await net.attach("job1")
        assert await trio.Path(path).exists()
        with pytest.raises(SandboxError, match="already attached"):
            await net.attach("job1")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"subnet": "203.0.113.0/25"}, ConfigError, "overlaps the host route"),
        ({"subnet": "10.231.0.0/33"}, ConfigError, "network subnet"),
        ({"subnet": "fd00::/64"}, ConfigError, "IPv4 network"),
        ({"allow": ["example.com:443"]}, ConfigError, "allow entry"),
        ({"name": "Bad-Name"}, ConfigError, "network name"),
        ({"cni_bin_dir": Path("/nonexistent")}, RuntimeUnavailable, "CNI plugin"),
    ],
)
async def test_bad_options_fail_with_one_clear_line(
    upstream: Upstream,
    tmp_path: Path,
    options: dict[str, object],
    error: type[Exception],
    match: str,
) -> None:
    kwargs: dict[str, object] = {"data_dir": tmp_path, "subnet": SUBNET, "name": net_name()}
    kwargs.update(options)
    with pytest.raises(error, match=match) as info:
        async with open_job_network(**kwargs):  # pyright: ignore[reportArgumentType]
            pass
    assert "\n" not in str(info.value)


async def test_bad_job_names_are_refused(tmp_path: Path) -> None:
    async with job_network(tmp_path) as net:
        for bad in ("", "../etc", "a b", "-x"):
            with pytest.raises(SandboxError, match="invalid sandbox name"):
                await net.attach(bad)
    with pytest.raises(SandboxError, match="closed"):
        await net.attach("late")


def _mtu(netns: str | None, ifname: str) -> int:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    return msgspec.json.decode(sh(*prefix, "-j", "link", "show", "dev", ifname))[0]["mtu"]


async def test_job_mtu_follows_the_uplink_or_the_option(tmp_path: Path) -> None:
    uplink = msgspec.json.decode(sh("ip", "-j", "-4", "route", "show", "default"))[0]["dev"]
    async with job_network(tmp_path) as net:
        ns = Path(await net.attach("job1")).name
        assert _mtu(ns, "eth0") == _mtu(None, uplink)
    async with job_network(tmp_path, mtu=1400) as net:
        ns = Path(await net.attach("job1")).name
        assert _mtu(ns, "eth0") == 1400
    with pytest.raises(ConfigError, match="network mtu 100"):
        async with job_network(tmp_path, mtu=100):
            pass


def test_a_host_firewall_dropping_forwarded_traffic_is_detected() -> None:
    """Parsed from real ``nft -j`` output, made in a throwaway namespace (not the host's)."""
    ns = "ephtfw"
    sh("ip", "netns", "delete", ns, check=False)
    sh("ip", "netns", "add", ns)
    try:
        script = (
            "table ip filter {\n chain FORWARD {\n"
            "  type filter hook forward priority filter; policy drop;\n }\n"
            " chain INPUT {\n  type filter hook input priority filter; policy drop;\n }\n}\n"
            "table inet other {\n chain fw {\n"
            "  type filter hook forward priority filter; policy accept;\n }\n}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script.encode(), check=True
        )
        listing = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-j", "list", "chains"],
            check=True,
            capture_output=True,
        ).stdout
        assert dropping_forward_chains(listing) == ["ip filter FORWARD"]
        assert dropping_forward_chains(b"not json") == []
    finally:
        sh("ip", "netns", "delete", ns, check=False)
