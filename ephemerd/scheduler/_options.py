"""The scheduler's options: one frozen Struct handed only to the scheduler."""

from __future__ import annotations

import msgspec

from ephemerd._errors import ConfigError
from ephemerd._retry import RetryPolicy
from ephemerd.capabilities import ResourceLimits

from ._labels import HostLabels

__all__ = ["SchedulerOptions"]


class SchedulerOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How the scheduler admits, runs and tears down jobs. Durations are seconds.

    Attributes:
        max_concurrent: jobs holding a runner at once; excess jobs are parked, never dropped.
        labels: this host's runner labels, matched against each job's labels.
        instance_labels: extra labels offered to one provider instance only.
        job_timeout: a running job is killed and torn down after this long.
        shutdown_timeout: how long a drain lets running jobs finish before cancelling them.
        teardown_timeout: deadline of each teardown (sandbox destroy + runner release),
            which runs shielded from cancellation.
        dedup_window: a queued event for a job handled this recently is ignored.
        claim_retry: the retry ladder of failed claims.
        start_retry: the retry ladder of failed sandbox creations and starts.
        conflict_tries: claims tried with fresh runner names when the name is taken.
        default_image: image used when neither the claim, the job nor the provider names one.
        limits: cgroup limits of every sandbox.
        keepalive_argv: what a sandbox runs when the provider drives the job itself.
        network: the sandboxes' network mode (``"default"`` or ``"none"``).
        poll_interval: seconds between polls, handed to every polling provider.
        finished_retention: finished jobs stay visible this long...
        finished_keep: ...and at most this many of them.
        pending_retention: a job shown pending (waiting on the forge, not claimed here) is
            forgotten when no event mentioned it for this long...
        pending_keep: ...and at most this many are shown, the oldest forgotten first.
        rate_limit_margin: extra seconds waited after a forge's rate-limit reset.
        rate_limit_jitter: up to this many random seconds added on top of the margin.
        rate_hint_max_age: a rate-limit hint older than this is ignored.
        poll_restart: the backoff of a crashed poll task.
    """

    max_concurrent: int = 4
    labels: HostLabels = msgspec.field(default_factory=HostLabels)
    instance_labels: dict[str, tuple[str, ...]] = msgspec.field(
        default_factory=dict[str, tuple[str, ...]]
    )
    job_timeout: float = 7200.0
    shutdown_timeout: float = 300.0
    teardown_timeout: float = 30.0
    dedup_window: float = 600.0
    claim_retry: RetryPolicy = RetryPolicy()
    start_retry: RetryPolicy = RetryPolicy(schedule=(10.0, 30.0, 60.0, 120.0, 300.0))
    conflict_tries: int = 3
    default_image: str = ""
    limits: ResourceLimits = ResourceLimits()
    keepalive_argv: tuple[str, ...] = ("sleep", "infinity")
    network: str = "default"
    poll_interval: float = 30.0
    finished_retention: float = 600.0
    finished_keep: int = 200
    pending_retention: float = 3600.0
    pending_keep: int = 1000
    rate_limit_margin: float = 5.0
    rate_limit_jitter: float = 20.0
    rate_hint_max_age: float = 300.0
    poll_restart: RetryPolicy = msgspec.field(
        default_factory=lambda: RetryPolicy.exponential(first=1.0, cap=60.0)
    )

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise ConfigError(f"max_concurrent must be at least 1, not {self.max_concurrent}")
        for name in ("job_timeout", "shutdown_timeout", "teardown_timeout", "poll_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)}")
        if self.conflict_tries < 1:
            raise ConfigError(f"conflict_tries must be at least 1, not {self.conflict_tries}")

    def runner_labels(self, instance: str) -> tuple[str, ...]:
        """The labels a runner for *instance* registers with: the host's, then its own."""
        base = self.labels.runner_labels()
        seen = {label.lower() for label in base}
        extra = [
            label
            for label in self.instance_labels.get(instance, ())
            if label.lower() not in seen and not seen.add(label.lower())
        ]
        return (*base, *extra)
