"""Mixed-forge soak: every provider at once, 200 jobs, real sandboxes, then nothing left.

One real ``ephemerd serve`` runs a GitHub, a Forgejo (>= 15, one job handle per runner),
a Gitea (ephemeral registered runners), a GitLab (gitlab-runner's custom executor, played
by ``RunnerDriver``) and a Woodpecker instance, each against its fake server, with
``max_concurrent = 8`` on its own job network. Forty jobs go to each forge at once, among
them jobs cancelled on the forge (GitHub: before any runner took it, with the deliveries
arriving late; Forgejo, Gitea and Woodpecker: while running; GitLab: gitlab-runner
SIGTERMs the running build stage), failing Woodpecker workflows and GitLab build
scripts, and jobs asking for labels (GitLab: runner tags) this host lacks.

Checked: every claimable job ran exactly once with the result its forge expects; the
mismatched ones were never claimed; and once the daemon has drained and exited, no
container, runc state, snapshot or lease beyond the image's, no namespace, bridge port or extra
firewall rule, no runner registration on any forge (Woodpecker's one agent is kept by
design) and no journal row remains; every GitLab job gitlab-runner prepared was cleaned
up, and each stage's exit code follows the custom executor's contract.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack, closing
from functools import partial
from pathlib import Path

import msgspec
import pytest
import trio

from ephemerd.control import open_control_client
from tests.e2e.actions_helpers import Daemon
from tests.e2e.harness import free_port
from tests.fakes.forgejo import FakeForge, open_fake_forge
from tests.fakes.forgejo import FakeJob as ActionsJob
from tests.fakes.github import FakeGitHub, open_fake_github
from tests.fakes.github._state import FakeJob as GitHubJob
from tests.fakes.gitlab import open_fake_gitlab
from tests.fakes.woodpecker import FakeWoodpecker, open_fake_woodpecker
from tests.forges.gitlab.runner_driver import RunnerDriver, Timeouts

from ._soak_gitlab import TAGS, TOKEN, check_gitlab, gitlab_plan, run_gitlab_jobs
from ._soak_host import (
    GATEWAY,
    SOAK_IMAGE,
    Census,
    build_soak_image,
    census,
    nft_rules,
    unmount_files,
    write_config,
)

pytestmark = [
    pytest.mark.containerd,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("containerd") is None or shutil.which("runc") is None,
        reason="needs root, containerd and runc",
    ),
]

PER_FORGE = 40
PROVIDERS = 5
CANCELLED = 3
MISMATCHED = 3
FAILING = 6  # Woodpecker workflows and GitLab build scripts that exit non-zero
MAX_CONCURRENT = 8
REPO = "acme/app"
GH_TOKEN = "ghp_soak000000000000000000000000000000000"
GH_SECRET = "soak-webhook-secret"
API_TOKEN = "pat-soak-0123456789"
AGENT_SECRET = "soak-agent-secret-0123456789"
FINISHED = ("success", "failure", "cancelled")
DEADLINE = 900.0
"""About 3 minutes on an idle 2-core machine; far more when other suites share it."""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("soak")
    trio.run(build_soak_image, path)
    yield path
    unmount_files(path)


class GitHubPlan(msgspec.Struct, kw_only=True):
    ok: list[GitHubJob]
    cancelled: list[GitHubJob]
    mismatched: list[GitHubJob]


class ActionsPlan(msgspec.Struct, kw_only=True):
    ok: list[ActionsJob]
    cancelled: list[ActionsJob]
    mismatched: list[ActionsJob]


class WoodpeckerPlan(msgspec.Struct, kw_only=True):
    ok: list[str]
    failing: list[str]
    cancelled: list[str]
    mismatched: list[str]


async def _github_jobs(gh: FakeGitHub) -> GitHubPlan:
    """Queue the GitHub share; cancelled jobs are cancelled before any runner can take them
    and their ``queued`` delivery arrives late, followed by ``completed``."""
    normal = PER_FORGE - CANCELLED - MISMATCHED
    run = gh.world.add_run(
        REPO,
        [(f"ok-{i}", ["self-hosted", "linux"]) for i in range(normal)]
        + [(f"cancel-{i}", ["self-hosted", "linux"]) for i in range(CANCELLED)]
        + [(f"gpu-{i}", ["self-hosted", "gpu"]) for i in range(MISMATCHED)],
    )
    plan = GitHubPlan(
        ok=run.jobs[:normal],
        cancelled=run.jobs[normal : normal + CANCELLED],
        mismatched=run.jobs[normal + CANCELLED :],
    )
    for job in plan.cancelled:
        gh.world.complete(job.id, "cancelled")
    gh.app.jobs_queued()
    for job in run.jobs:
        await gh.deliver_job("queued", job)
    for job in plan.cancelled:
        await gh.deliver_job("completed", job)
    return plan


def _actions_jobs(forge: FakeForge, nursery: trio.Nursery) -> ActionsPlan:
    """Queue a Forgejo/Gitea share; cancelled jobs are cancelled once they run."""
    world = forge.world
    plan = ActionsPlan(
        cancelled=[
            world.add_job(REPO, ["ubuntu-latest"], name=f"c{i}", payload=b"wait-for-cancel\n")
            for i in range(CANCELLED)
        ],
        ok=[
            world.add_job(REPO, ["ubuntu-latest"], name=f"b{i}")
            for i in range(PER_FORGE - CANCELLED - MISMATCHED)
        ],
        mismatched=[
            world.add_job(REPO, ["windows-latest"], name=f"w{i}") for i in range(MISMATCHED)
        ],
    )

    async def cancel_when_running(job: ActionsJob) -> None:
        await world.wait_until(lambda: job.status == "running")
        world.cancel(job)

    for job in plan.cancelled:
        nursery.start_soon(cancel_when_running, job)
    return plan


def _workflow(workflow_id: str, commands: list[str]) -> bytes:
    step = {
        "name": "run",
        "uuid": f"step-{workflow_id}",
        "type": "commands",
        "image": SOAK_IMAGE,
        "on_success": True,
        "commands": commands,
        "environment": {"CI_REPO": REPO},
    }
    return msgspec.json.encode({"pipeline": [{"steps": [step]}]})


def _woodpecker_jobs(wp: FakeWoodpecker, nursery: trio.Nursery) -> WoodpeckerPlan:
    state = wp.state
    normal = PER_FORGE - CANCELLED - MISMATCHED - FAILING
    plan = WoodpeckerPlan(
        cancelled=[f"c{i}" for i in range(CANCELLED)],
        ok=[f"ok{i}" for i in range(normal)],
        failing=[f"f{i}" for i in range(FAILING)],
        mismatched=[f"gpu{i}" for i in range(MISMATCHED)],
    )
    for wid in plan.cancelled:
        state.enqueue(wid, _workflow(wid, ["echo started", "sleep 300"]))
    for wid in plan.ok:
        state.enqueue(wid, _workflow(wid, [f"echo {wid}"]))
    for wid in plan.failing:
        state.enqueue(wid, _workflow(wid, ["echo failing", "exit 3"]))
    for wid in plan.mismatched:
        state.enqueue(wid, _workflow(wid, ["true"]), labels={"gpu": "yes"})

    async def cancel_when_running(wid: str) -> None:
        await state.wait_step_started(f"step-{wid}")
        state.cancel(wid)

    for wid in plan.cancelled:
        nursery.start_soon(cancel_when_running, wid)
    return plan


async def _start_daemon(nursery: trio.Nursery, data_dir: Path) -> Daemon:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "serve"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    daemon = Daemon(process)
    nursery.start_soon(daemon.read_log)
    await daemon.wait_for_log(f"serving {PROVIDERS} provider")
    return daemon


async def _wait_idle(data_dir: Path) -> None:
    """Until the daemon reports no active and no parked job."""
    async with (
        open_control_client(data_dir / "ephemerd.sock") as client,
        client.watch_jobs() as updates,
    ):
        async for update in updates:
            if update.status.active_jobs == 0 and update.status.parked_jobs == 0:
                return


def _journal_rows(data_dir: Path) -> dict[str, int]:
    """Rows per table of the journal, read with plain sqlite3 after the daemon exited."""
    with closing(sqlite3.connect(data_dir / "journal.sqlite")) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


async def test_every_forge_at_once_two_hundred_jobs_nothing_left(
    data_dir: Path, tmp_path: Path
) -> None:
    before = await census(data_dir)
    began = time.monotonic()
    async with AsyncExitStack() as stack:
        gh = await stack.enter_async_context(open_fake_github())
        fj = await stack.enter_async_context(open_fake_forge("forgejo-15"))
        gt = await stack.enter_async_context(open_fake_forge("gitea-1.26"))
        wp = await stack.enter_async_context(open_fake_woodpecker(agent_secret=AGENT_SECRET))
        gl = await stack.enter_async_context(open_fake_gitlab())
        gl.app.add_runner(TOKEN)
        gl_plan = gitlab_plan(
            PER_FORGE, failing=FAILING, cancelled=CANCELLED, mismatched=MISMATCHED
        )
        gl_done = trio.Event()
        # gitlab-runner with ``concurrent`` = the daemon's limit; a parked prepare waits
        driver = RunnerDriver(
            data_dir, tmp_path / "gitlab-runner", timeouts=Timeouts(prepare=DEADLINE)
        )
        gl_jobs = partial(run_gitlab_jobs, gl_plan, driver, concurrent=MAX_CONCURRENT, done=gl_done)
        gh_port = int(gh.url.rsplit(":", 1)[1])
        webhook_port = free_port()
        gh.world.tokens.add(GH_TOKEN)
        gh.world.add_repo(REPO)
        gh.world.runner_url = f"http://{GATEWAY}:{gh_port}"
        gh.world.create_hook(
            f"repos/{REPO}",
            f"http://127.0.0.1:{webhook_port}/webhook/gh",
            GH_SECRET,
            ["workflow_job"],
        )
        for forge in (fj, gt):
            forge.world.api_tokens.add(API_TOKEN)
        write_config(
            data_dir,
            github_port=gh_port,
            webhook_port=webhook_port,
            forgejo_port=int(fj.url.rsplit(":", 1)[1]),
            gitea_port=int(gt.url.rsplit(":", 1)[1]),
            gitlab_port=int(gl.url.rsplit(":", 1)[1]),
            woodpecker=wp.address,
            github_token=GH_TOKEN,
            github_secret=GH_SECRET,
            forgejo_token=fj.world.add_registration_token(f"/repos/{REPO}"),
            gitea_token=gt.world.add_registration_token(f"/repos/{REPO}"),
            gitlab_token=TOKEN,
            gitlab_tags=TAGS,
            api_token=API_TOKEN,
            agent_secret=AGENT_SECRET,
            max_concurrent=MAX_CONCURRENT,
        )
        async with trio.open_nursery() as nursery:
            daemon = await _start_daemon(nursery, data_dir)
            try:
                with trio.fail_after(DEADLINE):
                    idle_rules = await nft_rules()
                    gh_plan = await _github_jobs(gh)
                    fj_plan = _actions_jobs(fj, nursery)
                    gt_plan = _actions_jobs(gt, nursery)
                    wp_plan = _woodpecker_jobs(wp, nursery)
                    nursery.start_soon(gl_jobs)
                    await gh.app.wait_until(
                        lambda: all(j.status == "completed" for j in gh_plan.ok)
                    )
                    for forge, plan in ((fj, fj_plan), (gt, gt_plan)):
                        await forge.world.wait_until(
                            lambda plan=plan: all(
                                j.status in FINISHED for j in [*plan.ok, *plan.cancelled]
                            )
                        )
                    for wid in [*wp_plan.ok, *wp_plan.failing, *wp_plan.cancelled]:
                        await wp.state.wait_done(wid)
                    await gl_done.wait()
                    await _wait_idle(data_dir)
                    busy_rules = await nft_rules()
                    ran_for = time.monotonic() - began
            finally:
                code = await daemon.stop()
                unmount_files(data_dir)
                print(daemon.log)  # shown when the test fails
            nursery.cancel_scope.cancel()
        stopped_after = time.monotonic() - began

        # GitHub: each claimable job acquired once by some runner and succeeded; the
        # cancelled and the mismatched were never acquired
        taken = Counter(job_id for _, job_id in gh.world.acquisitions)
        assert {j.id: taken[j.id] for j in gh_plan.ok} == {j.id: 1 for j in gh_plan.ok}
        assert all(j.conclusion == "success" for j in gh_plan.ok)
        assert not any(taken[j.id] for j in [*gh_plan.cancelled, *gh_plan.mismatched])
        assert all(j.status == "queued" for j in gh_plan.mismatched)
        assert gh.world.live_runners() == []

        # Forgejo and Gitea: one task per claimable job, the right result, no registration
        for forge, plan in ((fj, fj_plan), (gt, gt_plan)):
            world = forge.world
            tasks = Counter(task.job_id for task in world.tasks.values())
            claimable = [*plan.ok, *plan.cancelled]
            assert {j.id: tasks[j.id] for j in claimable} == {j.id: 1 for j in claimable}
            assert [j.status for j in plan.ok] == ["success"] * len(plan.ok)
            assert all(j.status == "cancelled" for j in plan.cancelled)
            assert all(world.tasks[j.task_id].result == 3 for j in plan.cancelled)
            assert all(j.status == "waiting" and not tasks[j.id] for j in plan.mismatched)
            assert world.live_runners() == []

        # Woodpecker: one Done per workflow with its outcome; mismatched never assigned
        state = wp.state
        dones = Counter(wid for wid, _ in state.dones)
        finals = dict(state.dones)
        claimable = [*wp_plan.ok, *wp_plan.failing, *wp_plan.cancelled]
        assert {w: dones[w] for w in claimable} == {w: 1 for w in claimable}
        assert all(finals[w].error == "" and not finals[w].canceled for w in wp_plan.ok)
        assert all(finals[w].error for w in wp_plan.failing)
        assert all(finals[w].canceled for w in wp_plan.cancelled)
        assigned = {wid for wid, _ in state.inits}
        assert not assigned & set(wp_plan.mismatched)
        assert {w.id for w in state.queue} == set(wp_plan.mismatched)
        assert len([a for a in state.agents.values() if a.system]) == 1  # kept, not piled up

    # GitLab: each job's stages as gitlab-runner saw them; every prepare cleaned up
    check_gitlab(gl_plan)
    assert "verified with" in daemon.log  # the runner token, checked with the fake GitLab

    # the scheduler admitted none of the mismatched jobs (the forges' side is checked above)
    # and each claimable GitLab job once (gitlab-runner's claim is its prepare)
    admissions = Counter(re.findall(r"job (\w+/\w+) \([^)]*\): admitted", daemon.log))
    admitted = set(admissions)
    mismatched = {f"gh/{j.id}" for j in gh_plan.mismatched}
    mismatched |= {f"fj/{j.id}" for j in fj_plan.mismatched}
    mismatched |= {f"gt/{j.id}" for j in gt_plan.mismatched}
    mismatched |= {f"gl/{j}" for j in gl_plan.mismatched}
    assert admitted and not admitted & mismatched, admitted & mismatched
    gl_admitted = {k: n for k, n in admissions.items() if k.startswith("gl/")}
    assert gl_admitted == {f"gl/{j}": 1 for j in gl_plan.claimable}, gl_admitted

    # the daemon drained cleanly and left nothing behind
    assert code == 0, daemon.log
    assert "Traceback" not in daemon.log
    assert busy_rules == idle_rules
    after = await census(data_dir)
    expected = Census(
        containers=[],
        runc_states=[],
        snapshots=before.snapshots,  # the image's layers, nothing of a job's
        leases=before.leases,
        netns=[],
        bridge_ports=[],
        nft_rules=after.nft_rules,
    )
    assert after == expected, (before, after)
    assert after.nft_rules in (0, idle_rules), (idle_rules, after)  # table gone, or as idle
    rows = _journal_rows(data_dir)
    assert rows and not any(rows.values()), rows
    print(
        f"soak: {PROVIDERS * PER_FORGE} jobs over {PROVIDERS} providers, "
        f"all done in {ran_for:.1f} s, "
        f"daemon stopped after {stopped_after:.1f} s; gitlab outcomes "
        f"{dict(Counter(run.outcome for run in gl_plan.runs.values()))}"
    )
