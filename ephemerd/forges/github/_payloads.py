"""The parts of GitHub's JSON that ephemerd reads, as lenient msgspec Structs.

Unknown fields are skipped and everything optional has a default, so a GitHub that adds
fields (or a GHES that lacks some) still decodes.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "Hook",
    "HookConfig",
    "InstallationToken",
    "JitConfig",
    "JitRunner",
    "Job",
    "JobsPage",
    "Repository",
    "Run",
    "RunnersPage",
    "RunsPage",
    "WorkflowFile",
    "WorkflowJobDelivery",
]


class Job(msgspec.Struct, kw_only=True):
    """A workflow job (``GET .../runs/{id}/jobs`` and the ``workflow_job`` webhook)."""

    id: int
    run_id: int = 0
    name: str = ""
    status: str = ""
    conclusion: str | None = None
    labels: list[str] = msgspec.field(default_factory=list[str])
    runner_id: int | None = None
    runner_name: str | None = None
    head_sha: str = ""
    workflow_name: str | None = None
    run_attempt: int = 1


class JobsPage(msgspec.Struct, kw_only=True):
    total_count: int = 0
    jobs: list[Job] = msgspec.field(default_factory=list[Job])


class Run(msgspec.Struct, kw_only=True):
    """A workflow run; ``path`` names the workflow file, ``head_sha`` its commit."""

    id: int
    status: str = ""
    path: str = ""
    head_sha: str = ""
    name: str | None = None


class RunsPage(msgspec.Struct, kw_only=True):
    total_count: int = 0
    workflow_runs: list[Run] = msgspec.field(default_factory=list[Run])


class Repository(msgspec.Struct, kw_only=True):
    name: str
    full_name: str = ""
    archived: bool = False


class JitRunner(msgspec.Struct, kw_only=True):
    id: int
    name: str = ""


class RunnersPage(msgspec.Struct, kw_only=True):
    total_count: int = 0
    runners: list[JitRunner] = msgspec.field(default_factory=list[JitRunner])


class JitConfig(msgspec.Struct, kw_only=True):
    """``generate-jitconfig``'s answer; ``encoded_jit_config`` is the runner's secret."""

    runner: JitRunner
    encoded_jit_config: str

    def __repr__(self) -> str:
        return f"JitConfig(runner={self.runner!r}, encoded_jit_config=<redacted>)"


class HookConfig(msgspec.Struct, kw_only=True):
    url: str = ""
    content_type: str = ""


class Hook(msgspec.Struct, kw_only=True):
    id: int
    active: bool = True
    events: list[str] = msgspec.field(default_factory=list[str])
    config: HookConfig = msgspec.field(default_factory=HookConfig)


class InstallationToken(msgspec.Struct, kw_only=True):
    token: str
    expires_at: str

    def __repr__(self) -> str:
        return f"InstallationToken(token=<redacted>, expires_at={self.expires_at!r})"


class WorkflowFile(msgspec.Struct, kw_only=True):
    """``GET /repos/{o}/{r}/contents/{path}``: the file, base64 in ``content``."""

    content: str = ""
    encoding: str = ""


class _DeliveryRepository(msgspec.Struct, kw_only=True):
    full_name: str = ""
    name: str = ""


class WorkflowJobDelivery(msgspec.Struct, kw_only=True):
    """The body of a ``workflow_job`` webhook delivery."""

    action: str = ""
    workflow_job: Job | None = None
    repository: _DeliveryRepository | None = None
