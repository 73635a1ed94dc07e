"""A stand-in for the GitHub Actions runner, run in a sandbox exactly as the real one is.

The claim's entrypoint exports the JIT configuration as ``ACTIONS_RUNNER_INPUT_JITCONFIG``
and execs ``./run.sh``, which runs this script. Like the real runner it decodes the JIT
config (base64 JSON of base64 files; ``.runner`` names the agent and the server URL),
connects to the server, takes whatever job the server hands it (possibly not the one it
was registered for), reports the job completed and exits. Standard library only: the
image holds the host's bare Python and nothing else.
"""

import time

STARTED = time.time()  # first: the process start as the pickup benchmark sees it

import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402


def _post(url: str, body: dict[str, object]) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()


def main() -> int:
    jit = os.environ.pop("ACTIONS_RUNNER_INPUT_JITCONFIG", "")
    if not jit:
        print("standin: ACTIONS_RUNNER_INPUT_JITCONFIG is not set", file=sys.stderr)
        return 2
    files = json.loads(base64.b64decode(jit))
    agent = json.loads(base64.b64decode(files[".runner"]))
    name, base = agent["AgentName"], agent["ServerUrl"].rstrip("/")
    url = f"{base}/_fake/runners/{agent['AgentId']}"
    print(f"standin {name}: connecting to {base}", flush=True)
    while True:  # a real runner also waits, connected, until it is given a job
        status, body = _post(f"{url}/acquire", {"name": name, "started": STARTED})
        if status == 200:
            break
    job = json.loads(body)["job"]
    print(f"standin {name}: running job {job['id']} ({job['name']})", flush=True)
    _post(f"{url}/complete", {"name": name, "job_id": job["id"], "conclusion": "success"})
    print(f"standin {name}: job {job['id']} completed", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (urllib.error.URLError, OSError) as error:  # removed, or the server went away
        print(f"standin: {error!r}", flush=True)
        sys.exit(1)
