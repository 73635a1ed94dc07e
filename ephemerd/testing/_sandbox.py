"""``MemorySandbox``: a ``SandboxBackend`` whose sandboxes live in memory, on Trio time.

Each sandbox "runs" a tiny script given by its argv:

- ``("exit", "N")``: exits with code N at once;
- ``("sleep", "S")``: exits 0 after S seconds of Trio time (``"infinity"``: never);
- ``("sleep", "S", "exit", "N")``: sleeps, then exits with code N;
- ``("fail",)``: exits 1 at once;
- ``("oom",)``: ends as killed by the OOM killer (exit 137);
- ``()``: the image's default command, the same as ``("exit", "0")``;
- anything else, or a malformed number: exits 127 ("command not found").

``kill`` ends the sandbox as killed (exit 128 + signal). ``exec`` records its calls and
runs the same script language (only ``exit N`` matters; ``sleep`` sleeps); an exec given
``stdin`` (``sh -s`` and a script) runs the words of its stdin instead of its argv (a
final ``exit $?`` is the shell's own and changes nothing). Each sandbox
writes ``<log_dir>/<name>.log``. Failures can be injected with ``fail_next_creates`` and
``fail_next_starts``. Nothing persists beyond the object.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
import trio

from ephemerd._errors import SandboxError, SandboxNotFound
from ephemerd.capabilities import (
    ExitReason,
    OutputSink,
    SandboxExit,
    SandboxSpec,
    SandboxStats,
)

__all__ = ["ExecCall", "MemorySandbox", "MemorySandboxHandle"]


class ExecCall(msgspec.Struct, frozen=True, kw_only=True):
    """One ``exec`` into a memory sandbox, as recorded."""

    sandbox: str
    argv: tuple[str, ...]
    env: dict[str, str] = msgspec.field(default_factory=dict[str, str])
    workdir: str | None = None
    stdin: bytes | None = None


def _script(argv: Sequence[str]) -> tuple[float, SandboxExit]:
    """(seconds to run, how it ends) of a script argv; a malformed one exits 127."""
    try:
        return _parse(argv)
    except ValueError:
        return 0.0, SandboxExit(reason=ExitReason.EXITED, exit_code=127)


def _parse(argv: Sequence[str]) -> tuple[float, SandboxExit]:
    args = list(argv)
    seconds = 0.0
    if args[:1] == ["sleep"] and len(args) >= 2:
        seconds = math.inf if args[1] == "infinity" else float(args[1])
        args = args[2:]
        if not args:
            return seconds, SandboxExit(reason=ExitReason.EXITED, exit_code=0)
    match args:
        case []:
            return seconds, SandboxExit(reason=ExitReason.EXITED, exit_code=0)
        case ["exit", code]:
            return seconds, SandboxExit(reason=ExitReason.EXITED, exit_code=int(code))
        case ["fail"]:
            return seconds, SandboxExit(reason=ExitReason.EXITED, exit_code=1)
        case ["oom"]:
            return seconds, SandboxExit(reason=ExitReason.OOM, exit_code=137)
        case _:
            return seconds, SandboxExit(reason=ExitReason.EXITED, exit_code=127)


class MemorySandboxHandle:
    """One in-memory sandbox; see the module docstring for what it runs."""

    def __init__(self, backend: MemorySandbox, spec: SandboxSpec) -> None:
        self.spec = spec
        self._backend = backend
        self._log_path = backend.log_dir / f"{spec.name}.log"
        # Lines stay in memory until someone asks for the file: thousands of instant
        # sandboxes a second must not cost a file each.
        self._pending_log: list[str] | None = [f"created {spec.name} image={spec.image}"]
        self._pending_log += [
            f"image mount {m.image}:{m.source} at {m.target} (read-only)" for m in spec.image_mounts
        ]
        self.started = False
        self.destroyed = False
        self._exit: SandboxExit | None = None
        self._ends_at = math.inf
        self._planned = SandboxExit(reason=ExitReason.EXITED, exit_code=0)
        self._done = trio.Event()

    def __repr__(self) -> str:
        return f"MemorySandboxHandle({self.spec.name!r})"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def log_path(self) -> Path:
        if self._pending_log is not None:
            self._log_path.write_text("".join(line + "\n" for line in self._pending_log))
            self._pending_log = None
        return self._log_path

    @property
    def exit(self) -> SandboxExit | None:
        return self._exit

    def _log(self, line: str) -> None:
        if self._pending_log is not None:
            self._pending_log.append(line)
            return
        with self._log_path.open("a") as f:
            f.write(line + "\n")

    def _check(self) -> None:
        if self.destroyed:
            raise SandboxNotFound(f"sandbox {self.name} is destroyed")

    def _end(self, exit_: SandboxExit) -> None:
        if self._exit is None:
            self._exit = exit_
            self._log(f"exited: {exit_.reason.value} {exit_.exit_code}")
            self._done.set()

    async def start(self) -> None:
        self._check()
        await trio.lowlevel.checkpoint()
        if self._backend.consume_start_failure(self.name):
            raise SandboxError(f"sandbox {self.name}: injected start failure")
        if self.started:
            raise SandboxError(f"sandbox {self.name} is already started")
        self.started = True
        seconds, self._planned = _script(self.spec.argv)
        self._ends_at = trio.current_time() + seconds
        self._log(f"started: {' '.join(self.spec.argv)}")
        if seconds == 0:
            self._end(self._planned)

    async def wait(self) -> SandboxExit:
        self._check()
        if not self.started:
            raise SandboxError(f"sandbox {self.name} is not started")
        if self._exit is not None:  # an instant script: no timer to arm
            await trio.lowlevel.checkpoint()
            return self._exit
        with trio.move_on_at(self._ends_at):
            await self._done.wait()
        self._end(self._planned)
        assert self._exit is not None
        return self._exit

    async def kill(self, signal: int = 9) -> None:
        self._check()
        await trio.lowlevel.checkpoint()
        if self.started:
            self._end(SandboxExit(reason=ExitReason.KILLED, exit_code=128 + signal))

    async def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        output: OutputSink | None = None,
        stdin: bytes | None = None,
    ) -> int:
        self._check()
        if not self.started or self._exit is not None:
            raise SandboxError(f"sandbox {self.name} is not running")
        call = ExecCall(
            sandbox=self.name, argv=tuple(argv), env=dict(env or {}), workdir=workdir, stdin=stdin
        )
        self._backend.execs.append(call)
        self._log(f"exec: {' '.join(argv)}")
        words = argv if stdin is None else stdin.decode(errors="replace").split()
        if stdin is not None and words[-2:] == ["exit", "$?"]:
            words = words[:-2]  # a shell's own "exit with the last status"
        seconds, result = _script(words)
        if output is not None:
            await output("stdout", (" ".join(words) + "\n").encode())
        await trio.sleep(seconds)
        return result.exit_code if result.exit_code is not None else 1

    async def stats(self) -> SandboxStats:
        self._check()
        await trio.lowlevel.checkpoint()
        return SandboxStats(pids=1 if self.started and self._exit is None else 0)

    async def destroy(self) -> None:
        await trio.lowlevel.checkpoint()
        if not self.destroyed:
            self.destroyed = True
            if self.started:
                self._end(SandboxExit(reason=ExitReason.KILLED, exit_code=137))
            self._backend.forget(self.name)


class MemorySandbox:
    """An in-memory ``SandboxBackend`` for tests, benchmarks and a test-only daemon.

    Args:
        log_dir: where each sandbox writes ``<name>.log``; created if missing.

    Attributes:
        sandboxes: the live sandboxes by name.
        created: the spec of every sandbox ever created, in order (with its image mounts).
        destroyed: the name of every sandbox destroyed, in order.
        execs: every ``exec`` call, in order.
        peak: the most sandboxes alive at once.
        create_gate: when set to an unset ``trio.Event``, ``create`` waits for it.
    """

    def __init__(self, *, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.sandboxes: dict[str, MemorySandboxHandle] = {}
        self.created: list[SandboxSpec] = []
        self.destroyed: list[str] = []
        self.execs: list[ExecCall] = []
        self.peak = 0
        self.create_gate: trio.Event | None = None
        self._create_failures: list[SandboxError] = []
        self._start_failures = 0

    def fail_next_creates(self, count: int = 1, error: SandboxError | None = None) -> None:
        """Make the next *count* ``create`` calls raise *error* (a ``SandboxError``)."""
        self._create_failures.extend([error or SandboxError("injected create failure")] * count)

    def fail_next_starts(self, count: int = 1) -> None:
        """Make the next *count* ``start`` calls raise ``SandboxError``."""
        self._start_failures += count

    def consume_start_failure(self, name: str) -> bool:
        if self._start_failures:
            self._start_failures -= 1
            return True
        return False

    def forget(self, name: str) -> None:
        if self.sandboxes.pop(name, None) is not None:
            self.destroyed.append(name)

    def adopt(self, name: str, *, image: str = "leftover") -> MemorySandboxHandle:
        """Add a sandbox as if a previous run had left it (for start-up sweep tests)."""
        handle = MemorySandboxHandle(self, SandboxSpec(name=name, image=image))
        self.sandboxes[name] = handle
        return handle

    async def create(self, spec: SandboxSpec) -> MemorySandboxHandle:
        if self.create_gate is not None:
            await self.create_gate.wait()
        await trio.lowlevel.checkpoint()
        if self._create_failures:
            raise self._create_failures.pop(0)
        if spec.name in self.sandboxes:
            raise SandboxError(f"sandbox {spec.name} already exists")
        handle = MemorySandboxHandle(self, spec)
        self.sandboxes[spec.name] = handle
        self.created.append(spec)
        self.peak = max(self.peak, len(self.sandboxes))
        return handle

    async def list_own(self) -> list[str]:
        await trio.lowlevel.checkpoint()
        return list(self.sandboxes)

    async def destroy(self, name: str) -> None:
        handle = self.sandboxes.get(name)
        if handle is None:
            await trio.lowlevel.checkpoint()
            return
        await handle.destroy()
