"""The fake GitHub's world: repositories, runs, jobs, JIT runners, hooks and credentials.

Pure data and rules, no HTTP: the ASGI app in ``_app.py`` serves it. IDs are deterministic
(runs from 11, jobs from 101, runners from 1001, hooks from 501) like the Go original's fake.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from dataclasses import dataclass, field

__all__ = ["Failure", "FakeHook", "FakeJob", "FakeRun", "FakeRunner", "World"]


@dataclass
class FakeJob:
    id: int
    run_id: int
    name: str
    labels: list[str]
    status: str = "queued"
    conclusion: str | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    head_sha: str = ""

    def as_json(self, repo: str) -> dict[str, object]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "run_attempt": 1,
            "name": self.name,
            "status": self.status,
            "conclusion": self.conclusion,
            "labels": list(self.labels),
            "runner_id": self.runner_id,
            "runner_name": self.runner_name,
            "runner_group_id": 1 if self.runner_id else None,
            "runner_group_name": "Default" if self.runner_id else None,
            "head_sha": self.head_sha,
            "workflow_name": "CI",
            "url": f"https://api.github.test/repos/{repo}/actions/jobs/{self.id}",
        }


@dataclass
class FakeRun:
    id: int
    repo: str
    path: str
    head_sha: str
    jobs: list[FakeJob] = field(default_factory=list[FakeJob])

    @property
    def status(self) -> str:
        states = {job.status for job in self.jobs}
        if not states or states == {"queued"}:
            return "queued"
        if states == {"completed"}:
            return "completed"
        return "in_progress"

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": "CI",
            "status": self.status,
            "path": self.path,
            "head_sha": self.head_sha,
            "repository": {"full_name": self.repo},
        }


@dataclass
class FakeRunner:
    id: int
    name: str
    labels: list[str]
    scope: str  # "repos/o/r" or "orgs/o"
    group_id: int
    jit_config: str
    job_id: int | None = None
    deleted: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "os": "linux",
            "status": "online" if self.job_id else "offline",
            "busy": self.job_id is not None,
            "labels": [{"id": i, "name": n, "type": "custom"} for i, n in enumerate(self.labels)],
        }


@dataclass
class FakeHook:
    id: int
    scope: str
    url: str
    secret: str
    events: list[str]
    active: bool = True
    content_type: str = "json"

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": "web",
            "active": self.active,
            "events": list(self.events),
            "config": {
                "url": self.url,
                "content_type": self.content_type,
                "insecure_ssl": "0",
                "secret": "********",
            },
        }


@dataclass
class Failure:
    """An injected answer: the next *times* requests matching *method*/*path* get it.

    ``path`` is a substring of the request path ("" matches all). With ``after`` the
    request is carried out first and only its answer is replaced (a lost/garbled reply).
    """

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict[str, str])
    method: str = ""
    path: str = ""
    times: int = 1
    content_type: str = "application/json; charset=utf-8"
    after: bool = False  # the real handler still runs (side effects), then this answer


class World:
    """Everything the fake knows. Tests change it directly between requests."""

    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.repos: dict[str, list[FakeRun]] = {}  # "o/r" -> runs
        self.orgs: set[str] = set()
        self.archived: set[str] = set()
        self.workflows: dict[tuple[str, str, str], str] = {}  # (repo, sha, path) -> text
        self.runners: dict[int, FakeRunner] = {}
        self.hooks: dict[int, FakeHook] = {}
        self.failures: list[Failure] = []
        # what JIT runners see: the URL they connect to (``ServerUrl`` in ``.runner``),
        # which jobs they took (runner name, job id) and when their process started
        self.runner_url = ""
        self.acquisitions: list[tuple[str, int]] = []
        self.runner_starts: dict[str, float] = {}
        # App auth: app id -> PEM public key; installation id -> expiry of issued tokens
        self.apps: dict[str, bytes] = {}
        self.installations: set[str] = set()
        self.installation_tokens: dict[str, float] = {}
        self.token_lifetime = 3600.0
        # primary quota
        self.rate_limit = 5000
        self.rate_remaining = 5000
        self.rate_reset = time.time() + 3600
        self._run_ids = itertools.count(11)
        self._job_ids = itertools.count(101)
        self._runner_ids = itertools.count(1001)
        self._hook_ids = itertools.count(501)
        self._token_ids = itertools.count(1)

    # --- setup helpers -------------------------------------------------------------------

    def add_repo(self, full_name: str, *, org: bool = False) -> None:
        self.repos.setdefault(full_name, [])
        if org:
            self.orgs.add(full_name.split("/", maxsplit=1)[0])

    def add_run(
        self,
        repo: str,
        jobs: list[tuple[str, list[str]]],
        *,
        path: str = ".github/workflows/ci.yml",
        head_sha: str = "",
        workflow: str | None = None,
    ) -> FakeRun:
        """A run of *repo* with queued jobs ``(name, labels)``; optionally its workflow text."""
        self.add_repo(repo)
        run_id = next(self._run_ids)
        sha = head_sha or f"{run_id:040x}"
        run = FakeRun(id=run_id, repo=repo, path=path, head_sha=sha)
        for name, labels in jobs:
            run.jobs.append(FakeJob(next(self._job_ids), run_id, name, list(labels), head_sha=sha))
        self.repos[repo].append(run)
        if workflow is not None:
            self.workflows[(repo, sha, path)] = workflow
        return run

    def issue_installation_token(self) -> tuple[str, float]:
        token = f"ghs_fake{next(self._token_ids):04d}"
        expires = time.time() + self.token_lifetime
        self.installation_tokens[token] = expires
        return token, expires

    def token_valid(self, token: str) -> bool:
        if token in self.tokens:
            return True
        expires = self.installation_tokens.get(token)
        return expires is not None and expires > time.time()

    # --- lookups -------------------------------------------------------------------------

    def run(self, repo: str, run_id: int) -> FakeRun | None:
        return next((r for r in self.repos.get(repo, []) if r.id == run_id), None)

    def job(self, job_id: int) -> tuple[str, FakeJob] | None:
        for repo, runs in self.repos.items():
            for run in runs:
                for job in run.jobs:
                    if job.id == job_id:
                        return repo, job
        return None

    def runner_by_name(self, name: str) -> FakeRunner | None:
        return next((r for r in self.runners.values() if r.name == name and not r.deleted), None)

    def live_runners(self, scope: str | None = None) -> list[FakeRunner]:
        return [
            r
            for r in self.runners.values()
            if not r.deleted and (scope is None or r.scope == scope)
        ]

    # --- runners -------------------------------------------------------------------------

    def create_runner(self, scope: str, name: str, labels: list[str], group_id: int) -> FakeRunner:
        runner_id = next(self._runner_ids)
        blob = {
            ".runner": base64.b64encode(
                json.dumps(
                    {"AgentId": runner_id, "AgentName": name, "ServerUrl": self.runner_url}
                ).encode()
            ).decode(),
            ".credentials": base64.b64encode(json.dumps({"Scheme": "OAuth"}).encode()).decode(),
            ".credentials_rsaparams": base64.b64encode(b'{"d": "secret"}').decode(),
        }
        jit = base64.b64encode(json.dumps(blob).encode()).decode()
        runner = FakeRunner(runner_id, name, list(labels), scope, group_id, jit)
        self.runners[runner_id] = runner
        return runner

    def connect(self, runner_name: str) -> FakeJob | None:
        """The JIT runner *runner_name* connects and GitHub hands it a job.

        Runners are fungible: the runner gets the oldest queued job of its scope whose
        labels it satisfies, which need not be the job it was created for.
        """
        runner = self.runner_by_name(runner_name)
        if runner is None or runner.job_id is not None:
            return None
        have = {label.lower() for label in runner.labels}
        for repo, runs in sorted(self.repos.items()):
            if not self._in_scope(runner.scope, repo):
                continue
            for run in runs:
                for job in run.jobs:
                    if job.status == "queued" and {x.lower() for x in job.labels} <= have:
                        job.status = "in_progress"
                        job.runner_id = runner.id
                        job.runner_name = runner.name
                        runner.job_id = job.id
                        self.acquisitions.append((runner.name, job.id))
                        return job
        return None

    def complete(self, job_id: int, conclusion: str = "success") -> FakeJob:
        """Finish a job; its JIT runner removes itself, as GitHub does."""
        found = self.job(job_id)
        assert found is not None, f"no job {job_id}"
        _, job = found
        job.status = "completed"
        job.conclusion = conclusion
        if job.runner_id is not None and job.runner_id in self.runners:
            self.runners[job.runner_id].deleted = True
        return job

    @staticmethod
    def _in_scope(scope: str, repo: str) -> bool:
        kind, _, name = scope.partition("/")
        return repo == name if kind == "repos" else repo.split("/", maxsplit=1)[0] == name

    # --- hooks ---------------------------------------------------------------------------

    def create_hook(self, scope: str, url: str, secret: str, events: list[str]) -> FakeHook:
        hook = FakeHook(next(self._hook_ids), scope, url, secret, list(events))
        self.hooks[hook.id] = hook
        return hook

    def hooks_of(self, scope: str) -> list[FakeHook]:
        return [h for h in self.hooks.values() if h.scope == scope]

    # --- failures ------------------------------------------------------------------------

    def take_failure(self, method: str, path: str) -> Failure | None:
        for failure in self.failures:
            if (not failure.method or failure.method == method) and failure.path in path:
                failure.times -= 1
                if failure.times <= 0:
                    self.failures.remove(failure)
                return failure
        return None
