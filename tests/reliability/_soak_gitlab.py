"""The soak's GitLab share: jobs run by ``RunnerDriver`` as gitlab-runner runs them.

gitlab-runner (``concurrent`` = the daemon's limit) drives ``ephemerd gitlab-executor``
for every job: passing jobs, jobs whose build script fails, jobs whose runner tags this
host lacks (``prepare`` is refused, no sandbox) and jobs gitlab-runner cancels while
their build script runs (SIGTERM to ``run``; a probe stage then checks that the script's
process is gone from the sandbox before ``cleanup``). ``check_gitlab`` asserts what
gitlab-runner saw of each, per the executor's exit-code contract.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio

from ephemerd.capabilities import JobKey, JobState, JobView
from ephemerd.control import open_control_client
from tests.forges.gitlab.executor_daemon import variables
from tests.forges.gitlab.runner_driver import (
    BUILD_FAILURE,
    SYSTEM_FAILURE,
    JobRun,
    RunnerDriver,
    StageResult,
)

INSTANCE = "gl"
TAGS = ("docker",)
TOKEN = "glrt-soak-0123456789abcdef"
FAILING_CODE = 7
_SLEEP = "sleep 313"  # the cancelled jobs' long-running process, looked for by the probe


class GitLabPlan(msgspec.Struct, kw_only=True):
    """The GitLab jobs by kind (ids are ``CI_JOB_ID``s) and what gitlab-runner saw."""

    ok: list[str]
    failing: list[str]
    cancelled: list[str]
    mismatched: list[str]
    runs: dict[str, JobRun] = msgspec.field(default_factory=dict[str, JobRun])
    probes: dict[str, StageResult] = msgspec.field(default_factory=dict[str, StageResult])
    views: dict[str, JobView] = msgspec.field(default_factory=dict[str, JobView])

    @property
    def claimable(self) -> list[str]:
        return [*self.ok, *self.failing, *self.cancelled]


def gitlab_plan(total: int, *, failing: int, cancelled: int, mismatched: int) -> GitLabPlan:
    normal = total - failing - cancelled - mismatched
    return GitLabPlan(
        ok=[str(7100 + i) for i in range(normal)],
        failing=[str(7200 + i) for i in range(failing)],
        cancelled=[str(7300 + i) for i in range(cancelled)],
        mismatched=[str(7400 + i) for i in range(mismatched)],
    )


async def run_gitlab_jobs(
    plan: GitLabPlan, driver: RunnerDriver, *, concurrent: int, done: trio.Event
) -> None:
    """Every job of *plan*, at most *concurrent* at once; *done* is set when all ended."""
    limiter = trio.CapacityLimiter(concurrent)
    order = [*plan.cancelled, *plan.mismatched, *plan.failing, *plan.ok]
    async with trio.open_nursery() as nursery:
        for job_id in order:
            nursery.start_soon(_one_job, plan, driver, job_id, limiter)
    done.set()


async def _one_job(
    plan: GitLabPlan, driver: RunnerDriver, job_id: str, limiter: trio.CapacityLimiter
) -> None:
    async with limiter:
        if job_id in plan.cancelled:
            await _cancelled_job(plan, driver, job_id)
            return
        tags = '["gpu"]' if job_id in plan.mismatched else '["docker"]'
        build = f"echo failing {job_id}\nexit {FAILING_CODE}\n" if job_id in plan.failing else ""
        plan.runs[job_id] = await driver.run_job(
            job_id,
            variables(job_id, CI_RUNNER_TAGS=tags),
            {"build_script": build or f"echo built {job_id}\n"},
            default_script="true",
        )
    if job_id not in plan.mismatched:
        async with open_control_client(driver.data_dir / "ephemerd.sock") as client:
            plan.views[job_id] = await client.job(JobKey(INSTANCE, job_id))


async def _cancelled_job(plan: GitLabPlan, driver: RunnerDriver, job_id: str) -> None:
    """gitlab-runner cancels the build stage once it runs; a probe looks inside first."""
    cancel, stages_done, release = trio.Event(), trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:

        async def job() -> None:
            plan.runs[job_id] = await driver.run_job(
                job_id,
                variables(job_id),
                {"build_script": f"echo started-{job_id}\n{_SLEEP}\n"},
                default_script="true",
                cancel_stage="build_script",
                cancel=cancel,
                before_cleanup=stages_done,
                release_cleanup=release,
            )

        nursery.start_soon(job)
        try:
            async with trio.open_nursery() as race:  # a job that never started ends the wait

                async def started() -> None:
                    await _wait_log(driver.data_dir, job_id, f"started-{job_id}".encode())
                    cancel.set()
                    race.cancel_scope.cancel()

                async def ended() -> None:
                    await stages_done.wait()
                    race.cancel_scope.cancel()

                race.start_soon(started)
                race.start_soon(ended)
            await stages_done.wait()
            env = driver.environment(job_id, variables(job_id))
            script = driver.write_script(env, "probe", "ps -o args\n")
            plan.probes[job_id] = await driver.call("run", env, str(script), "probe", limit=60)
        finally:
            cancel.set()
            release.set()


async def _wait_log(data_dir: Path, job_id: str, text: bytes) -> None:
    """Until the running job's log shows *text*."""
    key = JobKey(INSTANCE, job_id)
    async with open_control_client(data_dir / "ephemerd.sock") as client:
        async with client.watch_jobs() as updates:
            async for update in updates:
                if any(
                    c.job.key == key and c.job.state is JobState.RUNNING for c in update.changes
                ):
                    break
        seen = b""
        async with client.job_logs(key, follow=True) as chunks:
            async for chunk in chunks:
                seen += chunk
                if text in seen:
                    return
    raise AssertionError(f"gitlab job {job_id}'s log ended without {text!r}: {seen!r}")


def _codes(run: JobRun) -> dict[str, int]:
    return {s.stage: s.code for s in run.stages}


def check_gitlab(plan: GitLabPlan) -> None:
    """What gitlab-runner saw of every job, per the custom executor's contract."""
    runs = plan.runs
    assert set(runs) == {*plan.claimable, *plan.mismatched}, sorted(runs)
    # every job ended with a cleanup that succeeded, whatever happened before
    assert all(r.ran()[-1] == "cleanup" and r.stage("cleanup").code == 0 for r in runs.values())
    for job_id in plan.ok:
        run = runs[job_id]
        assert run.outcome == "success", (job_id, _codes(run), run.stage("prepare").stderr)
        assert set(_codes(run).values()) == {0} and run.build_exit_code is None
        assert run.stage("build_script").stdout == f"built {job_id}\n".encode()
        view = plan.views[job_id]
        assert (view.state, view.exit_code) == (JobState.SUCCEEDED, 0), view
    for job_id in plan.failing:
        run = runs[job_id]
        assert run.outcome == "build_failure", (job_id, _codes(run))
        assert run.stage("build_script").code == BUILD_FAILURE
        assert run.build_exit_code == FAILING_CODE
        assert "after_script" in run.ran() and "archive_cache_on_failure" in run.ran()
        view = plan.views[job_id]
        assert (view.state, view.exit_code) == (JobState.FAILED, FAILING_CODE), view
    for job_id in plan.cancelled:
        run = runs[job_id]
        assert "build_script" in run.ran(), (job_id, _codes(run), run.stages[-2].stderr)
        build = run.stage("build_script")
        assert build.cancelled and build.code == SYSTEM_FAILURE, (job_id, build)
        assert run.outcome == "system_failure" and run.ran()[-2:] == ["build_script", "cleanup"]
        probe = plan.probes[job_id]
        assert probe.code == 0 and b"ps" in probe.stdout, probe
        assert _SLEEP.encode() not in probe.stdout, probe.stdout  # the script died inside
    for job_id in plan.mismatched:
        run = runs[job_id]
        assert run.ran() == ["config", "prepare", "cleanup"], (job_id, run.ran())
        prepare = run.stage("prepare")
        assert prepare.code == SYSTEM_FAILURE and b"not admitted" in prepare.stderr, prepare
