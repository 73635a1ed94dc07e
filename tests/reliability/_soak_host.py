"""What the soak test needs around the daemon: one image for every forge's stand-in,
the daemon's config, and a census of everything ephemerd could leave on the host.

The image: busybox and the host's Python, plus the GitHub stand-in at the actions runner's
install path (``/home/runner/run.sh``) and the Forgejo/Gitea stand-in on PATH as
``forgejo-runner``/``act_runner``; Woodpecker steps and GitLab's stage scripts run in
its shell.
"""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Network
from pathlib import Path

import msgspec
import trio

from ephemerd._proto.containerd.services.containers import v1 as containers_v1
from ephemerd._proto.containerd.services.leases import v1 as leases_v1
from ephemerd._proto.containerd.services.snapshots import v1 as snapshots_v1
from ephemerd.sandbox import ImageStore, build_host_image, host_python_paths, open_containerd
from tests.e2e.actions_helpers import RUNNER_DIR
from tests.e2e.harness import STANDIN_DIR, runc_states

from ._soak_gitlab import INSTANCE as GITLAB

SOAK_IMAGE = "ephemerd.local/soak-standin:latest"
NETWORK = "ephsoak"
SUBNET = "10.211.64.0/22"
GATEWAY = str(next(IPv4Network(SUBNET).hosts()))
"""The job bridge's address: where sandboxes reach the allow-listed fakes."""


class Census(msgspec.Struct, frozen=True, kw_only=True):
    """Everything of ephemerd's on the host at one moment."""

    containers: list[str]
    runc_states: list[str]
    snapshots: int
    leases: int
    netns: list[str]
    bridge_ports: list[str]
    nft_rules: int


async def build_soak_image(data_dir: Path) -> None:
    """Build ``SOAK_IMAGE`` in *data_dir*'s embedded containerd (started, then stopped)."""
    files = {
        "/home/runner/run.sh": (STANDIN_DIR / "run.sh").read_bytes(),
        "/home/runner/standin.py": (STANDIN_DIR / "standin.py").read_bytes(),
    }
    python = await trio.to_thread.run_sync(host_python_paths)
    async with open_containerd(data_dir=data_dir) as client:
        await build_host_image(
            ImageStore(client),
            SOAK_IMAGE,
            extra_paths=[*python, RUNNER_DIR],
            exclude=("__pycache__", "test", "tests", "idlelib", "tkinter", "ensurepip"),
            work_dir=data_dir / "tmp",
            files=files,
            env=[f"PATH={RUNNER_DIR}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"],
        )


def write_config(
    data_dir: Path,
    *,
    github_port: int,
    webhook_port: int,
    forgejo_port: int,
    gitea_port: int,
    gitlab_port: int,
    woodpecker: str,
    github_token: str,
    github_secret: str,
    forgejo_token: str,
    gitea_token: str,
    gitlab_token: str,
    gitlab_tags: tuple[str, ...],
    api_token: str,
    agent_secret: str,
    max_concurrent: int,
) -> None:
    """Every provider at once, each against its fake, on the soak's own job network.

    GitLab's gitlab-runner is not supervised: the test drives the executor stages itself.
    """
    tags = ", ".join(f'"{tag}"' for tag in gitlab_tags)
    actions = ""
    for kind, name, port, token in (
        ("forgejo", "fj", forgejo_port, forgejo_token),
        ("gitea", "gt", gitea_port, gitea_token),
    ):
        actions += f"""
[[{kind}]]
name = "{name}"
instance_url = "http://127.0.0.1:{port}"
runner_url = "http://{GATEWAY}:{port}"
token = "{token}"
api_token = "{api_token}"
owner = "acme"
repos = ["app"]
labels = ["ubuntu-latest"]
runner_image = "{SOAK_IMAGE}"
poll_interval = "1s"
"""
    (data_dir / "config.toml").write_text(
        f"""
[runner]
max_concurrent = {max_concurrent}
shutdown_timeout = "20s"
teardown_timeout = "20s"
memory = "256MiB"
cpus = 1.0

[sandbox]
network_name = "{NETWORK}"
subnet = "{SUBNET}"
allow = ["127.0.0.1:{github_port}", "127.0.0.1:{forgejo_port}", "127.0.0.1:{gitea_port}"]

[webhook]
listen = "127.0.0.1:{webhook_port}"

[[github]]
name = "gh"
owner = "acme"
repos = ["app"]
token = "{github_token}"
api_url = "http://127.0.0.1:{github_port}"
webhook_secret = "{github_secret}"
default_image = "{SOAK_IMAGE}"
poll_interval = "30s"
{actions}
[[gitlab]]
name = "{GITLAB}"
instance_url = "http://127.0.0.1:{gitlab_port}"
token = "{gitlab_token}"
supervise = false
tags = [{tags}]
default_image = "{SOAK_IMAGE}"

[[woodpecker]]
name = "wp"
server_url = "{woodpecker}"
agent_secret = "{agent_secret}"
hostname = "soak"
"""
    )
    (data_dir / "config.toml").chmod(0o600)


async def census(data_dir: Path) -> Census:
    """Count ephemerd's objects: containerd's (starting it for the look), the kernel's."""
    async with open_containerd(data_dir=data_dir) as client:
        containers = await client.call(
            client.containers.list, containers_v1.ListContainersRequest()
        )
        leases = await client.call(client.leases.list, leases_v1.ListRequest())
        snapshots = 0
        async with client.stream(
            client.snapshots.list, snapshots_v1.ListSnapshotsRequest(snapshotter="overlayfs")
        ) as replies:
            async for reply in replies:
                snapshots += len(reply.info)
    netns = await _run(["ip", "netns", "list"])
    ports = await _run(["ip", "-o", "link", "show", "master", f"{NETWORK}0"], check=False)
    return Census(
        containers=sorted(c.id for c in containers.containers),
        runc_states=runc_states(data_dir),
        snapshots=snapshots,
        leases=len(leases.leases),
        netns=[line.split()[0] for line in netns.splitlines() if line.startswith(f"{NETWORK}-")],
        bridge_ports=[line.split(":")[1].strip() for line in ports.splitlines() if ":" in line],
        nft_rules=await nft_rules(),
    )


async def nft_rules() -> int:
    """Rules in the soak network's nftables table (0 when the table is gone)."""
    out = await _run(["nft", "-j", "list", "table", "inet", NETWORK], check=False)
    if not out.strip():
        return 0
    items = json.loads(out).get("nftables", [])
    return sum(1 for item in items if "rule" in item)


async def _run(argv: list[str], *, check: bool = True) -> str:
    result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv}: {result.stderr.decode()}")
    return result.stdout.decode() if result.returncode == 0 else ""


def unmount_files(data_dir: Path) -> None:
    subprocess.run(
        ["umount", "-l", str(data_dir / "run" / "files")], check=False, capture_output=True
    )
