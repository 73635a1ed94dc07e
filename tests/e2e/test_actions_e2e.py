# ruff: noqa: F811  (fixtures imported from containerd_fixture shadow their names)
"""Forgejo and Gitea end to end: fake forge, real ``ephemerd serve``, real sandboxes.

Per server flavour, the real daemon (a subprocess) discovers queued jobs on the fake
forge, claims each one (an ephemeral runner registered, or created for one job handle on
Forgejo >= 15) and starts a real containerd sandbox from an image holding a stand-in
runner (``actions_runner/``) under the names ``forgejo-runner`` and ``act_runner``, so the
claim's argv runs unchanged. The stand-in speaks the runner protocol with only the
credentials the sandbox holds.

Reachability (see ``actions_helpers``): the fake listens on 127.0.0.1; the config
allow-lists that port, which sandboxes reach on the bridge gateway, and ``runner_url``
hands the runner the gateway address.

A job whose workflow names a ``container:`` image runs in that image (``JOB_IMAGE``, which
holds no runner), with the stand-in's directory mounted read-only from the runner image.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import trio

from tests.fakes.forgejo import FakeJob, World, open_fake_forge
from tests.sandbox.containerd_fixture import (  # noqa: F401  (fixtures)
    Session,
    containerd_session,  # pyright: ignore[reportUnusedImport]
    needs_containerd,
)

from .actions_helpers import (
    JOB_IMAGE,
    RUNNER_DIR,
    build_job_image,
    build_standin_image,
    sandboxes_left,
    start_daemon,
    unmount_files,
    write_config,
)

pytestmark = [pytest.mark.containerd, needs_containerd]

API_TOKEN = "pat-e2e-0123456789"
FLAVOURS = ["gitea-1.20", "gitea-1.26", "forgejo-14", "forgejo-15"]
TERMINAL = re.compile(r"job fj/\S+ \([^)]*\): (succeeded|failed|cancelled)")


@pytest.fixture(scope="module")
def standin(containerd_session: Session) -> Session:
    """The session's containerd with the stand-in image built in it (once per module)."""
    trio.run(build_standin_image, containerd_session.data_dir, containerd_session.address)
    return containerd_session


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def finished(job: FakeJob) -> bool:
    return job.status in ("success", "failure", "cancelled")


async def run_flavour(flavour: str, session: Session, data_dir: Path) -> World:
    """Three plain jobs and one cancelled on the forge while it runs; the world after."""
    async with open_fake_forge(flavour) as forge:
        world = forge.world
        world.api_tokens.add(API_TOKEN)
        registration = world.add_registration_token("/repos/acme/app")
        write_config(
            data_dir,
            kind=world.flavour.kind,
            port=int(forge.url.rsplit(":", 1)[1]),
            registration_token=registration,
            api_token=API_TOKEN,
            containerd_address=session.address,
        )
        async with trio.open_nursery() as nursery:
            daemon = await start_daemon(nursery, data_dir)
            try:
                with trio.fail_after(60):
                    jobs = [
                        world.add_job("acme/app", ["ubuntu-latest"], name=f"b{i}") for i in range(3)
                    ]
                    long = world.add_job(
                        "acme/app", ["ubuntu-latest"], name="long", payload=b"wait-for-cancel\n"
                    )
                    await world.wait_until(lambda: long.status == "running")
                    world.cancel(long)
                    await world.wait_until(lambda: all(finished(j) for j in [*jobs, long]))
                    # a job's terminal state is logged once its sandbox is destroyed and its
                    # runner released
                    await daemon.wait_until(
                        lambda: len(TERMINAL.findall(daemon.log)) >= len(world.tasks),
                        "every job's terminal state",
                    )
                    # what remains while the daemon runs: at most the warm pool's idle runner
                    idle = 0 if world.flavour.jobs_listing else 1
                    left = await sandboxes_left(session.data_dir, session.address)
                    assert len(left) <= idle, f"sandboxes left while the daemon runs: {left}"
            finally:
                code = await daemon.stop()
                unmount_files(data_dir)
                print(daemon.log)  # shown when the test fails
            assert code == 0, daemon.log
            assert "Traceback" not in daemon.log and " ERROR " not in daemon.log
            assert await sandboxes_left(session.data_dir, session.address) == []
            nursery.cancel_scope.cancel()
        assert [j.status for j in jobs] == ["success"] * 3, daemon.log
        assert long.status == "cancelled"
        assert world.tasks[long.task_id].result == 3  # RESULT_CANCELLED, as the runner reports
        return world


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_jobs_run_once_in_real_sandboxes(
    flavour: str, standin: Session, tmp_path: Path
) -> None:
    world = await run_flavour(flavour, standin, tmp_path)
    # every queued job completed exactly once: one task each, one final result each
    by_job = sorted(task.job_id for task in world.tasks.values())
    assert by_job == sorted(world.jobs)
    assert all(task.result for task in world.tasks.values())
    assert all(task.log[0].startswith("stand-in ") for task in world.tasks.values())  # UpdateLog
    # no registration is left behind
    assert world.live_runners() == []
    # the stand-ins ran and scanned; none saw a registration token, each saw its own token
    reports = [r for r in world.standin_reports if r["event"] == "scanned"]
    assert len(reports) == len(world.tasks)
    registration = {digest(token) for token in world.registration_tokens}
    for report in reports:
        found = set(report["digests"])  # type: ignore[arg-type]
        assert not found & registration, f"a sandbox saw a registration token: {report['argv']}"
        runner = next(r for r in world.runners.values() if r.uuid == report["uuid"])
        assert digest(runner.token) in found, "the scan did not even find the runner's token"
        assert int(report["files"]) > 100  # type: ignore[call-overload]
    # the provider's argv ran unchanged: one job handle (Forgejo >= 15) or a .runner file
    programs = {report["program"] for report in reports}
    assert programs == {"forgejo-runner" if world.flavour.kind == "forgejo" else "act_runner"}
    handles = {"--handle" in report["argv"] for report in reports}  # type: ignore[operator]
    assert handles == {world.flavour.single_task}


CONTAINER_WORKFLOW = f"""
on: push
jobs:
  in-container:
    runs-on: ubuntu-latest
    container:
      image: {JOB_IMAGE}
  plain:
    runs-on: ubuntu-latest
"""
COMMIT = "5eed" * 10


@pytest.fixture(scope="module")
def with_job_image(standin: Session) -> Session:
    """The stand-in image and a job image without any runner in it (once per module)."""
    trio.run(build_job_image, standin.data_dir, standin.address)
    return standin


@pytest.mark.parametrize("flavour", ["forgejo-15", "gitea-1.26"])
async def test_job_runs_in_its_container_image_with_the_runner_mounted(
    flavour: str, with_job_image: Session, tmp_path: Path
) -> None:
    session = with_job_image
    async with open_fake_forge(flavour) as forge:
        world = forge.world
        kind = world.flavour.kind
        program = "forgejo-runner" if kind == "forgejo" else "act_runner"
        world.api_tokens.add(API_TOKEN)
        write_config(
            tmp_path,
            kind=kind,
            port=int(forge.url.rsplit(":", 1)[1]),
            registration_token=world.add_registration_token("/repos/acme/app"),
            api_token=API_TOKEN,
            containerd_address=session.address,
            runner_path=f"{RUNNER_DIR}/{program}",
        )
        world.add_file("acme/app", f".{kind}/workflows/ci.yml", CONTAINER_WORKFLOW, commit=COMMIT)
        async with trio.open_nursery() as nursery:
            daemon = await start_daemon(nursery, tmp_path)
            try:
                with trio.fail_after(60):
                    inside = world.add_job(
                        "acme/app",
                        ["ubuntu-latest"],
                        name="in-container",
                        run_id=9,
                        commit_sha=COMMIT,
                    )
                    if not world.flavour.single_task:
                        # Without job handles the forge gives a fetching runner any job its
                        # labels fit: two jobs queued at once may swap runners (and images).
                        await world.wait_until(lambda: finished(inside))
                    plain = world.add_job(
                        "acme/app", ["ubuntu-latest"], name="plain", run_id=9, commit_sha=COMMIT
                    )
                    await world.wait_until(lambda: finished(inside) and finished(plain))
                    await daemon.wait_until(
                        lambda: len(TERMINAL.findall(daemon.log)) >= 2, "both terminal states"
                    )
            finally:
                code = await daemon.stop()
                unmount_files(tmp_path)
                print(daemon.log)  # shown when the test fails
            assert code == 0, daemon.log
            assert "Traceback" not in daemon.log and " ERROR " not in daemon.log
            assert await sandboxes_left(session.data_dir, session.address) == []
            nursery.cancel_scope.cancel()
    assert (inside.status, plain.status) == ("success", "success"), daemon.log
    assert f"runs in its container image {JOB_IMAGE}" in daemon.log
    started = {
        world.tasks[world.runners[r.id].task_id].job_id: report
        for report in world.standin_reports
        if report["event"] == "started"
        for r in world.runners.values()
        if r.uuid == report["uuid"]
    }
    # the job's own image, the runner from the runner image, mounted read-only
    assert started[inside.id]["job_image"] is True
    assert started[inside.id]["runner_dir"] == "/ephemerd/runner"
    assert started[inside.id]["runner_dir_writable"] is False
    assert started[inside.id]["program"] == program
    assert ("--handle" in started[inside.id]["argv"]) is world.flavour.single_task  # type: ignore[operator]
    # a job without a container runs in the runner image, as before
    assert started[plain.id]["job_image"] is False
    assert started[plain.id]["runner_dir"] == str(RUNNER_DIR)
    assert world.live_runners() == []
