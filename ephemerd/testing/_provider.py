"""``MemoryProvider``: a fake forge kept in memory, for tests, benchmarks and a test daemon.

It is a ``Provider``, ``Poll``, ``Webhook``, ``RunnerNameReporter`` and
``RateLimitReporter``. Jobs are queued with ``queue_job``; ``poll`` reports every queued
job each interval (and at once when one is queued) plus any in_progress/completed
events produced by ``start_job``/``complete_job``. Claims and releases are recorded.

``handle_webhook`` takes a POST whose body is a JSON array of job events::

    [{"action": "queued", "job_id": "7", "repo": "octo/app", "labels": ["linux"]}]

A queued event may carry ``"script": ["sleep", "30"]``: the job is then recorded on the
fake forge and its runner runs that script (see ``MemorySandbox``).

authenticated by an ``x-ephemerd-test-token`` header equal to the configured secret
(compared in constant time; 403 otherwise), so a daemon subprocess can be fed over HTTP.
"""

from __future__ import annotations

import hmac
import itertools
from collections.abc import Mapping, Sequence

import msgspec
import trio

from ephemerd._errors import ForgeError, ForgeNotFound
from ephemerd.capabilities import (
    Claim,
    ClaimFile,
    ExitReason,
    JobAction,
    JobEvent,
    PollConfig,
    RateLimitHint,
    SandboxExit,
    SandboxHandle,
    WebhookReply,
    WebhookRequest,
)

__all__ = ["MemoryDrivingProvider", "MemoryJob", "MemoryProvider"]

TOKEN_HEADER = "x-ephemerd-test-token"
MAX_BODY = 1 << 20


class MemoryJob(msgspec.Struct, kw_only=True):
    """A job on the fake forge."""

    job_id: str
    repo: str
    labels: tuple[str, ...] = ()
    job_name: str = ""
    script: tuple[str, ...] = ("exit", "0")
    image: str | None = None
    state: str = "queued"  # queued | in_progress | completed
    runner_name: str = ""
    conclusion: str = ""


class _WireEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    action: JobAction
    job_id: str
    run_id: str = ""
    repo: str = ""
    job_name: str = ""
    labels: tuple[str, ...] = ()
    conclusion: str = ""
    runner_name: str = ""
    script: tuple[str, ...] | None = None


class MemoryProvider:
    """A fake forge. See the module docstring.

    Args:
        name: the instance name.
        kind: the forge kind reported.
        webhook_secret: the token ``handle_webhook`` requires; ``""`` refuses every delivery.
        reports_runner_names: whether in_progress/completed name the runner.
        default_image: the runner image for ``linux``; ``""`` for none.
        auto_start: a claimed job counts as picked up at once, so polls stop reporting it
            as queued (no in_progress event is sent); for benchmarks.
        exclusive: each job can be claimed once, like a forge that assigns the job at
            claim time; later claims raise ``ForgeNotFound``. Several schedulers sharing
            one provider then never run a job twice.

    Attributes:
        jobs: every job by id.
        claims: every successful claim, in order.
        releases: every released claim, in order.
        claim_calls: the runner name of every ``claim_job`` call, failed ones included.
        rate_hint: what ``rate_limit_hint`` returns.
        webhook_urls: URLs given to ``register_webhooks``.
        stopped: whether ``stop`` was called.
        claim_gate: when set to an unset ``trio.Event``, ``claim_job`` waits for it.
        release_gate: likewise for ``release_job``.
    """

    def __init__(
        self,
        name: str = "memory",
        *,
        kind: str = "memory",
        webhook_secret: str = "",
        reports_runner_names: bool = True,
        default_image: str = "memory/runner:latest",
        auto_start: bool = False,
        exclusive: bool = False,
    ) -> None:
        self._name = name
        self.auto_start = auto_start
        self.exclusive = exclusive
        self._taken: set[str] = set()
        self._kind = kind
        self._secret = webhook_secret
        self.reports_runner_names = reports_runner_names
        self._images = {"linux": default_image} if default_image else {}
        self.jobs: dict[str, MemoryJob] = {}
        self.claims: list[Claim] = []
        self.releases: list[Claim] = []
        self.claim_calls: list[str] = []
        self.rate_hint: RateLimitHint | None = None
        self.webhook_urls: list[str] = []
        self.stopped = False
        self.polls = 0
        self.claim_gate: trio.Event | None = None
        self.release_gate: trio.Event | None = None
        self._failures: list[ForgeError] = []
        self._release_failures: list[ForgeError] = []
        self._outbox: list[JobEvent] = []
        self._wake = trio.Event()
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"MemoryProvider({self._name!r}, webhook_secret=<redacted>)"

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def default_images(self) -> Mapping[str, str]:
        return self._images

    @property
    def active_runners(self) -> set[str]:
        """Runner names claimed and not yet released."""
        released = {c.runner_name for c in self.releases}
        return {c.runner_name for c in self.claims} - released

    # -- driving the fake forge ------------------------------------------------------

    def event(self, job_id: str, action: JobAction = JobAction.QUEUED) -> JobEvent:
        """The event the forge would send now for *job_id*."""
        job = self.jobs[job_id]
        return JobEvent(
            instance=self._name,
            action=action,
            job_id=job.job_id,
            repo=job.repo,
            job_name=job.job_name,
            labels=job.labels,
            runner_name=job.runner_name if action is not JobAction.QUEUED else "",
            conclusion=job.conclusion if action is JobAction.COMPLETED else "",
        )

    def queue_job(
        self,
        job_id: str | None = None,
        *,
        repo: str = "octo/app",
        labels: Sequence[str] = (),
        job_name: str = "build",
        script: Sequence[str] = ("exit", "0"),
        image: str | None = None,
    ) -> JobEvent:
        """Queue a job; the runner claimed for it will run *script* (see ``MemorySandbox``)."""
        job_id = job_id or str(next(self._ids))
        self.jobs[job_id] = MemoryJob(
            job_id=job_id,
            repo=repo,
            labels=tuple(labels),
            job_name=job_name,
            script=tuple(script),
            image=image,
        )
        self._wake.set()
        return self.event(job_id)

    def start_job(self, job_id: str, runner_name: str = "") -> JobEvent:
        """The forge hands *job_id* to *runner_name*; the in_progress event is also polled."""
        job = self.jobs[job_id]
        job.state, job.runner_name = "in_progress", runner_name
        return self._emit(self.event(job_id, JobAction.IN_PROGRESS))

    def complete_job(
        self, job_id: str, runner_name: str | None = None, conclusion: str = "success"
    ) -> JobEvent:
        """*job_id* ends; the completed event is also polled."""
        job = self.jobs[job_id]
        job.state, job.conclusion = "completed", conclusion
        if runner_name is not None:
            job.runner_name = runner_name
        return self._emit(self.event(job_id, JobAction.COMPLETED))

    def _emit(self, event: JobEvent) -> JobEvent:
        self._outbox.append(event)
        self._wake.set()
        return event

    def fail_next_claims(self, count: int, error: ForgeError) -> None:
        """Make the next *count* ``claim_job`` calls raise *error*."""
        self._failures.extend([error] * count)

    def fail_next_releases(self, count: int, error: ForgeError) -> None:
        """Make the next *count* ``release_job`` calls raise *error*."""
        self._release_failures.extend([error] * count)

    # -- Provider --------------------------------------------------------------------

    async def claim_job(self, event: JobEvent, *, runner_name: str, labels: Sequence[str]) -> Claim:
        self.claim_calls.append(runner_name)
        if self.claim_gate is not None:
            await self.claim_gate.wait()
        await trio.lowlevel.checkpoint()
        if self._failures:
            raise self._failures.pop(0)
        if self.exclusive:
            if event.job_id in self._taken:
                raise ForgeNotFound(f"job {event.job_id} is no longer waiting for a runner")
            self._taken.add(event.job_id)
        job = self.jobs.get(event.job_id)
        script = job.script if job is not None else ("exit", "0")
        claim = Claim(
            runner_id=f"r-{len(self.claims) + 1}",
            runner_name=runner_name,
            repo=event.repo,
            env={"EPHEMERD_JOB_ID": event.job_id, "EPHEMERD_LABELS": ",".join(labels)},
            files=(ClaimFile(path="/run/ephemerd/token", content=b"secret-token"),),
            entrypoint=script,
            image="",
        )
        self.claims.append(claim)
        if job is not None and self.auto_start:
            job.state, job.runner_name = "in_progress", runner_name
        return claim

    async def release_job(self, claim: Claim) -> None:
        if self.release_gate is not None:
            await self.release_gate.wait()
        await trio.lowlevel.checkpoint()
        if self._release_failures:
            raise self._release_failures.pop(0)
        self.releases.append(claim)

    async def fetch_job_image(self, event: JobEvent) -> str | None:
        await trio.lowlevel.checkpoint()
        job = self.jobs.get(event.job_id)
        return job.image if job is not None else None

    async def stop(self) -> None:
        await trio.lowlevel.checkpoint()
        self.stopped = True

    def rate_limit_hint(self) -> RateLimitHint | None:
        return self.rate_hint

    # -- Poll ------------------------------------------------------------------------

    async def poll(self, config: PollConfig, events: trio.MemorySendChannel[JobEvent]) -> None:
        """Report queued jobs every *config.interval* (or when woken), plus outbox events."""
        async with events:
            while True:
                self.polls += 1
                self._wake = trio.Event()
                outbox, self._outbox = self._outbox, []
                for event in outbox:
                    await events.send(event)
                for job in list(self.jobs.values()):
                    if job.state == "queued":
                        await events.send(self.event(job.job_id))
                with trio.move_on_after(config.interval):
                    await self._wake.wait()

    # -- Webhook ---------------------------------------------------------------------

    async def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        await trio.lowlevel.checkpoint()
        if request.method.upper() != "POST":
            return WebhookReply(status=405, body=b"method not allowed")
        if len(request.body) > MAX_BODY:
            return WebhookReply(status=413, body=b"body too large")
        token = request.headers.get(TOKEN_HEADER, "")
        if not self._secret or not hmac.compare_digest(token.encode(), self._secret.encode()):
            return WebhookReply(status=403, body=b"bad or missing token")
        try:
            wire = msgspec.json.decode(request.body, type=list[_WireEvent])
        except msgspec.DecodeError as exc:
            return WebhookReply(status=400, body=f"bad body: {exc}".encode())
        for item in wire:
            if item.script is not None and item.action is JobAction.QUEUED:
                self.jobs.setdefault(
                    item.job_id,
                    MemoryJob(
                        job_id=item.job_id,
                        repo=item.repo,
                        labels=item.labels,
                        job_name=item.job_name,
                        script=item.script,
                    ),
                )
        events = tuple(
            JobEvent(
                instance=self._name,
                action=item.action,
                job_id=item.job_id,
                run_id=item.run_id,
                repo=item.repo,
                job_name=item.job_name,
                labels=item.labels,
                conclusion=item.conclusion,
                runner_name=item.runner_name,
            )
            for item in wire
        )
        return WebhookReply(status=200, body=b"ok", events=events)

    async def register_webhooks(self, url: str) -> None:
        await trio.lowlevel.checkpoint()
        self.webhook_urls.append(url)

    async def deregister_webhooks(self) -> None:
        await trio.lowlevel.checkpoint()
        self.webhook_urls.clear()


class MemoryDrivingProvider(MemoryProvider):
    """A ``MemoryProvider`` that drives jobs itself (``DrivesJob``), like Woodpecker.

    ``drive_job`` runs the job's script as one ``exec`` in the sandbox and returns its
    result as the job's exit. ``driven`` records each claim driven.
    """

    def __init__(
        self,
        name: str = "memory-driven",
        *,
        webhook_secret: str = "",
        reports_runner_names: bool = False,
    ) -> None:
        super().__init__(
            name,
            kind="memory-driven",
            webhook_secret=webhook_secret,
            reports_runner_names=reports_runner_names,
        )
        self.driven: list[Claim] = []

    async def drive_job(self, claim: Claim, sandbox: SandboxHandle) -> SandboxExit:
        self.driven.append(claim)
        code = await sandbox.exec(claim.entrypoint or ("exit", "0"), env=claim.env)
        return SandboxExit(reason=ExitReason.EXITED, exit_code=code)
