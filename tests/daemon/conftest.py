"""A real ``ephemerd serve`` subprocess with the in-memory provider and sandbox.

The daemon is the real one: real config loading, scheduler, journal, control socket and
HTTP intake. Only the forge and the sandbox are the test doubles of ``ephemerd.testing``,
selected by config. Jobs are fed over HTTP to the memory provider's webhook route.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

SECRET = "daemon-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ephemerd(*args: str, data_dir: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class Daemon:
    """A running daemon; ``lines`` collects its log, ``wait_for_log`` blocks on one."""

    def __init__(self, data_dir: Path, port: int, process: subprocess.Popen[str]) -> None:
        self.data_dir = data_dir
        self.port = port
        self.process = process
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<eof>")
            self._cond.notify_all()

    def wait_for_log(self, text: str, timeout: float = 30) -> str:
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(text in line or line == "<eof>" for line in self.lines), timeout
            )
            match = next((line for line in self.lines if text in line), None)
        if not found or match is None:
            raise AssertionError(f"daemon never logged {text!r}; log:\n" + "\n".join(self.lines))
        return match

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def queue(self, *events: dict[str, object]) -> None:
        body = [{"action": "queued", "repo": "octo/app", **event} for event in events]
        reply = httpx.post(
            f"{self.url}/webhook/mem",
            headers={"x-ephemerd-test-token": SECRET},
            content=msgspec.json.encode(body),
            timeout=10,
        )
        assert reply.status_code == 200, reply.text

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.close()
        return code

    def close(self) -> None:
        """Release the log pipe once the process has ended."""
        self._reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def write_config(data_dir: Path, port: int, extra: str = "") -> None:
    (data_dir / "config.toml").write_text(
        f"""
[sandbox]
backend = "memory"

[[memory]]
name = "mem"
secret = "{SECRET}"

[runner]
max_concurrent = 2
shutdown_timeout = "20s"

[webhook]
listen = "127.0.0.1:{port}"
{extra}
"""
    )


def start_daemon(data_dir: Path, port: int) -> Daemon:
    process = subprocess.Popen(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "serve"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    daemon = Daemon(data_dir, port, process)
    daemon.wait_for_log("serving 1 provider")
    return daemon


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    port = free_port()
    write_config(tmp_path, port)
    running = start_daemon(tmp_path, port)
    try:
        yield running
    finally:
        running.stop()
