"""One job network per ephemerd on a host: separate names run side by side, a shared one is refused.

Two daemons with different data dirs used to share the bridge ``ephemerd0``, the nft
table and the namespace prefix, and each one's start-up sweep removed the other's
namespaces. Now each has its own ``[sandbox] network_name``/``subnet``; a second daemon on
a name in use stops with one line naming the first, and an overlapping subnet under
another name is refused by the route check, also in one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ephemerd._errors import ConfigError
from ephemerd.config import load_config
from ephemerd.sandbox._netlock import hold_network

from .helpers import (
    Daemon,
    build_memory_image,
    config_text,
    free_port,
    start_daemon,
    unmount_files,
)

needs_containerd = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("containerd") is None or shutil.which("runc") is None,
    reason="needs root, containerd and runc",
)

NETS = {"a": ("ephrela", "10.94.0.0/24"), "b": ("ephrelb", "10.95.0.0/24")}


# --- config and lock, in process ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('network_name = "Ephemerd"', "sandbox.network_name: must be 1-14 lowercase"),
        ('network_name = "ephemerdtoolong1"', "the bridge <name>0 must fit 15 characters"),
        ('network_name = "eph-two"', "sandbox.network_name"),
        ('subnet = "10.88.0.1/16"', "sandbox.subnet: must be an IPv4 network"),
        ('subnet = "fd00::/64"', "sandbox.subnet: must be an IPv4 network from /8 to /28"),
        ('subnet = "127.0.0.0/16"', "sandbox.subnet: must not be a loopback"),
    ],
)
def test_bad_network_keys_are_one_line_errors_naming_the_key(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[sandbox]\n{body}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, data_dir=tmp_path)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_network_keys_default_to_the_shared_daemon_network(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[sandbox]\nsubnet = "10.77.0.0/20"\n')
    sandbox = load_config(path, data_dir=tmp_path).sandbox
    assert (sandbox.network_name, sandbox.subnet) == ("ephemerd", "10.77.0.0/20")


def test_second_owner_of_a_network_is_refused_naming_the_first(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    with hold_network("ephx", data_dir=tmp_path / "one", lock_dir=locks) as path:
        assert path.read_text() == f"{os.getpid()} {(tmp_path / 'one').resolve()}\n"
        with (
            pytest.raises(ConfigError) as raised,
            hold_network("ephx", data_dir=tmp_path / "two", lock_dir=locks),
        ):
            pass
        message = str(raised.value)
        assert f"pid {os.getpid()}" in message
        assert str(tmp_path / "one") in message
        assert "[sandbox] network_name and subnet" in message
        # another name is free
        with hold_network("ephy", data_dir=tmp_path / "two", lock_dir=locks):
            pass
    # released with the block (and the file removed): the next owner gets it
    assert not path.exists()
    with hold_network("ephx", data_dir=tmp_path / "two", lock_dir=locks):
        assert path.read_text().endswith(f"{(tmp_path / 'two').resolve()}\n")


def test_a_lock_file_left_by_a_killed_owner_is_simply_taken(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "net-ephx.lock").write_text("999999 /gone\n")  # nobody holds it
    with hold_network("ephx", data_dir=tmp_path, lock_dir=locks) as path:
        assert path.read_text() == f"{os.getpid()} {tmp_path.resolve()}\n"


# --- two real daemons ---------------------------------------------------------------------


class _Hits:
    """A host-loopback HTTP server recording the paths jobs fetch."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.changed = threading.Condition()
        hits = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with hits.changed:
                    hits.paths.append(self.path)
                    hits.changed.notify_all()
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, wanted: set[str], timeout: float = 60) -> None:
        with self.changed:
            self.changed.wait_for(lambda: wanted <= set(self.paths), timeout)
        assert wanted <= set(self.paths), (wanted, self.paths)


@pytest.fixture(scope="module")
def hits() -> Iterator[_Hits]:
    server = _Hits()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory, hits: _Hits) -> Iterator[dict[str, Daemon]]:
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and containerd")
    running: dict[str, Daemon] = {}
    dirs: list[Path] = []
    try:
        for key, (name, subnet) in NETS.items():
            data_dir = tmp_path_factory.mktemp(f"net-{key}")
            dirs.append(data_dir)
            build_memory_image(data_dir)
            port = free_port()
            (data_dir / "config.toml").write_text(
                config_text(
                    port=port,
                    network_name=name,
                    subnet=subnet,
                    allow=(f"127.0.0.1:{hits.port}",),
                    max_concurrent=4,
                )
            )
            running[key] = start_daemon(data_dir, port)
        yield running
    finally:
        for daemon in running.values():
            assert daemon.stop() == 0, "\n".join(daemon.lines)
        for data_dir in dirs:
            unmount_files(data_dir)


def _serve_once(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "serve"],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _fetch_script(gateway: str, port: int, path: str) -> list[str]:
    return ["sh", "-c", f"wget -q -O /dev/null http://{gateway}:{port}{path}"]


@needs_containerd
def test_two_daemons_with_their_own_networks_both_run_networked_jobs(
    daemons: dict[str, Daemon], hits: _Hits
) -> None:
    wanted: set[str] = set()
    for key, daemon in daemons.items():
        gateway = NETS[key][1].replace(".0/24", ".1")
        events: list[dict[str, object]] = []
        for n in range(3):
            path = f"/{key}/{n}"
            wanted.add(path)
            events.append(
                {"job_id": f"{key}{n}", "script": _fetch_script(gateway, hits.port, path)}
            )
        daemon.queue(*events)
    hits.wait_for(wanted)
    for daemon in daemons.values():
        for n in range(3):
            daemon.wait_for_log(f"job mem/{daemon.data_dir.name[4]}{n} (octo/app): succeeded")
    assert not any("failed" in line for d in daemons.values() for line in d.lines)


@needs_containerd
def test_a_second_daemon_on_a_network_in_use_is_refused_in_one_line(
    daemons: dict[str, Daemon], hits: _Hits, tmp_path: Path
) -> None:
    first = daemons["a"]
    name, subnet = NETS["a"]
    (tmp_path / "config.toml").write_text(
        config_text(port=free_port(), network_name=name, subnet=subnet)
    )
    try:
        result = _serve_once(tmp_path)
    finally:
        unmount_files(tmp_path)
    assert result.returncode == 2, result.stderr
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert f"pid {first.process.pid}" in errors[0]
    assert str(first.data_dir) in errors[0]
    assert "[sandbox] network_name and subnet" in errors[0]
    assert "Traceback" not in result.stderr
    assert not _containerd_running(tmp_path)
    # the first daemon's network is untouched: its jobs still reach the host
    first.queue({"job_id": "after", "script": _fetch_script("10.94.0.1", hits.port, "/a/after")})
    hits.wait_for({"/a/after"})
    first.wait_for_log("job mem/after (octo/app): succeeded")


@needs_containerd
def test_an_overlapping_subnet_under_another_name_is_refused_in_one_line(
    daemons: dict[str, Daemon], tmp_path: Path
) -> None:
    (tmp_path / "config.toml").write_text(
        config_text(port=free_port(), network_name="ephrelc", subnet=NETS["b"][1])
    )
    try:
        result = _serve_once(tmp_path)
    finally:
        unmount_files(tmp_path)
    assert result.returncode == 2, result.stderr
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert f"overlaps the host route {NETS['b'][1]} on ephrelb0" in errors[0]
    assert "set another [sandbox] subnet" in errors[0]
    assert not _containerd_running(tmp_path)
    assert daemons["b"].process.poll() is None


def _containerd_running(data_dir: Path) -> bool:
    config = str(data_dir / "containerd" / "config.toml").encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if config in (entry / "cmdline").read_bytes().split(b"\0"):
                    return True
            except OSError:
                continue
    return False
