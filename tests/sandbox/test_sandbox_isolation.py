# ruff: noqa: F811, ASYNC240  (fixtures imported from containerd_fixture shadow their names)
"""Each isolation default, checked from inside a real sandbox on a real containerd."""

from __future__ import annotations

from pathlib import Path

import pytest

from ephemerd.capabilities import ClaimFile, ExitReason, ResourceLimits
from ephemerd.sandbox import ContainerdSandbox
from ephemerd.sandbox._spec import CAPABILITIES

from .containerd_fixture import backend, cd_client, containerd_session  # noqa: F401
from .sandbox_helpers import run, spec, unique

pytestmark = pytest.mark.containerd

_CAP_BITS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_SYS_CHROOT": 18,
}


def _status(log: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in log.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


async def test_capabilities_no_new_privs_and_seccomp(backend: ContainerdSandbox) -> None:
    outcome, log = await run(backend, "cat /proc/self/status")
    assert outcome.succeeded
    status = _status(log)
    expected = sum(1 << _CAP_BITS[cap] for cap in CAPABILITIES)
    assert int(status["CapEff"], 16) == expected
    assert int(status["CapBnd"], 16) == expected
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # filter mode


async def test_seccomp_denies_namespaces_and_mounts(backend: ContainerdSandbox) -> None:
    outcome, log = await run(
        backend,
        "unshare -U true 2>&1; echo unshare=$?; "
        "mkdir -p /mnt/x; mount -t tmpfs none /mnt/x 2>&1; echo mount=$?",
    )
    assert outcome.succeeded
    assert "unshare=0" not in log
    assert "mount=0" not in log
    assert "Operation not permitted" in log


async def test_own_hostname_and_pid_namespace(backend: ContainerdSandbox) -> None:
    outcome, log = await run(backend, "hostname; echo pid=$$", hostname="job-42")
    assert outcome.succeeded
    assert log.split() == ["job-42", "pid=1"]


async def test_masked_and_readonly_proc_paths(backend: ContainerdSandbox) -> None:
    # both have content on the host; masked, they read as empty
    assert Path("/proc/timer_list").read_bytes() and Path("/proc/keys").read_bytes()
    outcome, log = await run(
        backend,
        "echo timers=$(wc -c < /proc/timer_list); echo keys=$(cat /proc/keys | wc -c); "
        "echo kcore=$(cat /proc/kcore 2>/dev/null | wc -c); "
        "echo 1 > /proc/sysrq-trigger 2>/dev/null; echo sysrq=$?; "
        "echo x > /proc/sys/kernel/hostname 2>/dev/null; echo sys=$?",
    )
    assert outcome.succeeded
    assert "timers=0" in log
    assert "keys=0" in log
    assert "kcore=0" in log
    assert "sysrq=0" not in log
    assert "sys=0" not in log


async def test_files_are_read_only_and_not_on_argv(backend: ContainerdSandbox) -> None:
    secret = b"token-8c1f0e\n"
    outcome, log = await run(
        backend,
        "cat /run/secrets/token; (echo hi > /run/secrets/token) 2>/dev/null; echo write=$?; "
        "stat -c mode=%a /run/secrets/token; cat /proc/*/cmdline | tr '\\0' ' '",
        files=(ClaimFile(path="/run/secrets/token", content=secret, mode=0o400),),
    )
    assert outcome.succeeded
    lines = log.splitlines()
    assert lines[0] == secret.decode().strip()
    assert "write=0" not in log
    assert "mode=400" in lines
    assert log.count("token-8c1f0e") == 1  # only the cat output; never in any argv


async def test_memory_limit_gives_oom(backend: ContainerdSandbox) -> None:
    # tail holds the whole newline-free stream in memory, far past the limit
    outcome, _ = await run(
        backend, "head -c 300m /dev/zero | tail", limits=ResourceLimits(memory_bytes=32 << 20)
    )
    assert outcome.reason is ExitReason.OOM


async def test_pids_limit(backend: ContainerdSandbox) -> None:
    handle = await backend.create(
        spec(unique("pids"), "sleep", "60", limits=ResourceLimits(pids=8))
    )
    chunks: list[bytes] = []

    async def collect(stream: str, chunk: bytes) -> None:
        chunks.append(chunk)

    try:
        await handle.start()
        code = await handle.exec(
            ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 60 & done; echo spawned"],
            output=collect,
        )
        stats = await handle.stats()
    finally:
        await handle.destroy()
    text = b"".join(chunks).decode()
    assert code != 0  # sh gives up when fork fails
    assert "can't fork" in text or "Resource temporarily unavailable" in text
    assert stats.pids <= 8


async def test_cpu_limit_lands_in_cgroup(backend: ContainerdSandbox) -> None:
    outcome, log = await run(
        backend,
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us",
        limits=ResourceLimits(cpus=0.5),
    )
    assert outcome.succeeded
    assert log.split() == ["50000", "100000"]


async def test_empty_network_namespace(backend: ContainerdSandbox) -> None:
    outcome, log = await run(backend, "ls /sys/class/net")
    assert outcome.succeeded
    assert log.split() == ["lo"]
