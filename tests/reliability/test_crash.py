"""Crashes with real containerd sandboxes: the daemon killed, containerd killed, a full log disk.

Each test runs a real ``ephemerd serve`` (in-memory forge, containerd sandboxes from the
host's busybox) on one data dir per module, with its own job network so it can run beside
other ephemerds on the host.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from ephemerd.sandbox._netns import list_netns
from tests.e2e.harness import containerd_leftovers
from tests.sandbox.sandbox_helpers import runc_pids

from .helpers import (
    SECRET,
    TimedDaemon,
    build_memory_image,
    config_text,
    free_port,
    open_daemon_async,
    unmount_files,
    wait_running,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("containerd") is None or shutil.which("runc") is None,
    reason="needs root, containerd and runc",
)

NETWORK = "ephrelk"
SUBNET = "10.96.0.0/24"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("crash")
    build_memory_image(path)
    yield path
    unmount_files(path)


def _write_config(data_dir: Path, *, max_concurrent: int = 8, log_dir: str = "") -> int:
    port = free_port()
    (data_dir / "config.toml").write_text(
        config_text(
            port=port,
            network_name=NETWORK,
            subnet=SUBNET,
            max_concurrent=max_concurrent,
            log_dir=log_dir,
        )
    )
    return port


async def _queue(port: int, events: list[dict[str, object]]) -> None:
    body = [{"action": "queued", "repo": "octo/app", **e} for e in events]
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            f"http://127.0.0.1:{port}/webhook/mem",
            headers={"x-ephemerd-test-token": SECRET},
            content=msgspec.json.encode(body),
        )
    assert reply.status_code == 200, reply.text


async def _final_line(daemon: TimedDaemon, job_id: str) -> str:
    """What the daemon logged when job *job_id* finished: its state and detail."""
    prefix = f"job mem/{job_id} (octo/app): "
    finished = tuple(f"{prefix}{state}" for state in ("succeeded", "failed", "cancelled"))
    while True:
        for line in daemon.lines:
            if any(word in line for word in finished):
                return line.split(prefix, 1)[1]
        await daemon.changed()


def _containerd_pid(data_dir: Path) -> int:
    return int((data_dir / "containerd" / "containerd.pid").read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_sigkill_with_eight_running_jobs_then_restart_sweeps_every_orphan(
    data_dir: Path,
) -> None:
    port = _write_config(data_dir)
    jobs: list[dict[str, object]] = [
        {"job_id": f"k{n}", "script": ["sleep", "300"]} for n in range(8)
    ]
    async with open_daemon_async(data_dir) as daemon:
        with trio.fail_after(120):
            await _queue(port, jobs)
            await wait_running(data_dir, 8)
        old_containerd = _containerd_pid(data_dir)
        daemon.process.send_signal(signal.SIGKILL)
        await daemon.process.wait()
    # the embedded containerd and each sandbox's runc run in sessions of their own: they
    # outlive the daemon
    assert _alive(old_containerd)
    assert len(_runc_processes(data_dir)) == 8
    assert len(list_netns(f"{NETWORK}-")) == 8

    async with open_daemon_async(data_dir) as daemon:
        await daemon.wait_for_log("sweep: released leftover runner", count=8)
        with trio.fail_after(60):
            containers, runc = await containerd_leftovers(data_dir, running=True)
            assert (containers, runc) == ([], []), daemon.log()
            assert list_netns(f"{NETWORK}-") == []
            await _no_runc_processes(data_dir)
            # and the restarted daemon runs jobs again
            await _queue(port, [{"job_id": "again", "script": ["true"]}])
            await daemon.wait_for_log("job mem/again (octo/app): succeeded")
    log = daemon.log()
    first_line = daemon.seen_at("")
    stale = daemon.seen_at("stopping a stale embedded containerd")
    swept = daemon.seen_at("sweep: destroyed leftover sandbox", count=8)
    released = daemon.seen_at("sweep: released leftover runner", count=8)
    print(
        f"after spawn: first log line {first_line:.2f}s, stale containerd killed {stale:.2f}s,"
        f" 8 orphans destroyed {swept:.2f}s, 8 runners released {released:.2f}s;"
        f" a clean start's first line: {_clean_start(data_dir):.2f}s"
    )
    assert daemon.process.returncode == 0, log
    assert not _alive(old_containerd)
    # within 5 s of start-up: from the daemon's first word to the last orphan released
    assert released - first_line < 5.0, log


def _clean_start(data_dir: Path) -> float:
    """Seconds until a daemon's first log line with nothing to sweep (interpreter, imports)."""
    import sys
    import time

    begin = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir / "nothing"), "serve"],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        assert process.stderr is not None
        process.stderr.readline()  # "no providers configured": after the imports
        process.wait()
    return time.monotonic() - begin


async def test_containerd_killed_mid_job_is_restarted_and_jobs_end_cleanly(
    data_dir: Path,
) -> None:
    port = _write_config(data_dir)
    async with open_daemon_async(data_dir) as daemon:
        with trio.fail_after(120):
            await _queue(
                port,
                [
                    {"job_id": "c1", "script": ["sleep", "3"]},
                    {"job_id": "c2", "script": ["sh", "-c", "sleep 3; exit 3"]},
                ],
            )
            await wait_running(data_dir, 2)
            os.kill(_containerd_pid(data_dir), signal.SIGKILL)
            await daemon.wait_for_log("embedded containerd exited")
            # runc runs the jobs without containerd: they end as they would have
            assert await _final_line(daemon, "c1") == "succeeded", daemon.log()
            assert await _final_line(daemon, "c2") == "failed exit code 3", daemon.log()
            await _queue(port, [{"job_id": "c3", "script": ["true"]}])
            await daemon.wait_for_log("job mem/c3 (octo/app): succeeded")
            containers, runc = await containerd_leftovers(data_dir, running=True)
    log = daemon.log()
    assert daemon.process.returncode == 0, log
    assert (containers, runc) == ([], []), log
    assert list_netns(f"{NETWORK}-") == []
    assert "Traceback" not in log


async def test_a_full_log_disk_warns_and_jobs_keep_running(data_dir: Path) -> None:
    logs = data_dir / "smalllogs"
    logs.mkdir(exist_ok=True)
    await trio.run_process(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(logs)])
    try:
        port = _write_config(data_dir, log_dir=str(logs))
        chatty = "i=0; while [ $i -lt 3000 ]; do echo line $i of a chatty job; i=$((i+1)); done"
        async with open_daemon_async(data_dir) as daemon:
            with trio.fail_after(120):
                await _queue(port, [{"job_id": "d1", "script": ["sh", "-c", chatty]}])
                await daemon.wait_for_log("job mem/d1 (octo/app): succeeded")
                await _queue(port, [{"job_id": "d2", "script": ["sh", "-c", chatty + "; exit 4"]}])
                await daemon.wait_for_log("job mem/d2 (octo/app): failed")
        log = daemon.log()
        assert daemon.process.returncode == 0, log
        warnings = [line for line in daemon.lines if "No space left on device" in line]
        assert warnings, log
        assert all("WARNING" in line and "dropping output" in line for line in warnings), log
        assert len(warnings) <= 2, log  # one per job log, not one per chunk
        assert "Traceback" not in log
        # the log kept what fitted
        assert 0 < sum(p.stat().st_size for p in logs.iterdir()) <= 64 << 10
    finally:
        with trio.CancelScope(shield=True):
            await trio.run_process(["umount", "-l", str(logs)], check=False)


async def test_stop_now_while_sandboxes_are_starting_leaves_nothing(data_dir: Path) -> None:
    port = _write_config(data_dir)
    jobs: list[dict[str, object]] = [
        {"job_id": f"s{n}", "script": ["sleep", "300"]} for n in range(8)
    ]
    async with open_daemon_async(data_dir) as daemon:
        with trio.fail_after(120):
            await _queue(port, jobs)
            await daemon.wait_for_log("job mem/s7 (octo/app): admitted")
            # SIGTERM twice: drain, then stop now, while the sandboxes are being created
            daemon.process.send_signal(signal.SIGTERM)
            await daemon.wait_for_log("SIGTERM: draining")
            daemon.process.send_signal(signal.SIGTERM)
            await daemon.process.wait()
    log = daemon.log()
    assert daemon.process.returncode == 0, log
    assert _runc_processes(data_dir) == [], log
    assert await containerd_leftovers(data_dir, running=False) == ([], []), log
    assert list_netns(f"{NETWORK}-") == []


async def _no_runc_processes(data_dir: Path) -> None:
    """Wait until every runc process of *data_dir*'s sandboxes has ended."""
    for pid in _runc_processes(data_dir):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            await trio.lowlevel.wait_readable(fd)
        finally:
            os.close(fd)


def _runc_processes(data_dir: Path) -> list[int]:
    """runc processes still running a sandbox of *data_dir*'s daemon."""
    return runc_pids("--root", str(data_dir / "run" / "runc"))
