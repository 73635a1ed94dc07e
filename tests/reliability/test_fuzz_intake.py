"""Hostile requests at a running daemon's HTTP intake: it stays up and claims nothing.

One real ``ephemerd serve`` (in-memory sandbox) with a GitHub instance (pointed at the fake
GitHub, webhook secret set) and a memory instance (token-checked deliveries) is started once
for the module. Hypothesis then sends it requests no forge would: any path, method,
headers and body, near-miss ``workflow_job`` payloads signed with the wrong secret or not
at all, memory events with a wrong token, and raw bytes that are not HTTP. Afterwards the
daemon must still answer ``/healthz``, its claim counters must be zero, the fake GitHub must
have no runner registered, and its log must hold no traceback. A last, genuine delivery
proves the counters do move when a claim happens.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from ephemerd.forges.github._webhook import signature
from tests.fakes.github import FakeGitHub, open_fake_github

from ._strategies import FUZZ, JSON, encoded, near

GH_SECRET = "intake-gh-secret"
MEM_SECRET = "intake-mem-secret"
TOKEN = "ghp_intake000000000000000000000000000000"

_WORKFLOW_JOB = {
    "action": "queued",
    "workflow_job": {
        "id": 42,
        "run_id": 7,
        "name": "build",
        "status": "queued",
        "labels": ["self-hosted", "linux"],
    },
    "repository": {"name": "app", "full_name": "acme/app"},
}
_MEMORY_EVENT = {"action": "queued", "job_id": "1", "repo": "acme/app", "labels": ["self-hosted"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _FakeGitHubThread:
    """The fake GitHub served by its own Trio run in a thread, for a synchronous fixture."""

    def __init__(self) -> None:
        self._found: queue.Queue[tuple[FakeGitHub, trio.lowlevel.TrioToken, trio.Event]] = (
            queue.Queue()
        )
        self._thread = threading.Thread(target=trio.run, args=(self._serve,), daemon=True)

    async def _serve(self) -> None:
        stop = trio.Event()
        async with open_fake_github() as gh:
            gh.world.tokens.add(TOKEN)
            gh.world.add_repo("acme/app")
            self._found.put((gh, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        self.github, self._token, self._stop = self._found.get(timeout=30)
        return self.github

    def __exit__(self, *exc: object) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(timeout=30)


class _Log:
    """The daemon's stderr, drained by a thread; ``ready`` is set once it serves."""

    def __init__(self, daemon: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._changed = threading.Condition()
        self._daemon = daemon
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self._daemon.stderr is not None
        for raw in self._daemon.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
            if "serving 2 provider" in line:
                self.ready.set()
        with self._changed:
            self.lines.append("<eof>")
            self._changed.notify_all()
        self.ready.set()  # the daemon exited: whoever waits finds out

    def wait_for(self, pattern: str, timeout: float = 30) -> None:
        """Block until a line matches *pattern* (a regex)."""
        found = re.compile(pattern)
        with self._changed:
            done = self._changed.wait_for(
                lambda: any(found.search(line) or line == "<eof>" for line in self.lines),
                timeout=timeout,
            )
        assert done and "<eof>" not in self.lines, f"no {pattern!r} in:\n{self.text}"

    def join(self) -> None:
        self._thread.join(timeout=30)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Intake:
    url: str
    port: int
    daemon: subprocess.Popen[bytes]
    log: _Log
    github: FakeGitHub


@pytest.fixture(scope="module")
def intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    data_dir = tmp_path_factory.mktemp("fuzz-intake")
    port = _free_port()
    with _FakeGitHubThread() as github:
        (data_dir / "config.toml").write_text(
            f"""
[sandbox]
backend = "memory"
[[memory]]
name = "mem"
secret = "{MEM_SECRET}"
[[github]]
name = "gh"
owner = "acme"
repos = ["app"]
token = "{TOKEN}"
api_url = "{github.url}"
webhook_secret = "{GH_SECRET}"
poll_interval = "10m"
[runner]
max_concurrent = 2
[webhook]
listen = "127.0.0.1:{port}"
max_body = "64KiB"
[metrics]
enabled = true
listen = "127.0.0.1:{port}"
"""
        )
        daemon = subprocess.Popen(
            [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log = _Log(daemon)
        try:
            assert log.ready.wait(timeout=60) and daemon.poll() is None, log.text
            yield Intake(f"http://127.0.0.1:{port}", port, daemon, log, github)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            log.join()
            assert daemon.stderr is not None
            daemon.stderr.close()


def _claims(intake: Intake) -> dict[str, int]:
    """``ephemerd_claims_total`` per instance and outcome, from ``/metrics``."""
    text = httpx.get(f"{intake.url}/metrics", timeout=10).text
    found = re.findall(r"^ephemerd_claims_total\{([^}]*)\} (\d+)", text, re.M)
    return {labels: int(n) for labels, n in found}


_PATHS = st.sampled_from(
    ["/webhook/gh", "/webhook/mem", "/webhook/nope", "/webhook/", "/healthz", "/metrics", "/"]
) | st.text(alphabet="/abc%.?#=&~", max_size=20).map(lambda p: "/" + p)
_METHODS = st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
_HEADER_VALUES = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80
).map(str.strip)
_HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "x-github-event",
            "x-github-delivery",
            "x-hub-signature-256",
            "x-ephemerd-test-token",
            "content-type",
            "x-forwarded-for",
            "transfer-encoding",
        ]
    ),
    _HEADER_VALUES,
    max_size=5,
)
_BODIES = encoded(near(_WORKFLOW_JOB) | st.lists(near(_MEMORY_EVENT), max_size=3) | JSON)


@FUZZ
@given(path=_PATHS, method=_METHODS, headers=_HEADERS, body=_BODIES, sign=st.booleans())
def test_random_requests_neither_crash_the_intake_nor_claim(
    intake: Intake, path: str, method: str, headers: dict[str, str], body: bytes, sign: bool
) -> None:
    headers.pop("transfer-encoding", None)  # httpx frames the body itself
    if sign:  # signed, but with a secret that is not the instance's
        headers["x-hub-signature-256"] = signature("not-" + GH_SECRET, body)
        headers.setdefault("x-github-event", "workflow_job")
    if headers.get("x-ephemerd-test-token") == MEM_SECRET:
        headers["x-ephemerd-test-token"] = "wrong"
    with httpx.Client(base_url=intake.url, timeout=10) as client:
        reply = client.request(method, path, headers=headers, content=body)
    assert reply.status_code < 500 or reply.status_code == 503, (reply.status_code, reply.text)
    if path.startswith("/webhook/") and method == "POST" and reply.status_code == 200:
        raise AssertionError(f"an unauthenticated delivery was accepted: {reply.text}")


_RAW = [
    b"\x00\x01\x02 garbage\r\n\r\n",
    b"POST /webhook/gh HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\nabc",
    b"POST /webhook/gh HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /webhook/mem HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 500 + b"\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
]


@pytest.mark.parametrize(
    "raw", _RAW, ids=["binary", "short-body", "bad-chunk", "long-target", "many-headers", "h2c"]
)
def test_bytes_that_are_not_http_are_refused(intake: Intake, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", intake.port), timeout=10) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except OSError:
            pass  # the server may cut the connection: that is a refusal too


def test_after_the_fuzz_the_daemon_is_up_and_claimed_nothing(intake: Intake) -> None:
    """Runs after the tests above (file order): the daemon survived them, claimed nothing."""
    assert httpx.get(f"{intake.url}/healthz", timeout=10).status_code == 200
    assert intake.daemon.poll() is None, intake.log.text
    assert sum(_claims(intake).values()) == 0, _claims(intake)
    assert intake.github.world.runners == {}
    assert "Traceback" not in intake.log.text, intake.log.text

    # the control: a genuine delivery is claimed, and the counter shows it
    body = json.dumps([_MEMORY_EVENT]).encode()
    reply = httpx.post(
        f"{intake.url}/webhook/mem",
        content=body,
        headers={"x-ephemerd-test-token": MEM_SECRET},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    intake.log.wait_for(r"job mem/1 \(.*\): (succeeded|failed|cancelled)")
    assert _claims(intake).get('instance="mem",outcome="claimed"') == 1, _claims(intake)
