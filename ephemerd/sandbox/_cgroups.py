"""Reading a sandbox's cgroup: resource use, and whether the OOM killer struck.

runc (cgroupfs driver) puts sandbox ``name`` at ``/ephemerd/<name>`` under every
controller on a v1 or hybrid host, and at ``/sys/fs/cgroup/ephemerd/<name>`` on a pure
v2 host. The files exist from task creation until the task is deleted, so the exit
reason is read after the process ends and before the task goes.
"""

from __future__ import annotations

from pathlib import Path

from ephemerd.capabilities import SandboxStats

from ._spec import cgroups_path

__all__ = ["CgroupReader"]


class CgroupReader:
    """Reads the cgroup files of sandboxes under *root* (v1, hybrid or v2 layout)."""

    def __init__(self, root: Path = Path("/sys/fs/cgroup")) -> None:
        self.root = root
        self.unified = (root / "cgroup.controllers").exists()

    def _file(self, name: str, controller: str, filename: str) -> Path:
        relative = cgroups_path(name).lstrip("/")
        if self.unified:
            return self.root / relative / filename
        return self.root / controller / relative / filename

    def _fields(self, path: Path) -> dict[str, int]:
        fields: dict[str, int] = {}
        try:
            text = path.read_text()
        except OSError:
            return fields
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                fields[key] = int(value)
        return fields

    def _number(self, path: Path) -> int:
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def oom_kills(self, name: str) -> int:
        """How many processes of sandbox *name* the OOM killer has killed."""
        if self.unified:
            return self._fields(self._file(name, "", "memory.events")).get("oom_kill", 0)
        return self._fields(self._file(name, "memory", "memory.oom_control")).get("oom_kill", 0)

    def stats(self, name: str) -> SandboxStats:
        """Memory in use, CPU time consumed and processes of sandbox *name* (0 when gone)."""
        if self.unified:
            usage_usec = self._fields(self._file(name, "", "cpu.stat")).get("usage_usec", 0)
            return SandboxStats(
                memory_bytes=self._number(self._file(name, "", "memory.current")),
                cpu_seconds=usage_usec / 1e6,
                pids=self._number(self._file(name, "", "pids.current")),
            )
        return SandboxStats(
            memory_bytes=self._number(self._file(name, "memory", "memory.usage_in_bytes")),
            cpu_seconds=self._number(self._file(name, "cpuacct", "cpuacct.usage")) / 1e9,
            pids=self._number(self._file(name, "pids", "pids.current")),
        )
