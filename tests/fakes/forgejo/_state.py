"""The fake Forgejo/Gitea's state and server-side rules (section 2.6 of the reference).

Fetching is claiming (a task belongs to the runner that fetched it), ephemeral runners are
deleted once their task is done, tasks_version short-cuts idle fetches, log rows follow the
ack rules, and a job cancelled on the forge shows as RESULT_CANCELLED in UpdateTask.
"""

from __future__ import annotations

import itertools
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

__all__ = ["FLAVOURS", "Failure", "FakeJob", "FakeRunner", "FakeTask", "ServerFlavour", "World"]


@dataclass(frozen=True)
class ServerFlavour:
    """One server version's behaviour.

    Attributes:
        kind: ``forgejo`` or ``gitea``.
        version: what ``/api/v1/version`` says.
        declare: Declare is implemented (Gitea >= 1.21).
        plain_errors: errors are plain Go errors: code ``unknown``, HTTP 500 (old Gitea).
        old_connect: the old connect-go status table (unimplemented 404, canceled 408).
        strict_json: unknown JSON fields are rejected (old bufbuild/connect-go).
        tasks_version: the server keeps and honours tasks_version.
        jobs_listing: the REST listing of waiting/queued jobs exists.
        single_task: FetchSingleTask, job handles, REST runner creation, request keys.
        token_methods: HTTP methods of the registration-token endpoint.
    """

    kind: str
    version: str
    declare: bool = True
    plain_errors: bool = False
    old_connect: bool = False
    strict_json: bool = False
    tasks_version: bool = True
    jobs_listing: bool = True
    single_task: bool = False
    token_methods: tuple[str, ...] = ("GET",)


FLAVOURS = {
    "gitea-1.20": ServerFlavour(
        kind="gitea",
        version="1.20.6",
        declare=False,
        plain_errors=True,
        old_connect=True,
        strict_json=True,
        tasks_version=False,
        jobs_listing=False,
    ),
    "gitea-1.26": ServerFlavour(kind="gitea", version="1.26.0", token_methods=("POST",)),
    "forgejo-14": ServerFlavour(kind="forgejo", version="14.0.2+gitea-1.22.0"),
    "forgejo-15": ServerFlavour(kind="forgejo", version="15.0.0+gitea-1.22.0", single_task=True),
}


@dataclass
class Failure:
    """An injected answer: the next *times* requests whose path contains *path* get it."""

    status: int
    body: bytes
    path: str = ""
    times: int = 1
    content_type: str = "application/json"


@dataclass
class FakeRunner:
    id: int
    uuid: str
    token: str
    name: str
    scope: str
    labels: list[str]
    ephemeral: bool
    version: str = ""
    task_id: int = 0
    deleted: bool = False

    @property
    def label_names(self) -> set[str]:
        return {label.split(":", 1)[0] for label in self.labels}


@dataclass
class FakeJob:
    id: int
    run_id: int
    repo: str
    name: str
    runs_on: list[str]
    handle: str
    attempt: int = 1
    status: str = "waiting"  # waiting, running, success, failure, cancelled
    task_id: int = 0
    cancelled: bool = False
    payload: bytes = b""
    workflow: str = "ci.yml"
    """The run's workflow file name (in the forge's workflow directory)."""
    commit_sha: str = ""


@dataclass
class FakeTask:
    id: int
    job_id: int
    runner_id: int
    context: dict[str, object]
    result: int = 0  # runner.v1.Result
    log: list[str] = field(default_factory=list[str])
    archived: bool = False
    outputs: dict[str, str] = field(default_factory=dict[str, str])
    updates: int = 0
    fetched_at: float = field(default_factory=time.time)
    """Wall-clock time the runner fetched it (for latency benchmarks)."""


def _in_scope(scope: str, repo: str) -> bool:
    if scope == "/admin":
        return True
    if scope.startswith("/orgs/"):
        return repo.split("/", 1)[0] == scope.removeprefix("/orgs/")
    return scope.removeprefix("/repos/") == repo


class World:
    """Everything the fake server knows; tests arrange it and assert on it."""

    def __init__(self, flavour: ServerFlavour) -> None:
        self.flavour = flavour
        self.registration_tokens: dict[str, str] = {}  # token -> scope
        self.api_tokens: set[str] = set()
        self.runners: dict[int, FakeRunner] = {}
        self.jobs: dict[int, FakeJob] = {}
        self.tasks: dict[int, FakeTask] = {}
        self.tasks_version = 1  # a fresh server's version row
        self.picks = 0
        self.failures: list[Failure] = []
        self.request_keys: dict[tuple[int, str], int] = {}
        self.locked_request_keys: set[str] = set()
        self.files: dict[tuple[str, str, str], bytes] = {}
        """Repository files by ``(repo, commit, path)`` (the contents API)."""
        self.standin_reports: list[dict[str, object]] = []
        """What stand-in runners in sandboxes reported (``/api/test/standin``)."""
        self._ids = itertools.count(1)
        self._changed = trio.Event()

    def touch(self) -> None:
        """Wake ``wait_until`` callers: something changed."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once *predicate* holds, re-checked on every change of a task."""
        while not predicate():
            await self._changed.wait()

    # --- arranging ---------------------------------------------------------------------

    def add_registration_token(self, scope: str) -> str:
        token = secrets.token_hex(20)
        self.registration_tokens[token] = scope
        return token

    def add_file(self, repo: str, path: str, content: str | bytes, *, commit: str) -> None:
        """Put *content* at *path* of *repo* at *commit* (e.g. a workflow file)."""
        data = content.encode() if isinstance(content, str) else content
        self.files[(repo, commit, path)] = data

    def add_job(
        self,
        repo: str,
        runs_on: list[str],
        *,
        name: str = "build",
        payload: bytes = b"",
        run_id: int = 0,
        workflow: str = "ci.yml",
        commit_sha: str = "",
    ) -> FakeJob:
        """A waiting job; jobs given the same *run_id* belong to one run."""
        job_id = next(self._ids)
        job = FakeJob(
            id=job_id,
            run_id=run_id or job_id + 1000,
            workflow=workflow,
            commit_sha=commit_sha or f"{job_id:040x}",
            repo=repo,
            name=name,
            runs_on=runs_on,
            handle=str(uuid.uuid4()),
            payload=payload or f"name: {name}\nruns-on: {runs_on}\n".encode(),
        )
        self.jobs[job.id] = job
        self.tasks_version += 1
        self.touch()
        return job

    def cancel(self, job: FakeJob) -> None:
        """A user cancels the job on the forge."""
        job.cancelled = True
        if job.status == "waiting":
            job.status = "cancelled"
        self.tasks_version += 1
        self.touch()

    def rerun(self, job: FakeJob) -> None:
        """A new attempt of a finished job: a new handle, waiting again."""
        job.attempt += 1
        job.handle = str(uuid.uuid4())
        job.status, job.task_id, job.cancelled = "waiting", 0, False
        self.tasks_version += 1

    # --- runners -----------------------------------------------------------------------

    def create_runner(
        self, scope: str, name: str, labels: list[str], *, ephemeral: bool
    ) -> FakeRunner:
        runner = FakeRunner(
            id=next(self._ids),
            uuid=str(uuid.uuid4()),
            token=secrets.token_hex(20),
            name=name,
            scope=scope,
            labels=labels,
            ephemeral=ephemeral,
        )
        self.runners[runner.id] = runner
        return runner

    def live_runners(self) -> list[FakeRunner]:
        return [r for r in self.runners.values() if not r.deleted]

    def authenticate(self, runner_uuid: str, token: str) -> FakeRunner | None:
        for runner in self.runners.values():
            if runner.uuid == runner_uuid and not runner.deleted:
                return runner if secrets.compare_digest(runner.token, token) else None
        return None

    # --- task assignment ---------------------------------------------------------------

    def _fits(self, runner: FakeRunner, job: FakeJob) -> bool:
        names = runner.label_names
        return (
            job.status == "waiting"
            and _in_scope(runner.scope, job.repo)
            and bool(job.runs_on)
            and bool(names)
            and set(job.runs_on) <= names
        )

    def pick(self, runner: FakeRunner, *, handle: str | None = None) -> FakeTask | None:
        """Assign the oldest fitting waiting job (or the one with *handle*) to *runner*."""
        self.picks += 1
        self.touch()
        if runner.ephemeral and runner.task_id:
            return None  # one task per ephemeral runner
        for job in sorted(self.jobs.values(), key=lambda j: j.id):
            if handle is not None and job.handle != handle:
                continue
            if not self._fits(runner, job):
                continue
            task = FakeTask(
                id=next(self._ids),
                job_id=job.id,
                runner_id=runner.id,
                context={
                    "repository": job.repo,
                    "repository_owner": job.repo.split("/", 1)[0],
                    "job": job.name,
                    "run_id": str(job.run_id),
                    "run_attempt": str(job.attempt),
                    "event": {"ref": "refs/heads/main"},
                },
            )
            self.tasks[task.id] = task
            job.status, job.task_id = "running", task.id
            runner.task_id = task.id
            self.tasks_version += 1
            self.touch()
            return task
        return None

    def finish(self, task: FakeTask, result: int) -> None:
        """A final result: the job is done, an ephemeral runner is deleted."""
        task.result = result
        job = self.jobs[task.job_id]
        job.status = {1: "success", 2: "failure", 3: "cancelled", 4: "skipped"}.get(
            result, "failure"
        )
        runner = self.runners.get(task.runner_id)
        if runner is not None and runner.ephemeral:
            runner.deleted = True
        self.tasks_version += 1
        self.touch()

    def task_done(self, runner: FakeRunner) -> bool:
        task = self.tasks.get(runner.task_id)
        return task is not None and task.result != 0
