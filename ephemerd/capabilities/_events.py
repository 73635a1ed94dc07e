"""What a forge tells the scheduler: job events, and hints about its rate limits."""

from __future__ import annotations

import enum

import msgspec

__all__ = ["JobAction", "JobEvent", "JobKey", "PollConfig", "RateLimitHint"]


class JobAction(enum.Enum):
    """Where a job stands on the forge."""

    QUEUED = "queued"
    # The forge has the job waiting but this daemon does not claim it: it is shown only,
    # until another component (e.g. GitLab's custom executor) announces it QUEUED here.
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class JobKey(msgspec.Struct, frozen=True, order=True):
    """A job's identity inside the daemon.

    The same forge job id from two provider instances is two different jobs, so the key
    always carries the instance name.
    """

    instance: str
    job_id: str

    def __str__(self) -> str:
        return f"{self.instance}/{self.job_id}"


class JobEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One observation of a job on a forge, from a poll, a webhook or a long-poll.

    Attributes:
        instance: the provider instance that saw the job (``github``, ``forgejo-eu``...).
        action: whether the job is queued (or only pending, shown), running, or done.
        job_id: the forge's job id, as a string whatever the forge uses.
        run_id: the workflow run / pipeline the job belongs to, when the forge has one.
        repo: ``owner/name`` or the forge's project path.
        job_name: the job's display name.
        labels: what the job asks of a runner (``runs-on``, tags); empty means "any".
        conclusion: for completed jobs, the forge's word for the result.
        runner_name: the runner the forge says is running (or ran) the job. Runners are
            fungible: this may not be the runner dispatched for the job.
        raw: the forge's own payload, kept for the provider that produced it.
    """

    instance: str
    action: JobAction
    job_id: str
    run_id: str = ""
    repo: str = ""
    job_name: str = ""
    labels: tuple[str, ...] = ()
    conclusion: str = ""
    runner_name: str = ""
    raw: bytes = b""

    @property
    def key(self) -> JobKey:
        return JobKey(self.instance, self.job_id)


class PollConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How a provider should poll.

    Attributes:
        interval: seconds between poll cycles when all is well.
        labels: this host's runner labels, for providers that filter server-side.
        reconcile_only: the provider also receives webhooks; polling only catches what
            deliveries missed, so it may poll less often.
    """

    interval: float = 30.0
    labels: tuple[str, ...] = ()
    reconcile_only: bool = False


class RateLimitHint(msgspec.Struct, frozen=True, kw_only=True):
    """A forge's last word on its quota, for the scheduler's retry ladder.

    Attributes:
        remaining: requests left in the window.
        reset_at: Unix time when the window resets.
        observed_at: Unix time when this was read off a response; a stale hint is ignored.
    """

    remaining: int
    reset_at: float
    observed_at: float
