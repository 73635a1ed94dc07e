"""A faithful fake GitLab for tests: the runner REST endpoints on 127.0.0.1 and a Job Hook
emitter.

Usage::

    async with open_fake_gitlab() as gl:
        runner = gl.app.add_runner("glrt-test")
        ...  # verify_runner(client, instance_url=gl.url, token="glrt-test", ...)
        job = gl.new_job("acme/app", "build", tags=["linux"])
        await gl.job_lifecycle(hook_url, "secret", job, final="success")
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fakes._asgi import serve_on_loopback

from ._app import Failure, FakeGitLabApp, FakeRunner, Recorded

__all__ = [
    "Failure",
    "FakeGitLab",
    "FakeJob",
    "FakeRunner",
    "Recorded",
    "open_fake_gitlab",
]


@dataclass
class FakeJob:
    """A CI job as the Job Hook payload describes it; tests move its ``status``."""

    id: int
    project_id: int
    project_path: str
    pipeline_id: int
    name: str
    stage: str = "test"
    status: str = "created"
    tags: list[str] = field(default_factory=list[str])
    runner: dict[str, Any] | None = None  # set once a runner picked the job


class FakeGitLab:
    """The running fake: ``url`` is the GitLab base URL; ``app`` its state and records."""

    def __init__(self, url: str, app: FakeGitLabApp) -> None:
        self.url = url
        self.app = app
        self._next_job = 5000

    def new_job(
        self, project_path: str, name: str, *, stage: str = "test", tags: list[str] | None = None
    ) -> FakeJob:
        self._next_job += 1
        return FakeJob(
            id=self._next_job,
            project_id=100 + len(project_path),
            project_path=project_path,
            pipeline_id=self._next_job * 10,
            name=name,
            stage=stage,
            tags=list(tags or ()),
        )

    def job_payload(self, job: FakeJob) -> dict[str, Any]:
        """A ``build`` payload as GitLab's ``Gitlab::DataBuilder::Build`` writes it."""
        namespace, _, name = job.project_path.rpartition("/")
        web_url = f"{self.url}/{job.project_path}"
        finished = job.status in ("success", "failed", "canceled")
        return {
            "object_kind": "build",
            "ref": "main",
            "tag": False,
            "before_sha": "0" * 40,
            "sha": "a" * 40,
            "retries_count": 0,
            "build_id": job.id,
            "build_name": job.name,
            "build_stage": job.stage,
            "build_status": job.status,
            "build_created_at": "2026-11-29 10:00:00 UTC",
            "build_started_at": None
            if job.status in ("created", "pending")
            else "2026-11-29 10:00:05 UTC",
            "build_finished_at": "2026-11-29 10:01:00 UTC" if finished else None,
            "build_duration": 55.0 if finished else None,
            "build_queued_duration": 1.5,
            "build_allow_failure": False,
            "build_failure_reason": "script_failure"
            if job.status == "failed"
            else "unknown_failure",
            "pipeline_id": job.pipeline_id,
            "runner": job.runner,
            "project_id": job.project_id,
            "project_name": " / ".join(p.title() for p in job.project_path.split("/")),
            "user": {"id": 1, "name": "Ada", "username": "ada", "email": "[REDACTED]"},
            "commit": {
                "id": job.pipeline_id,
                "name": None,
                "sha": "a" * 40,
                "message": "test\n",
                "author_name": "Ada",
                "author_email": "ada@example.com",
                "author_url": "mailto:ada@example.com",
                "status": job.status,
                "duration": None,
                "started_at": None,
                "finished_at": None,
            },
            "repository": {
                "name": name,
                "url": f"git@127.0.0.1:{job.project_path}.git",
                "description": "",
                "homepage": web_url,
                "git_http_url": f"{web_url}.git",
                "git_ssh_url": f"git@127.0.0.1:{job.project_path}.git",
                "visibility_level": 0,
            },
            "project": {
                "id": job.project_id,
                "name": name,
                "description": "",
                "web_url": web_url,
                "avatar_url": None,
                "git_ssh_url": f"git@127.0.0.1:{job.project_path}.git",
                "git_http_url": f"{web_url}.git",
                "namespace": namespace.title(),
                "visibility_level": 0,
                "path_with_namespace": job.project_path,
                "default_branch": "main",
                "ci_config_path": "",
            },
            "environment": None,
            "build_tags": list(job.tags),
        }

    def delivery(
        self,
        job: FakeJob,
        token: str,
        *,
        event: str = "Job Hook",
        event_uuid: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """Headers and body GitLab would POST for *job*'s current status."""
        body = json.dumps(self.job_payload(job)).encode()
        headers = {
            "content-type": "application/json",
            "user-agent": "GitLab/17.6.0",
            "x-gitlab-event": event,
            "x-gitlab-token": token,
            "x-gitlab-event-uuid": event_uuid or str(uuid.uuid4()),
            "x-gitlab-webhook-uuid": "9f4c1b4e-6d0f-4a43-9d39-2f3c1f1f0a11",
            "x-gitlab-instance": self.url,
        }
        return headers, body

    async def emit(
        self,
        url: str,
        job: FakeJob,
        token: str,
        *,
        event: str = "Job Hook",
        event_uuid: str | None = None,
    ) -> httpx.Response:
        """POST one delivery for *job* to *url*, as GitLab's WebHookService does."""
        headers, body = self.delivery(job, token, event=event, event_uuid=event_uuid)
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, content=body, headers=headers)

    async def job_lifecycle(
        self,
        url: str,
        token: str,
        job: FakeJob,
        *,
        final: str = "success",
        runner_description: str = "ephemerd",
    ) -> list[httpx.Response]:
        """Deliver pending → running → *final*; ``runner`` stays null until running."""
        answers: list[httpx.Response] = []
        for status in ("pending", "running", final):
            job.status = status
            if status == "running":
                job.runner = {
                    "id": 42,
                    "description": runner_description,
                    "runner_type": "project_type",
                    "active": True,
                    "is_shared": False,
                    "tags": list(job.tags),
                }
            answers.append(await self.emit(url, job, token))
        return answers


@asynccontextmanager
async def open_fake_gitlab() -> AsyncGenerator[FakeGitLab, None]:
    """Serve a fresh fake on an ephemeral 127.0.0.1 port for the duration of the block."""
    app = FakeGitLabApp()
    async with serve_on_loopback(app) as url:
        yield FakeGitLab(url, app)
