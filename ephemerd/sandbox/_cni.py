"""Running the CNI reference plugins (``bridge``, ``host-local``, ``loopback``).

ephemerd drives the plugins itself, the way containerd's CRI does through libcni: one process
per plugin call, the network config on stdin, the call's parameters in ``CNI_*`` variables.
There are no secrets in either. The ``bridge`` plugin creates the job's veth pair, moves one end
into the job's namespace as ``eth0`` and asks ``host-local`` for an address; ``DEL`` undoes all
three. Masquerading is *not* left to the plugin (``ipMasq`` is off): it lives in ephemerd's own
nftables table as one rule for the whole subnet, so no per-job NAT chain can be leaked.

``host-local`` keeps one file per leased address in ``<ipam_dir>/<network>/``, holding the
owner's container id; ``release_stray_leases`` removes leases whose owner is gone, under the
plugin's own lock so it never races a running plugin.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Collection
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Literal

import msgspec
import trio

from ephemerd._errors import RuntimeUnavailable, SandboxError

__all__ = [
    "CNI_VERSION",
    "CniResult",
    "bridge_config",
    "cni_call",
    "lease_owners",
    "loopback_config",
    "release_stray_leases",
]

CNI_VERSION = "1.0.0"


class CniInterface(msgspec.Struct, frozen=True):
    name: str
    mac: str = ""
    sandbox: str = ""


class CniIp(msgspec.Struct, frozen=True):
    address: str
    interface: int | None = None
    gateway: str = ""


class CniResult(msgspec.Struct, frozen=True):
    """The part of a plugin's ``ADD`` answer ephemerd uses."""

    interfaces: list[CniInterface] = []
    ips: list[CniIp] = []

    def host_veth(self, bridge: str) -> str | None:
        """The host end of the job's veth pair: the one interface outside any sandbox."""
        for iface in self.interfaces:
            if not iface.sandbox and iface.name != bridge:
                return iface.name
        return None


class _CniError(msgspec.Struct, frozen=True):
    code: int = 0
    msg: str = ""
    details: str = ""


def bridge_config(
    *,
    network: str,
    bridge: str,
    subnet: IPv4Network,
    gateway: IPv4Address,
    ipam_dir: Path,
    mtu: int,
) -> bytes:
    """The ``bridge`` + ``host-local`` config of the job network."""
    conf = {
        "cniVersion": CNI_VERSION,
        "name": network,
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": False,
        "mtu": mtu,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": str(subnet), "gateway": str(gateway)}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(ipam_dir),
        },
    }
    return msgspec.json.encode(conf)


def loopback_config(*, network: str) -> bytes:
    """The ``loopback`` config: brings ``lo`` up inside the job's namespace."""
    return msgspec.json.encode({"cniVersion": CNI_VERSION, "name": network, "type": "loopback"})


async def cni_call(
    plugin: Path,
    command: Literal["ADD", "DEL"],
    config: bytes,
    *,
    container_id: str,
    netns: str | None,
    ifname: str,
) -> CniResult:
    """Run one CNI plugin call and return its parsed result (empty for ``DEL``).

    Raises:
        RuntimeUnavailable: the plugin binary is missing.
        SandboxError: the plugin failed; the message carries the plugin's own error.

    Cancellation: the plugin process is terminated; what it did half-way is undone by a
    later ``DEL`` for the same container id, which is idempotent.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns or "",
        "CNI_IFNAME": ifname,
        "CNI_PATH": str(plugin.parent),
    }
    try:
        proc = await trio.run_process(
            [str(plugin)],
            stdin=config,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
    except FileNotFoundError:
        raise RuntimeUnavailable(
            f"CNI plugin {plugin} not found (install containernetworking-plugins)"
        ) from None
    if proc.returncode != 0:
        raise SandboxError(f"CNI {plugin.name} {command} for {container_id}: {_error_text(proc)}")
    if command == "DEL" or not proc.stdout.strip():
        return CniResult()
    try:
        return msgspec.json.decode(proc.stdout, type=CniResult)
    except msgspec.DecodeError as exc:
        raise SandboxError(f"CNI {plugin.name} ADD answered unparseable JSON: {exc}") from None


def _error_text(proc: subprocess.CompletedProcess[bytes]) -> str:
    stdout = proc.stdout or b""
    stderr = proc.stderr or b""
    try:
        err = msgspec.json.decode(stdout, type=_CniError)
        text = f"{err.msg}: {err.details}" if err.details else err.msg
    except msgspec.DecodeError:
        text = ""
    if not text:
        lines = stderr.decode(errors="replace").strip().splitlines()
        text = lines[-1] if lines else f"exit status {proc.returncode}"
    return " ".join(text.split())


def lease_owners(lease_dir: Path) -> dict[str, str]:
    """Map each leased address file in *lease_dir* to its owner's container id ("" unknown)."""
    owners: dict[str, str] = {}
    try:
        entries = list(lease_dir.iterdir())
    except FileNotFoundError:
        return owners
    for path in entries:
        if path.name == "lock" or path.name.startswith("last_reserved_ip"):
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        owners[path.name] = text.splitlines()[0].strip() if text else ""
    return owners


async def release_stray_leases(lease_dir: Path, keep: Collection[str]) -> list[str]:
    """Delete every lease in *lease_dir* whose owner is not in *keep*; return the addresses.

    Holds ``host-local``'s own lock file while doing so, so a plugin run at the same time
    never sees a half-swept directory.
    """
    lock_path = lease_dir / "lock"
    if not lock_path.exists():
        return []

    def sweep() -> list[str]:
        fd = os.open(lock_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            removed: list[str] = []
            for address, owner in lease_owners(lease_dir).items():
                if owner not in keep:
                    (lease_dir / address).unlink(missing_ok=True)
                    removed.append(address)
            return removed
        finally:
            os.close(fd)

    return await trio.to_thread.run_sync(sweep)
