"""The OCI runtime spec of a sandbox: the isolation defaults live here, in one place.

Capabilities: the Go original's nine (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID,
SETUID, SYS_CHROOT, NET_BIND_SERVICE) are what package managers, ``chown``/``chmod`` of a
checkout, servers on low ports and ``chroot``-based build tools need. SETPCAP is added
so a job can drop capabilities further (``setpriv``, ``capsh``, daemons that shed
privileges); it cannot raise any. Left out: AUDIT_WRITE (with no_new_privileges, the
PAM/sudo paths that want it do not work anyway), MKNOD, NET_RAW (raw sockets spoof
traffic on the job bridge), SETFCAP, and everything administrative.
"""

from __future__ import annotations

import resource
from collections.abc import Mapping, Sequence

from ephemerd._errors import SandboxError
from ephemerd.capabilities import ResourceLimits

from ._seccomp import default_seccomp

__all__ = [
    "CAPABILITIES",
    "MASKED_PATHS",
    "READONLY_PATHS",
    "FileMount",
    "build_process",
    "build_spec",
    "cgroups_path",
]

Json = dict[str, object]

CAPABILITIES: tuple[str, ...] = tuple(
    f"CAP_{name}"
    for name in (
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
    )
)
MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
_CPU_PERIOD = 100_000
# the runtime cannot raise the hard limit above its own (no CAP_SYS_RESOURCE by then)
_NOFILE = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20)

FileMount = tuple[str, str]
"""``(host_path, sandbox_path)`` of a read-only file."""


def cgroups_path(name: str) -> str:
    """The sandbox's cgroup, relative to each controller's root."""
    return f"/ephemerd/{name}"


def _capabilities() -> Json:
    caps = list(CAPABILITIES)
    return {"bounding": caps, "effective": caps, "permitted": caps}


def build_process(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: str, terminal: bool = False
) -> Json:
    """The ``process`` object: root in the sandbox, reduced capabilities, no new privileges."""
    if not argv:
        raise SandboxError("no command to run: the spec has no argv and the image none either")
    return {
        "terminal": terminal,
        "user": {"uid": 0, "gid": 0},
        "args": list(argv),
        "env": [f"{key}={value}" for key, value in env.items()],
        "cwd": cwd or "/",
        "capabilities": _capabilities(),
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": _NOFILE, "soft": _NOFILE}],
        "noNewPrivileges": True,
    }


def _resources(limits: ResourceLimits) -> Json:
    resources: Json = {"devices": [{"allow": False, "access": "rwm"}]}
    if limits.memory_bytes is not None:
        # swap equal to the limit: no swap on top, so the OOM killer acts at the limit
        resources["memory"] = {"limit": limits.memory_bytes, "swap": limits.memory_bytes}
    if limits.cpus is not None:
        resources["cpu"] = {"quota": int(limits.cpus * _CPU_PERIOD), "period": _CPU_PERIOD}
    if limits.pids is not None:
        resources["pids"] = {"limit": limits.pids}
    return resources


def _base_mounts() -> list[Json]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    ]  # fmt: skip


def build_spec(
    *,
    name: str,
    process: Json,
    hostname: str,
    limits: ResourceLimits,
    files: Sequence[FileMount] = (),
    binds: Mapping[str, str] | None = None,
    image_mounts: Sequence[Json] = (),
    netns: str | None = None,
) -> Json:
    """The whole OCI runtime spec of sandbox *name*.

    Args:
        name: the sandbox name (its cgroup is derived from it).
        process: from ``build_process``.
        hostname: the sandbox's own hostname.
        limits: memory/CPU/pids limits for its cgroup.
        files: read-only single-file bind mounts (credentials).
        binds: read-write host directories, ``host_path -> sandbox_path``.
        image_mounts: read-only OCI mounts of other images (``_image_mounts.py``).
        netns: a network namespace to join; ``None`` makes a fresh, empty one.
    """
    mounts = _base_mounts()
    for host_path, sandbox_path in (binds or {}).items():
        mounts.append(
            {"destination": sandbox_path, "type": "bind", "source": host_path,
             "options": ["rbind", "rw", "nosuid", "nodev"]}
        )  # fmt: skip
    mounts.extend(image_mounts)
    for host_path, sandbox_path in files:
        mounts.append(
            {"destination": sandbox_path, "type": "bind", "source": host_path,
             "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}
        )  # fmt: skip
    network: Json = {"type": "network"}
    if netns:
        network["path"] = netns
    return {
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": {"path": "rootfs", "readonly": False},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroups_path(name),
            "resources": _resources(limits),
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                network,
            ],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": default_seccomp(),
        },
    }
