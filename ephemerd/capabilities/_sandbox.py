"""What the scheduler needs from the sandbox layer, so it can run on any backend.

The real backend is containerd (``ephemerd.sandbox``); tests and benchmarks use an
in-memory one. Both satisfy these Protocols structurally.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec

from ._claims import ClaimFile, ImageMount

__all__ = [
    "ExitReason",
    "OutputSink",
    "ResourceLimits",
    "SandboxBackend",
    "SandboxExit",
    "SandboxHandle",
    "SandboxSpec",
    "SandboxStats",
]

OutputSink = Callable[[str, bytes], Awaitable[None]]
"""Receives ``(stream, chunk)`` from an exec, with stream ``"stdout"`` or ``"stderr"``."""


class ResourceLimits(msgspec.Struct, frozen=True, kw_only=True):
    """cgroup limits of one sandbox. ``None`` means unlimited."""

    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = None


class SandboxSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to create one sandbox.

    Attributes:
        name: unique, containerd-safe id (``[A-Za-z0-9]`` runs joined by ``._-``, ≤ 76 chars).
        image: image reference to run.
        argv: the process to run; empty means the image's default command.
        env: environment of the process.
        files: read-only files mounted from a tmpfs (credentials).
        workdir: working directory of the process.
        hostname: the sandbox's own hostname.
        limits: cgroup limits.
        network: ``"default"`` (egress to the internet, nothing private) or ``"none"``.
        mounts: extra host paths mounted into the sandbox, ``host_path -> sandbox_path``
            (read-write; for a workspace).
        labels: free-form labels recorded on every object created for the sandbox.
        image_mounts: directories of other images mounted read-only.
    """

    name: str
    image: str
    argv: tuple[str, ...] = ()
    env: dict[str, str] = msgspec.field(default_factory=dict[str, str])
    files: tuple[ClaimFile, ...] = ()
    workdir: str = ""
    hostname: str = ""
    limits: ResourceLimits = ResourceLimits()
    network: str = "default"
    mounts: dict[str, str] = msgspec.field(default_factory=dict[str, str])
    labels: dict[str, str] = msgspec.field(default_factory=dict[str, str])
    image_mounts: tuple[ImageMount, ...] = ()


class ExitReason(enum.Enum):
    """Why a sandbox's main process ended."""

    EXITED = "exited"
    OOM = "oom"
    KILLED = "killed"
    LOST = "lost"
    CANCELLED = "cancelled"
    """The provider driving the job stopped it because the forge's side cancelled it."""


class SandboxExit(msgspec.Struct, frozen=True, kw_only=True):
    """How a sandbox's main process ended."""

    reason: ExitReason
    exit_code: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.reason is ExitReason.EXITED and self.exit_code == 0


class SandboxStats(msgspec.Struct, frozen=True, kw_only=True):
    """A point-in-time reading of a sandbox's resource use."""

    memory_bytes: int = 0
    cpu_seconds: float = 0.0
    pids: int = 0


@runtime_checkable
class SandboxHandle(Protocol):
    """One created sandbox.

    ``destroy`` is idempotent and safe to call in any state, including after a failed
    ``start``; everything else raises ``SandboxNotFound`` once it is destroyed.
    """

    @property
    def name(self) -> str: ...

    @property
    def log_path(self) -> Path:
        """The file that receives the main process's stdout and stderr."""
        ...

    async def start(self) -> None: ...

    async def wait(self) -> SandboxExit:
        """Wait until the main process ends. Cancelling the wait does not kill it."""
        ...

    async def kill(self, signal: int = 9) -> None: ...

    async def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        output: OutputSink | None = None,
        stdin: bytes | None = None,
    ) -> int:
        """Run *argv* inside the running sandbox and return its exit code.

        *stdin*, when given, is the process's standard input (then end-of-file): how a
        script reaches a shell without being on argv.

        Cancellation: the process inside the sandbox is killed before this returns.
        """
        ...

    async def stats(self) -> SandboxStats: ...

    async def destroy(self) -> None: ...


@runtime_checkable
class SandboxBackend(Protocol):
    """Creates sandboxes and finds the ones it created before (even in a previous run)."""

    async def create(self, spec: SandboxSpec) -> SandboxHandle:
        """Create (but do not start) a sandbox.

        Cancellation: anything half-created is removed before the cancellation propagates.
        """
        ...

    async def list_own(self) -> list[str]:
        """Names of every sandbox this backend created and has not destroyed."""
        ...

    async def destroy(self, name: str) -> None:
        """Destroy a sandbox by name, e.g. an orphan from a crashed run. Idempotent."""
        ...
