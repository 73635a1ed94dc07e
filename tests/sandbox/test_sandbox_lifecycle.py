# ruff: noqa: F811  (fixtures imported from containerd_fixture shadow their names)
"""The sandbox lifecycle on a real containerd: exits, logs, exec, kill, stats, destroy."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from ephemerd._errors import ImagePullError, SandboxError, SandboxNotFound
from ephemerd.capabilities import ExitReason, SandboxBackend, SandboxHandle
from ephemerd.sandbox import ContainerdClient, ContainerdSandbox
from ephemerd.sandbox._spec import cgroups_path

from .containerd_fixture import Session, backend, cd_client, containerd_session  # noqa: F401
from .sandbox_helpers import objects_of, run, runc_pids, spec, unique

pytestmark = pytest.mark.containerd


async def test_satisfies_the_protocols(backend: ContainerdSandbox) -> None:
    assert isinstance(backend, SandboxBackend)
    handle = await backend.create(spec(unique("proto"), "true"))
    try:
        assert isinstance(handle, SandboxHandle)
    finally:
        await handle.destroy()


@pytest.mark.parametrize("code", [0, 1, 42])
async def test_exit_codes(backend: ContainerdSandbox, code: int) -> None:
    outcome, _ = await run(backend, f"exit {code}")
    assert outcome.reason is ExitReason.EXITED
    assert outcome.exit_code == code
    assert outcome.succeeded == (code == 0)


async def test_stdout_and_stderr_go_to_the_log(backend: ContainerdSandbox) -> None:
    outcome, log = await run(
        backend, 'echo out; echo err >&2; echo "$GREETING"', env={"GREETING": "hi there"}
    )
    assert outcome.succeeded
    assert sorted(log.splitlines()) == ["err", "hi there", "out"]


async def test_image_default_command_and_workdir(backend: ContainerdSandbox) -> None:
    # no argv: the image's Cmd (/bin/sh) runs, reads an empty stdin and exits 0
    handle = await backend.create(spec(unique("defaults")))
    try:
        await handle.start()
        assert (await handle.wait()).succeeded
    finally:
        await handle.destroy()
    outcome, log = await run(backend, "pwd", workdir="/tmp")
    assert outcome.succeeded
    assert log == "/tmp\n"


async def test_exec_streams_output_as_it_comes(backend: ContainerdSandbox) -> None:
    handle = await backend.create(spec(unique("exec"), "sleep", "300"))
    got: list[tuple[str, bytes]] = []
    first = trio.Event()

    async def collect(stream: str, chunk: bytes) -> None:
        got.append((stream, chunk))
        first.set()

    try:
        await handle.start()
        async with trio.open_nursery() as nursery:

            async def slow_exec() -> None:
                # prints, then blocks until the test has seen the first line
                code = await handle.exec(
                    ["sh", "-c", "echo early; echo warn >&2; read x < /tmp/go; echo late"],
                    output=collect,
                )
                got.append(("exit", str(code).encode()))

            await handle.exec(["mkfifo", "/tmp/go"])
            nursery.start_soon(slow_exec)
            await first.wait()  # output arrived while the process still runs
            assert ("exit", b"0") not in got
            assert await handle.exec(["sh", "-c", "echo go > /tmp/go"]) == 0
        out = b"".join(chunk for stream, chunk in got if stream == "stdout")
        err = b"".join(chunk for stream, chunk in got if stream == "stderr")
        assert out == b"early\nlate\n"
        assert err == b"warn\n"
        assert got[-1] == ("exit", b"0")
    finally:
        await handle.destroy()


async def test_cancelled_exec_kills_the_process(backend: ContainerdSandbox) -> None:
    handle = await backend.create(spec(unique("exec-cancel"), "sleep", "300"))
    started = trio.Event()

    async def collect(stream: str, chunk: bytes) -> None:
        started.set()

    try:
        await handle.start()
        async with trio.open_nursery() as nursery:

            async def long_exec() -> None:
                await handle.exec(["sh", "-c", "echo up; exec sleep 1000"], output=collect)

            nursery.start_soon(long_exec)
            await started.wait()
            nursery.cancel_scope.cancel()
        lines: list[bytes] = []

        async def listing(stream: str, chunk: bytes) -> None:
            lines.append(chunk)

        await handle.exec(["ps", "-o", "args"], output=listing)
        assert b"sleep 1000" not in b"".join(lines)
    finally:
        await handle.destroy()


async def test_exec_that_leaves_a_process_behind_ends_with_its_own_status(
    backend: ContainerdSandbox,
) -> None:
    """The background process keeps the output pipe open; the exec still ends (its status,
    then the output grace) while that process runs on."""
    handle = await backend.create(spec(unique("exec-bg"), "sleep", "300"))
    out: list[bytes] = []

    async def collect(stream: str, chunk: bytes) -> None:
        out.append(chunk)

    try:
        await handle.start()
        with trio.fail_after(60):  # the background sleep lasts 300 s
            code = await handle.exec(
                ["sh", "-c", "sleep 300 & echo started; exit 7"], output=collect
            )
        assert code == 7
        assert b"".join(out) == b"started\n"
        assert (await handle.stats()).pids == 2  # the main process and the one left behind
        assert runc_pids("exec", handle.name) == []
    finally:
        await handle.destroy()


async def test_cancelled_exec_of_a_pipeline_kills_it_and_leaves_no_runc(
    backend: ContainerdSandbox,
) -> None:
    handle = await backend.create(spec(unique("exec-cancel"), "sleep", "300"))
    try:
        await handle.start()
        with trio.move_on_after(1) as scope:
            await handle.exec(["sh", "-c", "echo sleep 300 | sh -e 2>&1"])
        assert scope.cancelled_caught
        assert runc_pids("exec", handle.name) == []
    finally:
        await handle.destroy()


async def test_exec_exit_code_and_env(backend: ContainerdSandbox) -> None:
    handle = await backend.create(spec(unique("exec-env"), "sleep", "300", env={"A": "1"}))
    out: list[bytes] = []

    async def collect(stream: str, chunk: bytes) -> None:
        out.append(chunk)

    try:
        await handle.start()
        code = await handle.exec(
            ["sh", "-c", 'echo "$A$B"; exit 7'], env={"B": "2"}, output=collect
        )
        assert code == 7
        assert b"".join(out) == b"12\n"
        # without a sink, output lands in the sandbox's log
        assert await handle.exec(["sh", "-c", "echo to-the-log"]) == 0
        assert "to-the-log" in handle.log_path.read_text()
    finally:
        await handle.destroy()


async def test_kill_reads_killed_and_stats(backend: ContainerdSandbox) -> None:
    # PID 1 ignores signals it has no handler for, so trap TERM
    script = 'trap "exit 143" TERM; touch /tmp/ready; sleep 300 & wait'
    handle = await backend.create(spec(unique("kill"), "sh", "-c", script))
    try:
        await handle.start()
        # returns once the trap is set
        await handle.exec(["sh", "-c", "until [ -e /tmp/ready ]; do usleep 1000; done"])
        stats = await handle.stats()
        assert stats.pids >= 1
        assert stats.memory_bytes > 0
        await handle.kill(signal.SIGTERM)
        outcome = await handle.wait()
        assert outcome.reason is ExitReason.KILLED
        assert outcome.exit_code == 143
        assert await handle.wait() == outcome  # cached
    finally:
        await handle.destroy()


async def test_cancelled_wait_leaves_it_running(backend: ContainerdSandbox) -> None:
    handle = await backend.create(spec(unique("wait"), "sleep", "300"))
    try:
        await handle.start()
        with trio.move_on_after(0.2):
            await handle.wait()
        assert (await handle.stats()).pids >= 1
    finally:
        await handle.destroy()


async def test_destroy_is_idempotent_and_complete(
    backend: ContainerdSandbox, cd_client: ContainerdClient
) -> None:
    name = unique("destroy")
    handle = await backend.create(spec(name, "sleep", "300"))
    await handle.start()
    assert name in await backend.list_own()
    assert await objects_of(cd_client, name)
    await handle.destroy()
    await handle.destroy()
    await backend.destroy(name)
    assert await objects_of(cd_client, name) == []
    assert name not in await backend.list_own()
    with pytest.raises(SandboxNotFound):
        await handle.wait()
    with pytest.raises(SandboxNotFound):
        await handle.start()


async def test_destroy_before_start(
    backend: ContainerdSandbox, cd_client: ContainerdClient
) -> None:
    name = unique("unstarted")
    handle = await backend.create(spec(name, "true"))
    await handle.destroy()
    assert await objects_of(cd_client, name) == []


async def test_bad_inputs_are_one_line_errors(backend: ContainerdSandbox) -> None:
    with pytest.raises(SandboxError, match="invalid sandbox name"):
        await backend.create(spec("bad/name", "true"))
    with pytest.raises(ImagePullError, match="not present"):
        await backend.create(spec(unique("noimage"), "true", image="ephemerd.local/nope:1"))
    name = unique("noexe")
    handle = await backend.create(spec(name, "/does/not/exist"))
    try:
        with pytest.raises(SandboxError, match="exist") as caught:
            await handle.start()
        assert "\n" not in str(caught.value)
    finally:
        await handle.destroy()


async def test_orphans_are_found_and_swept(
    backend: ContainerdSandbox, cd_client: ContainerdClient
) -> None:
    name = unique("orphan")
    handle = await backend.create(spec(name, "sleep", "300"))
    await handle.start()
    del handle  # as after a crash: only containerd remembers it
    assert name in await backend.list_own()
    assert name in await backend.sweep()
    assert await objects_of(cd_client, name) == []


async def test_duplicate_name_is_refused_and_leaves_the_first_alone(
    backend: ContainerdSandbox,
) -> None:
    name = unique("dup")
    first = await backend.create(spec(name, "sleep", "300"))
    try:
        await first.start()
        with pytest.raises(SandboxError, match="already exists"):
            await backend.create(spec(name, "true"))
        assert (await first.stats()).pids >= 1  # still running
        assert await first.exec(["true"]) == 0
    finally:
        await first.destroy()


async def test_kill_after_exit_is_harmless(backend: ContainerdSandbox) -> None:
    handle = await backend.create(spec(unique("late-kill"), "true"))
    try:
        await handle.start()
        assert (await handle.wait()).succeeded
        await handle.kill()
        assert (await handle.wait()).succeeded  # the recorded outcome stands
    finally:
        await handle.destroy()


async def test_dead_runc_reads_lost_and_destroy_still_clears_all(
    backend: ContainerdSandbox, containerd_session: Session
) -> None:
    """runc itself killed: the job's status is gone (``LOST``), its process lives on
    without a parent, and destroy still kills it and removes every trace."""
    name = unique("lost")
    handle = await backend.create(spec(name, "sleep", "300"))
    try:
        await handle.start()
        (runc,) = runc_pids("run", name)
        os.kill(runc, signal.SIGKILL)
        assert (await handle.wait()).reason is ExitReason.LOST
        assert _container_leftovers(name, containerd_session) != []  # still running
    finally:
        await handle.destroy()
    assert _container_leftovers(name, containerd_session) == []


def _container_leftovers(name: str, session: Session) -> list[str]:
    """What of runc container *name* is still on the host: state, rootfs mount, cgroup."""
    found = [str(p) for p in (session.data_dir / "run" / "runc" / name,) if p.exists()]
    if f"/{name}/rootfs " in Path("/proc/self/mountinfo").read_text():
        found.append("rootfs mount")
    pids = Path("/sys/fs/cgroup/pids", cgroups_path(name).lstrip("/"))
    if pids.exists():
        found.append(str(pids))
    return found


async def test_runc_gets_none_of_the_daemons_environment(
    backend: ContainerdSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EPHEMERD_TEST_SECRET", "hunter2")
    handle = await backend.create(spec(unique("env"), "sleep", "300"))
    try:
        await handle.start()
        (runc,) = runc_pids("run", handle.name)
        environ = await trio.Path(f"/proc/{runc}/environ").read_bytes()
        assert b"hunter2" not in environ
        assert environ.startswith(b"PATH=")
    finally:
        await handle.destroy()


async def test_a_second_start_is_refused_and_leaves_the_sandbox_running(
    backend: ContainerdSandbox,
) -> None:
    handle = await backend.create(spec(unique("twice"), "sleep", "300"))
    try:
        await handle.start()
        with pytest.raises(SandboxError, match="already started"):
            await handle.start()
        assert (await handle.stats()).pids == 1
        assert await handle.exec(["true"]) == 0
    finally:
        await handle.destroy()


async def test_a_command_missing_from_the_image_fails_start_and_exec_with_one_line(
    backend: ContainerdSandbox, cd_client: ContainerdClient
) -> None:
    """runc's own error is raised (not read as a job that exited 1), and nothing stays."""
    name = unique("nocmd")
    handle = await backend.create(spec(name, "no-such-command"))
    with pytest.raises(SandboxError, match="no-such-command") as caught:
        await handle.start()
    assert "\n" not in str(caught.value)
    assert sorted(await objects_of(cd_client, name)) == [f"container {name}", f"snapshot {name}"]
    await handle.destroy()
    assert await objects_of(cd_client, name) == []

    handle = await backend.create(spec(unique("noexec"), "sleep", "300"))
    try:
        await handle.start()
        with pytest.raises(SandboxError, match="no-such-tool") as caught:
            await handle.exec(["no-such-tool"])
        assert "\n" not in str(caught.value)
        assert await handle.exec(["true"]) == 0  # the sandbox is unharmed
    finally:
        await handle.destroy()
