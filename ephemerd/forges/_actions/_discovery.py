"""Finding waiting jobs over REST without claiming them, as ``JobEvent``s.

Listing is read-only on both forges: a job stays waiting until the runner ephemerd starts
for it fetches it. Events carry the job's ``runs-on`` labels, so the scheduler claims only
jobs this host can satisfy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from ephemerd.capabilities import JobAction, JobEvent

from ._rest import ForgejoJob, GiteaJob, RestClient

__all__ = ["forgejo_job_of", "list_waiting"]

_REPO_IN_URL = re.compile(r"^https?://[^/]+(?:/[^/]+)*?/([^/]+/[^/]+)/actions/runs/")
_GITEA_WAITING = ("queued",)


def _repo_of(scope: str, html_url: str) -> str:
    if scope.startswith("/repos/"):
        return scope.removeprefix("/repos/")
    found = _REPO_IN_URL.match(html_url)
    return found.group(1) if found else ""


def _job_id(job_id: int, attempt: int) -> str:
    # a re-run is a new attempt of the same job: a new handle, and a new job to the scheduler
    return str(job_id) if attempt <= 1 else f"{job_id}.{attempt}"


def forgejo_job_of(event: JobEvent) -> ForgejoJob | None:
    """The listed Forgejo job an event came from, or ``None``."""
    if not event.raw:
        return None
    try:
        return msgspec.json.decode(event.raw, type=ForgejoJob)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def list_waiting(
    rest: RestClient, *, listing: str, instance: str, scope: str, labels: Sequence[str]
) -> list[JobEvent]:
    """Waiting jobs of *scope* as queued events.

    Raises:
        ForgeNotFound: the server has no such listing (old Gitea): use the warm pool.
        ForgeError: any other failure.
    """
    events: list[JobEvent] = []
    if listing == "forgejo":
        for job in await rest.forgejo_jobs(scope, labels):
            if job.status not in ("", "waiting") or job.task_id:
                continue
            events.append(
                JobEvent(
                    instance=instance,
                    action=JobAction.QUEUED,
                    job_id=_job_id(job.id, job.attempt),
                    run_id=str(job.run_id) if job.run_id else "",
                    repo=_repo_of(scope, job.html_url),
                    job_name=job.name,
                    labels=tuple(job.runs_on),
                    raw=msgspec.json.encode(job),
                )
            )
        return events
    jobs: list[GiteaJob] = []
    for status in _GITEA_WAITING:
        jobs += await rest.gitea_jobs(scope, status=status)
    seen: set[int] = set()
    for job in jobs:
        if job.id in seen or job.runner_name:
            continue
        seen.add(job.id)
        events.append(
            JobEvent(
                instance=instance,
                action=JobAction.QUEUED,
                job_id=str(job.id),
                run_id=str(job.run_id) if job.run_id else "",
                repo=_repo_of(scope, ""),
                job_name=job.name,
                labels=tuple(job.labels),
                raw=msgspec.json.encode(job),
            )
        )
    return events
