"""GitHub jobs as ``JobEvent``s: the one conversion webhooks and polls share."""

from __future__ import annotations

import msgspec

from ephemerd.capabilities import JobAction, JobEvent

from ._payloads import Job

__all__ = ["ACTIONS", "job_event"]

ACTIONS = {
    "queued": JobAction.QUEUED,
    "in_progress": JobAction.IN_PROGRESS,
    "completed": JobAction.COMPLETED,
}
"""GitHub job statuses (and ``workflow_job`` actions) that mean something to the scheduler."""

_encoder = msgspec.json.Encoder()


def job_event(instance: str, action: JobAction, job: Job, repo: str) -> JobEvent:
    """The event for *job* of *repo* (``owner/name``).

    ``raw`` keeps the job's fields in GitHub's own JSON shape (``head_sha`` included), for
    ``fetch_job_image``. ``runner_name`` is GitHub's word on which runner took the job,
    which for fungible JIT runners need not be the one created for it.
    """
    return JobEvent(
        instance=instance,
        action=action,
        job_id=str(job.id),
        run_id=str(job.run_id) if job.run_id else "",
        repo=repo,
        job_name=job.name,
        labels=tuple(job.labels),
        conclusion=job.conclusion or "",
        runner_name=job.runner_name or "",
        raw=_encoder.encode(job),
    )
