"""A real ``ephemerd serve`` with real containerd sandboxes, fed trivial jobs over HTTP.

Shared by ``jobs_per_minute.py`` and ``daemon_rss.py``. The daemon runs the memory provider
(``ephemerd.testing``: jobs arrive as webhook deliveries carrying the script to run) on the
containerd backend, so each job is a real sandbox running a real process; the image is the
busybox host image stored under the memory provider's default name. Finished jobs are
counted from ``/metrics``; running ones from ``/healthz``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import trio

from ephemerd.sandbox import EmbeddedContainerd, ImageStore, build_host_image, open_containerd

SECRET = "bench-secret"
IMAGE = "memory/runner:latest"  # the memory provider's default image
NETWORK = "ephbenchd"
SUBNET = "10.211.72.0/22"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def containerd_rss_mib(data_dir: Path) -> float:
    """RSS of *data_dir*'s embedded containerd."""
    return rss_mib(int(EmbeddedContainerd(data_dir).pid_file.read_text()))


def runc_rss_mib(data_dir: Path) -> tuple[int, float]:
    """How many runc processes run *data_dir*'s sandboxes, and their RSS together."""
    count, total = 0, 0.0
    marker = b"--root\0" + str(data_dir / "run" / "runc").encode() + b"\0"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with suppress(OSError):
            argv = (proc / "cmdline").read_bytes()
            if argv.startswith(b"runc\0") and marker in argv:
                count += 1
                total += rss_mib(int(proc.name))
    return count, total


def build_image(data_dir: Path) -> None:
    async def build() -> None:
        async with open_containerd(data_dir=data_dir) as client:
            await build_host_image(ImageStore(client), IMAGE, work_dir=data_dir / "tmp")

    trio.run(build)


class BenchDaemon:
    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)

    def submit(self, jobs: list[tuple[str, list[str]]]) -> None:
        """Queue jobs ``(job_id, script)`` in one delivery."""
        body = [
            {"action": "queued", "job_id": job_id, "repo": "bench/app", "script": script}
            for job_id, script in jobs
        ]
        reply = self.http.post(
            "/webhook/bench", headers={"x-ephemerd-test-token": SECRET}, content=json.dumps(body)
        )
        reply.raise_for_status()

    def finished(self) -> int:
        text = self.http.get("/metrics").text
        found = re.findall(r'^ephemerd_jobs_total\{instance="bench",[^}]*\} (\d+)', text, re.M)
        return sum(int(n) for n in found)

    def failed(self) -> int:
        text = self.http.get("/metrics").text
        found = re.findall(
            r'^ephemerd_jobs_total\{instance="bench",result="(?!succeeded)[^"]*"\} (\d+)',
            text,
            re.M,
        )
        return sum(int(n) for n in found)

    def active(self) -> int:
        return int(self.http.get("/healthz").json()["active_jobs"])

    def wait(self, predicate: str, check: object, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():  # type: ignore[operator]
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"daemon: timed out waiting for {predicate}")
            time.sleep(0.02)


@contextmanager
def bench_daemon(data_dir: Path, *, max_concurrent: int) -> Iterator[BenchDaemon]:
    """``ephemerd serve`` on *data_dir* (its image built already) until the block ends."""
    port = free_port()
    (data_dir / "config.toml").write_text(
        f"""
[[memory]]
name = "bench"
secret = "{SECRET}"
[runner]
max_concurrent = {max_concurrent}
memory = "128MiB"
shutdown_timeout = "1s"
[sandbox]
network = "none"
network_name = "{NETWORK}"
subnet = "{SUBNET}"
[webhook]
listen = "127.0.0.1:{port}"
[metrics]
enabled = true
listen = "127.0.0.1:{port}"
"""
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "serve"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    daemon = BenchDaemon(process, f"http://127.0.0.1:{port}")

    def healthy() -> bool:
        try:
            return daemon.http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        daemon.wait("/healthz", healthy, timeout=60)
        yield daemon
    finally:
        daemon.http.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        subprocess.run(
            ["umount", "-l", str(data_dir / "run" / "files")], check=False, capture_output=True
        )
