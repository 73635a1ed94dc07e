"""A forge answering 5xx, 429 or garbage for a while: backoff, no storm, others unaffected.

A real ``ephemerd serve`` with two providers: GitHub (the fake, failing on every API
request for ``WINDOW`` seconds) and the in-memory forge, whose jobs must keep running
meanwhile. The sandbox is the memory double: what is measured is the daemon's traffic to
the failing forge, not the job. The issue asks for a minute; ``WINDOW`` is shorter to keep
the test fast, and the request count is bounded so that backoff is visible in it: without
backoff, a 1 s poll plus a retried claim would send several times the bound.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from tests.fakes.github import FakeGitHub, open_fake_github
from tests.fakes.github._state import Failure

from .helpers import SECRET, config_text, free_port, open_daemon_async

WINDOW = 10.0
TOKEN = "ghp_outage000000000000000000000000000000"
HOOK_SECRET = "outage-webhook-secret"
REPO = "acme/app"

MODES = {
    "5xx": Failure(
        502, b"<html><h1>502 Bad Gateway</h1></html>", times=10**6, content_type="text/html"
    ),
    "429": Failure(
        429,
        json.dumps({"message": "You have exceeded a secondary rate limit."}).encode(),
        {"retry-after": "3"},
        times=10**6,
    ),
    "garbage": Failure(200, b'{"total_count": 1, "workflow_runs": [', times=10**6),
}


def _config(port: int, api_port: int) -> str:
    github = f"""
[[github]]
name = "gh"
owner = "acme"
repos = ["app"]
token = "{TOKEN}"
api_url = "http://127.0.0.1:{api_port}"
webhook_secret = "{HOOK_SECRET}"
poll_interval = "1s"

[runner.retry]
schedule = ["1s", "2s", "4s"]
jitter = 0.0
"""
    return config_text(port=port, backend="memory", max_concurrent=4, extra=github)


async def _queue_memory(port: int, job_id: str) -> None:
    body = [{"action": "queued", "repo": "octo/app", "job_id": job_id, "script": ["sleep", "0.3"]}]
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            f"http://127.0.0.1:{port}/webhook/mem",
            headers={"x-ephemerd-test-token": SECRET},
            content=msgspec.json.encode(body),
        )
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_a_failing_forge_backs_off_while_the_other_keeps_running_then_recovers(
    tmp_path: Path, mode: str
) -> None:
    async with open_fake_github() as gh:
        _prepare(gh)
        port = free_port()
        api_port = int(gh.url.rsplit(":", 1)[1])
        gh.world.create_hook(
            f"repos/{REPO}", f"http://127.0.0.1:{port}/webhook/gh", HOOK_SECRET, ["workflow_job"]
        )
        (tmp_path / "config.toml").write_text(_config(port, api_port))
        async with open_daemon_async(tmp_path, ready="serving 2 provider") as daemon:
            with trio.fail_after(60):
                await gh.app.wait_requests(1)  # the first poll
                failure = MODES[mode]
                gh.fail(failure)
                before = gh.count()
                started = trio.current_time()
                run = await gh.queue(REPO, [("build", ["self-hosted", "linux"])])
                for n in range(4):  # the other forge is unaffected
                    await _queue_memory(port, f"m{n}")
                await daemon.wait_for_log("): succeeded", count=4)
                assert trio.current_time() - started < WINDOW, daemon.log()
                await trio.sleep_until(started + WINDOW)
                during = gh.requests[before:]
                gh.world.failures.remove(failure)
                # recovery: the queued job gets its runner once the forge answers again
                await gh.app.wait_until(lambda: bool(gh.world.runners))
                recovered = trio.current_time() - started - WINDOW
        log = daemon.log()
        assert daemon.process.returncode == 0, log
        assert all(f"job mem/m{n} (octo/app): succeeded" in log for n in range(4)), log
        t0 = during[0].at
        shape = [(round(r.at - t0, 1), r.method, r.path.rsplit("/", 1)[-1]) for r in during]
        print(f"{mode}: {len(during)} requests in {WINDOW:g}s; recovered {recovered:.1f}s after")
        print(shape)
        # no storm: polls keep (at least) their interval, claims follow the retry ladder
        polls = [r for r in during if r.path.endswith("/runs")]
        assert len(polls) <= WINDOW + 1, shape
        if mode == "429":  # Retry-After: 3 is honoured by every request, claims included
            bursts: list[list[float]] = []  # requests sent together, e.g. a claim's two
            for r in during:
                if bursts and r.at - bursts[-1][0] < 0.2:
                    bursts[-1].append(r.at)
                else:
                    bursts.append([r.at])
            assert all(len(b) <= 2 for b in bursts), shape
            assert all(b[0] - a[0] >= 2.7 for a, b in itertools.pairwise(bursts)), shape
        else:
            claims = [r.at for r in during if r.path.endswith("/generate-jitconfig")]
            gaps = [b - a for a, b in itertools.pairwise(claims)]
            assert claims and all(gap >= 0.9 for gap in gaps), shape
            assert all(b >= 0.9 * a for a, b in itertools.pairwise(gaps)), shape
        assert len(during) <= 2 * WINDOW, shape
        # a rate-limited forge is tried again later than a failing one
        assert recovered < (30 if mode == "429" else 15), log
        assert run.jobs[0].status == "queued"  # the memory sandbox does not run the runner
        # the runner registered for it was released when the daemon stopped
        assert gh.world.live_runners() == [], log
        assert "Traceback" not in log


def _prepare(gh: FakeGitHub) -> None:
    gh.world.tokens.add(TOKEN)
    gh.world.add_repo(REPO)
