"""Pure parts of the sandbox layer: the runtime spec, seccomp, names, chain ids, logs."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from ephemerd._errors import SandboxError
from ephemerd.capabilities import ResourceLimits, SandboxStats
from ephemerd.sandbox import prune_logs
from ephemerd.sandbox._cgroups import CgroupReader
from ephemerd.sandbox._images import chain_ids
from ephemerd.sandbox._runtime import check_name
from ephemerd.sandbox._seccomp import DENIED_SYSCALLS, default_seccomp
from ephemerd.sandbox._spec import CAPABILITIES, build_process, build_spec


def _spec(**options: object) -> dict[str, object]:
    process = build_process(["sh"], env={"A": "1"}, cwd="")
    values: dict[str, object] = {
        "name": "job-1",
        "process": process,
        "hostname": "h",
        "limits": ResourceLimits(),
    }
    values.update(options)
    return build_spec(**values)  # type: ignore[arg-type]


def test_process_defaults() -> None:
    process = build_process(["sh", "-c", "x"], env={"A": "1"}, cwd="")
    assert process["cwd"] == "/"
    assert process["env"] == ["A=1"]
    assert process["noNewPrivileges"] is True
    assert process["user"] == {"uid": 0, "gid": 0}
    caps = process["capabilities"]
    assert isinstance(caps, dict)
    assert caps["bounding"] == list(CAPABILITIES)
    assert "inheritable" not in caps and "ambient" not in caps
    for dangerous in (
        "CAP_SYS_ADMIN",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_MKNOD",
        "CAP_SYS_PTRACE",
    ):
        assert dangerous not in CAPABILITIES
    with pytest.raises(SandboxError, match="no command"):
        build_process([], env={}, cwd="/")


def test_limits_become_cgroup_resources() -> None:
    spec = _spec(limits=ResourceLimits(memory_bytes=1 << 30, cpus=1.5, pids=100))
    linux = spec["linux"]
    assert isinstance(linux, dict)
    assert linux["cgroupsPath"] == "/ephemerd/job-1"
    assert linux["resources"] == {
        "devices": [{"allow": False, "access": "rwm"}],
        "memory": {"limit": 1 << 30, "swap": 1 << 30},
        "cpu": {"quota": 150000, "period": 100000},
        "pids": {"limit": 100},
    }


def test_namespaces_and_netns_path() -> None:
    fresh = _spec()["linux"]
    joined = _spec(netns="/run/netns/x")["linux"]
    assert isinstance(fresh, dict) and isinstance(joined, dict)
    kinds = [ns["type"] for ns in fresh["namespaces"]]  # type: ignore[index]
    assert sorted(kinds) == ["ipc", "mount", "network", "pid", "uts"]
    assert {"type": "network"} in fresh["namespaces"]  # type: ignore[operator]
    assert {"type": "network", "path": "/run/netns/x"} in joined["namespaces"]  # type: ignore[operator]


def test_files_are_read_only_binds() -> None:
    mounts = _spec(files=[("/host/f0", "/run/secret")], binds={"/work": "/w"})["mounts"]
    assert isinstance(mounts, list)
    by_dest = {m["destination"]: m for m in mounts}  # type: ignore[index]
    assert "ro" in by_dest["/run/secret"]["options"]
    assert "noexec" in by_dest["/run/secret"]["options"]
    assert "rw" in by_dest["/w"]["options"]


def test_seccomp_profile() -> None:
    profile = default_seccomp()
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    rules = profile["syscalls"]
    assert isinstance(rules, list)
    denied = rules[0]["names"]  # type: ignore[index]
    for name in (
        "keyctl",
        "add_key",
        "request_key",
        "ptrace",
        "mount",
        "umount2",
        "unshare",
        "kexec_load",
        "bpf",
        "perf_event_open",
        "setns",
    ):
        assert name in denied
    assert len(set(DENIED_SYSCALLS)) == len(DENIED_SYSCALLS)
    clone_flags = [r["args"][0]["value"] for r in rules if r["names"] == ["clone"]]  # type: ignore[index]
    assert 0x10000000 in clone_flags  # CLONE_NEWUSER


@pytest.mark.parametrize("name", ["a", "job-1", "gh.1_2-3", "x" * 76])
def test_valid_names(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize("name", ["", "-a", "a-", "a--b", "a/b", "a b", "x" * 77, "ü"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(SandboxError, match="invalid sandbox name"):
        check_name(name)


def test_chain_ids() -> None:
    a, b, c = ("sha256:" + hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"c"))
    chain = chain_ids((a, b, c))
    assert chain[0] == a
    assert chain[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert chain[2] == "sha256:" + hashlib.sha256(f"{chain[1]} {c}".encode()).hexdigest()
    assert chain_ids(()) == []


def test_prune_logs(tmp_path: Path) -> None:
    now = time.time()
    old, new, other = tmp_path / "old.log", tmp_path / "new.log", tmp_path / "keep.txt"
    for path in (old, new, other):
        path.write_text("x")
    os.utime(old, (now - 8 * 86400, now - 8 * 86400))
    os.utime(other, (now - 30 * 86400, now - 30 * 86400))
    assert prune_logs(tmp_path, max_age_days=7, now=now) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "new.log"]
    assert prune_logs(tmp_path / "missing", max_age_days=7) == []


@pytest.mark.parametrize("unified", [False, True])
def test_cgroup_reader_layouts(tmp_path: Path, unified: bool) -> None:
    def put(relative: str, text: str) -> None:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    if unified:
        put("cgroup.controllers", "cpu memory pids\n")
        put("ephemerd/job/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
        put("ephemerd/job/memory.current", "4096\n")
        put("ephemerd/job/cpu.stat", "usage_usec 1500000\nuser_usec 1\n")
        put("ephemerd/job/pids.current", "3\n")
    else:
        put(
            "memory/ephemerd/job/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        put("memory/ephemerd/job/memory.usage_in_bytes", "4096\n")
        put("cpuacct/ephemerd/job/cpuacct.usage", "1500000000\n")
        put("pids/ephemerd/job/pids.current", "3\n")
    reader = CgroupReader(tmp_path)
    assert reader.unified is unified
    assert reader.oom_kills("job") == 1
    assert reader.stats("job") == SandboxStats(memory_bytes=4096, cpu_seconds=1.5, pids=3)
    assert reader.oom_kills("gone") == 0
    assert reader.stats("gone") == SandboxStats()
