"""A stand-in for forgejo-runner / act_runner, run inside a real sandbox. Standard library only.

It is started with the argv ephemerd's claim gives (``forgejo-runner one-job ...`` or
``act_runner daemon --once ...``) and uses only what the sandbox holds: the ``.runner``
file named by the runner config, or the ``--token-url`` file. It speaks the runner
protocol over Connect JSON, like the real runners: Declare, FetchSingleTask or FetchTask,
UpdateLog, UpdateTask with a result. A job whose payload mentions ``wait-for-cancel``
keeps reporting progress until the forge answers RESULT_CANCELLED, then reports it.

It reports its start to the fake forge (``/api/test/standin``); once it has a task it
scans its environment, argv and every readable file for token-shaped strings (40 hex
digits) and reports their SHA-256 digests there too, to be compared with the
registration tokens the forge issued. It also reports where it was started from and
whether that directory is writable, and whether the job image's marker file
(``JOB_IMAGE_MARKER``) is there, so a test can tell which image the sandbox runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from typing import Any

STARTED = time.time()
SERVICE = "/api/actions/runner.v1.RunnerService/"
TOKEN_SHAPE = re.compile(rb"[0-9a-f]{40}")
SKIP_DIRS = ("/proc", "/sys", "/dev")
MAX_FILE = 4 << 20
JOB_IMAGE_MARKER = "/etc/ephemerd-job-image"


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def credentials(argv: list[str]) -> tuple[str, str, str, list[str]]:
    """(url, uuid, token, labels) from the argv and the files it names."""
    token_url = option(argv, "--token-url")
    if token_url is not None:
        with open(token_url.removeprefix("file://")) as handle:
            token = handle.read().strip()
        labels = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--label"]
        return option(argv, "--url") or "", option(argv, "--uuid") or "", token, labels
    config = option(argv, "--config") or ".runner"
    with open(config) as handle:
        found = re.search(r"^\s+file:\s*(\S+)", handle.read(), re.MULTILINE)
    path = found.group(1) if found else ".runner"
    with open(path) as handle:
        runner = json.load(handle)
    return runner["address"], runner["uuid"], runner["token"], list(runner["labels"])


def scan() -> tuple[list[str], int]:
    """SHA-256 digests of every token-shaped string this process can see; files read."""
    seen: set[bytes] = set()
    blobs = [b"\0".join(k.encode() + b"=" + v.encode() for k, v in os.environ.items())]
    blobs.append(b"\0".join(a.encode() for a in sys.argv))
    for name in ("/proc/self/environ", "/proc/self/cmdline", "/proc/1/environ", "/proc/1/cmdline"):
        try:
            with open(name, "rb") as handle:
                blobs.append(handle.read())
        except OSError:
            pass
    for blob in blobs:
        seen.update(TOKEN_SHAPE.findall(blob))
    files = 0
    for root, dirs, names in os.walk("/"):
        if root.startswith(SKIP_DIRS):
            dirs.clear()
            continue
        for name in names:
            path = os.path.join(root, name)
            try:
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                if os.path.getsize(path) > MAX_FILE:
                    continue
                with open(path, "rb") as handle:
                    seen.update(TOKEN_SHAPE.findall(handle.read()))
                files += 1
            except OSError:
                continue
    return sorted(hashlib.sha256(s).hexdigest() for s in seen), files


class Forge:
    def __init__(self, url: str, uuid: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.headers = {"x-runner-uuid": uuid, "x-runner-token": token}

    def post(
        self, path: str, body: dict[str, object], **headers: str
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **self.headers, **headers},
            method="POST",
        )
        for attempt in range(1, 6):
            try:
                with urllib.request.urlopen(request, timeout=30) as reply:
                    return reply.status, json.loads(reply.read() or b"{}")
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read() or b"{}")
            except (urllib.error.URLError, OSError) as error:
                # as the real runners do: a connection failure is retried, and logged
                print(f"stand-in: {path} attempt {attempt}: {error}", file=sys.stderr)
                time.sleep(0.5)
        raise SystemExit(f"stand-in: {path}: the forge cannot be reached")

    def rpc(self, method: str, body: dict[str, object], **headers: str) -> dict[str, Any]:
        status, answer = self.post(SERVICE + method, body, **headers)
        if status != 200:
            raise SystemExit(f"stand-in: {method} answered {status}: {answer}")
        return answer


def fetch_interval(argv: list[str]) -> float:
    """The runner config's ``fetch_interval`` (seconds), as the real runners poll; 2 s."""
    config = option(argv, "--config")
    if config is None:
        return 2.0
    with open(config) as handle:
        found = re.search(r"^\s+fetch_interval:\s*(\d+(?:\.\d+)?)s\s*$", handle.read(), re.M)
    return float(found.group(1)) if found else 2.0


def fetch(forge: Forge, handle: str | None, interval: float) -> dict[str, Any]:
    """The task this runner is given; polls every *interval* until one comes."""
    deadline = time.monotonic() + 120
    version = 0
    while time.monotonic() < deadline:
        if handle is not None:
            body: dict[str, object] = {"tasksVersion": version, "handle": handle}
            answer = forge.rpc("FetchSingleTask", body, **{"x-runner-request-key": "k1"})
        else:
            answer = forge.rpc("FetchTask", {"tasksVersion": version})
        task: dict[str, Any] = answer.get("task") or {}
        if task.get("id"):
            return task
        version = int(str(answer.get("tasksVersion") or 0))
        time.sleep(interval)
    raise SystemExit("stand-in: no task within 120 s")


def main() -> int:
    program, argv = sys.argv[1], sys.argv[2:]
    url, uuid, token, labels = credentials(argv)
    forge = Forge(url, uuid, token)
    start = {"event": "started", "program": program, "argv": argv, "uuid": uuid}
    here = os.path.dirname(os.path.abspath(__file__))
    start["runner_dir"] = here
    start["runner_dir_writable"] = os.access(here, os.W_OK)
    start["job_image"] = os.path.exists(JOB_IMAGE_MARKER)
    forge.post("/api/test/standin", {**start, "started": STARTED})
    status, _ = forge.post(SERVICE + "Declare", {"version": "stand-in", "labels": labels})
    if status not in (200, 404, 501):  # old Gitea has no Declare
        raise SystemExit(f"stand-in: Declare answered {status}")
    task = fetch(forge, option(argv, "--handle"), fetch_interval(argv))
    task_id = int(str(task["id"]))
    digests, files = scan()  # while holding everything the sandbox was given
    forge.post(
        "/api/test/standin", {**start, "event": "scanned", "digests": digests, "files": files}
    )
    payload = base64.b64decode(str(task.get("workflowPayload") or ""))  # bytes: base64 in JSON
    rows = [{"content": f"stand-in {program} ran task {task_id} ({time.time() - STARTED:.2f}s)"}]
    forge.rpc("UpdateLog", {"taskId": task_id, "index": 0, "rows": rows, "noMore": True})
    result = "RESULT_SUCCESS"
    if b"wait-for-cancel" in payload:
        while True:
            answer = forge.rpc("UpdateTask", {"state": {"id": task_id}})
            state: dict[str, Any] = answer.get("state") or {}
            if state.get("result") == "RESULT_CANCELLED":
                result = "RESULT_CANCELLED"
                break
            time.sleep(0.2)
    forge.rpc("UpdateTask", {"state": {"id": task_id, "result": result}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
