"""SIGTERM during a burst: no claim after the signal, running jobs finish, exit 0.

A real ``ephemerd serve`` with the in-memory provider and sandbox (the forge and the
sandbox do not matter here; the scheduler, intake and signal handling are the real ones).
Job states are followed on the daemon's own watch stream.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from ephemerd.capabilities import JobState
from ephemerd.control import open_control_client

from .helpers import SECRET, config_text, free_port, open_daemon_async

_STARTED = {JobState.CLAIMING, JobState.STARTING, JobState.RUNNING, JobState.SUCCEEDED}


async def _queue(port: int, events: list[dict[str, object]]) -> httpx.Response:
    body = [{"action": "queued", "repo": "octo/app", **e} for e in events]
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"http://127.0.0.1:{port}/webhook/mem",
            headers={"x-ephemerd-test-token": SECRET},
            content=msgspec.json.encode(body),
        )


async def test_sigterm_during_a_burst_claims_nothing_more_and_lets_running_jobs_finish(
    tmp_path: Path,
) -> None:
    port = free_port()
    (tmp_path / "config.toml").write_text(
        config_text(port=port, backend="memory", max_concurrent=2)
    )
    history: dict[str, list[JobState]] = {}
    async with open_daemon_async(tmp_path) as daemon:
        with trio.fail_after(60):
            async with (
                open_control_client(tmp_path / "ephemerd.sock") as client,
                client.watch_jobs() as updates,
            ):
                # each job runs 3 s: no slot frees up for seconds after the signal
                reply = await _queue(
                    port, [{"job_id": f"b{n}", "script": ["sleep", "3"]} for n in range(8)]
                )
                assert reply.status_code == 200, reply.text
                async for update in updates:
                    for change in update.changes:
                        history.setdefault(change.job.key.job_id, []).append(change.job.state)
                    if sum(JobState.RUNNING in s for s in history.values()) == 2:
                        break
            running = {job for job, states in history.items() if JobState.RUNNING in states}
            daemon.process.send_signal(signal.SIGTERM)
            await daemon.wait_for_log("SIGTERM: draining")
            # work arriving after the signal is not claimed either (or the intake is closed)
            with contextlib.suppress(httpx.TransportError):
                await _queue(port, [{"job_id": "late", "script": ["exit", "0"]}])
            code = await daemon.process.wait()
    log = daemon.log()
    assert code == 0, log
    succeeded = {m.split("job mem/")[1].split(" ")[0] for m in log.splitlines() if "succeeded" in m}
    assert succeeded == running, log
    assert "job mem/late" not in log
    assert "all jobs finished cleanly; ephemerd stopped" in log


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("containerd") is None, reason="needs root and containerd"
)
async def test_sigterm_during_start_up_stops_what_was_started(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        config_text(port=free_port(), network_name="ephrels", subnet="10.99.0.0/24")
    )
    try:
        # the job network is set up once the embedded containerd runs: signal right then
        async with open_daemon_async(tmp_path, ready="job network ephrels") as daemon:
            daemon.process.send_signal(signal.SIGTERM)
            with trio.fail_after(60):
                code = await daemon.process.wait()
    finally:
        await trio.run_process(["umount", "-l", str(tmp_path / "run" / "files")], check=False)
    log = daemon.log()
    assert code in (0, 130), log  # a drain if serving already, else start-up interrupted
    assert not _containerd_of(tmp_path), log
    assert "Traceback" not in log


def _containerd_of(data_dir: Path) -> list[int]:
    wanted = str(data_dir / "containerd" / "config.toml").encode()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if wanted in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
