"""The Protocols a forge implements.

A job's life, as the scheduler sees it:

1. ``Poll.poll`` (or a ``Webhook`` delivery) reports a queued job as a ``JobEvent``;
2. once a concurrency slot is taken, ``Provider.claim_job`` registers a runner for it;
3. ``Provider.fetch_job_image`` names the image the job asked for, if any;
4. the runner runs in a fresh sandbox (or ``DrivesJob.drive_job`` drives it);
5. ``Provider.release_job`` deregisters the runner once the sandbox is gone;
6. ``Provider.stop`` at shutdown.

Optional capabilities are separate ``@runtime_checkable`` Protocols: the scheduler asks
``isinstance(provider, Webhook)`` before mounting a webhook route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import msgspec

from ._claims import Claim
from ._events import JobEvent, PollConfig, RateLimitHint
from ._sandbox import SandboxExit, SandboxHandle

if TYPE_CHECKING:  # only in annotations: keeps `ephemerd status` from importing trio
    import trio

__all__ = [
    "DrivesJob",
    "FollowsCapacity",
    "FollowsCordon",
    "Poll",
    "Provider",
    "RateLimitReporter",
    "RunnerNameReporter",
    "Webhook",
    "WebhookReply",
    "WebhookRequest",
]


@runtime_checkable
class Provider(Protocol):
    """One configured forge instance."""

    @property
    def name(self) -> str:
        """The instance name, unique in the daemon (``github``, ``forgejo-eu``...)."""
        ...

    @property
    def kind(self) -> str:
        """Which forge this is: ``github``, ``forgejo``, ``gitea``, ``gitlab``, ``woodpecker``."""
        ...

    @property
    def default_images(self) -> Mapping[str, str]:
        """The runner image per OS (``linux``...), used when the job names none."""
        ...

    async def claim_job(self, event: JobEvent, *, runner_name: str, labels: Sequence[str]) -> Claim:
        """Register a runner that will run *event*'s job.

        Raises:
            ForgeConflict: *runner_name* is taken; the scheduler retries with another.
            ForgeError: anything else the forge said; ``retryable`` tells what to do.
        """
        ...

    async def release_job(self, claim: Claim) -> None:
        """Deregister the runner of *claim*. A runner already gone counts as released."""
        ...

    async def fetch_job_image(self, event: JobEvent) -> str | None:
        """The image the job itself asks for (``container:``), or ``None``."""
        ...

    async def stop(self) -> None:
        """Release whatever the provider holds; called once at shutdown."""
        ...


@runtime_checkable
class Poll(Protocol):
    """A provider that discovers jobs by asking the forge."""

    async def poll(self, config: PollConfig, events: trio.MemorySendChannel[JobEvent]) -> None:
        """Send every job event seen into *events* until cancelled.

        A crash is logged by the scheduler, which restarts the poll with backoff.
        """
        ...


class WebhookRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An inbound delivery, before anything in it is trusted.

    ``headers`` keys are lower-case. ``body`` is the raw bytes, for signature checks.
    """

    method: str
    headers: dict[str, str]
    body: bytes


class WebhookReply(msgspec.Struct, frozen=True, kw_only=True):
    """What to answer the forge, and the events the delivery carried (if it was genuine)."""

    status: int
    body: bytes = b""
    events: tuple[JobEvent, ...] = ()


@runtime_checkable
class Webhook(Protocol):
    """A provider that can also receive deliveries at ``/webhook/<instance>``."""

    async def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        """Authenticate, then parse one delivery. Never raises for bad input."""
        ...

    async def register_webhooks(self, url: str) -> None:
        """Create (or reuse) hooks pointing at *url*; never touch other tools' hooks."""
        ...

    async def deregister_webhooks(self) -> None: ...


@runtime_checkable
class RunnerNameReporter(Protocol):
    """A provider whose in_progress/completed events name the runner that really runs the job.

    With it, teardown follows the runner the forge reports, not the one dispatched.
    """

    reports_runner_names: bool


@runtime_checkable
class RateLimitReporter(Protocol):
    """A provider that knows its forge's quota; the retry ladder waits for the reset."""

    def rate_limit_hint(self) -> RateLimitHint | None: ...


@runtime_checkable
class FollowsCordon(Protocol):
    """A provider that pulls work from its forge, such as Woodpecker's ``Next``.

    The forge assigns work the moment it answers a pull, so the provider must stop pulling
    the moment the daemon stops claiming (cordon, drain) and may resume on uncordon.
    """

    def set_cordoned(self, cordoned: bool) -> None: ...


@runtime_checkable
class FollowsCapacity(Protocol):
    """A provider that pulls work, told how many of the daemon's slots are free.

    A slot is free when no job holds it and no admitted job waits for it; the count is
    shared by every provider. Pulling no more than that keeps work the forge assigns on a
    pull from waiting here while another host could run it.
    """

    def set_free_slots(self, free: int) -> None: ...


@runtime_checkable
class DrivesJob(Protocol):
    """A provider that runs the job's steps itself inside the sandbox (Woodpecker, GitLab).

    The sandbox is started with a keep-alive process; the provider uses ``exec``.
    """

    async def drive_job(self, claim: Claim, sandbox: SandboxHandle) -> SandboxExit:
        """Run the job to its end and report it to the forge.

        Cancellation: report the job as cancelled to the forge, then re-raise.
        """
        ...
