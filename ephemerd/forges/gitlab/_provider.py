"""The GitLab provider: gitlab-runner's custom executor, backed by the scheduler.

gitlab-runner polls GitLab and owns the job on the forge; ephemerd gives each job its
sandbox. The four executor programs (``ephemerd gitlab-executor ...``) reach this
provider through the control socket:

1. ``prepare``: ``expect`` turns the request into a queued ``JobEvent``; the control
   plane submits it like a webhook delivery, so admission (labels from the runner's
   tags, dedup, cordon), the concurrency limit, the journal and drain apply as to any
   job. ``claim_job`` checks the image policy; the sandbox starts with a keep-alive
   process and ``drive_job`` takes it;
2. ``run``: each sub-stage's script is fed on stdin to a shell inside the sandbox while
   ``drive_job`` holds it;
3. ``cleanup``: ``drive_job`` returns and the scheduler tears the sandbox down.

A killed job (``ephemerd jobs kill``), a timeout or a sandbox whose main process dies
ends ``drive_job`` too: running stages are cancelled and later ones are refused, which
gitlab-runner reports as a system failure. Nothing is registered on GitLab, so
``release_job`` has nothing to do. Job variables (secrets) stay in memory and in the
stage scripts fed on stdin; no event, log line or ``repr`` carries them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial

import trio

from ephemerd._errors import (
    ControlError,
    ForgeAuthError,
    ForgeError,
    ForgeNotFound,
    ForgePermissionError,
    JobNotFound,
)
from ephemerd._http import open_http_client
from ephemerd.capabilities import (
    Claim,
    ExecutorRequest,
    ExitReason,
    JobAction,
    JobEvent,
    OutputSink,
    SandboxExit,
    SandboxHandle,
    WebhookReply,
    WebhookRequest,
)

from ._api import load_system_id, verify_runner
from ._hook import HookReceiver, job_event
from ._job import GitLabJob, image_allowed, runner_tags
from ._options import GitLabOptions
from ._supervise import RunnerSwitch, supervise_gitlab_runner, write_runner_config

__all__ = ["GitLabProvider", "GitLabWebhookProvider", "open_gitlab_provider", "verify_token"]

log = logging.getLogger("ephemerd.forges.gitlab")


class GitLabProvider:
    """One GitLab instance behind gitlab-runner. Make it with ``open_gitlab_provider``.

    Satisfies ``Provider``, ``DrivesJob``, ``CustomExecutor`` and ``FollowsCordon``.
    """

    kind = "gitlab"

    def __init__(self, options: GitLabOptions) -> None:
        options.validate()
        self._options = options
        self._jobs: dict[str, GitLabJob] = {}
        self.auth_error = ""  # GitLab refused the token at start-up: prepares are refused
        self.runner_id: int | None = None  # GitLab's id of our runner, once verified
        self.runner_switch = RunnerSwitch()
        """Off while the daemon is cordoned: a supervised gitlab-runner stops taking jobs."""

    def __repr__(self) -> str:
        return f"GitLabProvider({self._options.name!r}, url={self._options.instance_url!r})"

    @property
    def name(self) -> str:
        return self._options.name

    @property
    def options(self) -> GitLabOptions:
        return self._options

    @property
    def default_images(self) -> Mapping[str, str]:
        image = self._options.default_image
        return {"linux": image} if image else {}

    def statistics(self) -> dict[str, int]:
        """Jobs between prepare and the end of their sandbox, for tests and views."""
        jobs = list(self._jobs.values())
        return {"jobs": len(jobs), "running": sum(1 for j in jobs if j.handle is not None)}

    # -- FollowsCordon ---------------------------------------------------------------

    def set_cordoned(self, cordoned: bool) -> None:
        """A supervised gitlab-runner stops asking GitLab for jobs while cordoned."""
        self.runner_switch.set(not cordoned)

    # -- CustomExecutor --------------------------------------------------------------

    def expect(self, request: ExecutorRequest) -> JobEvent:
        """Remember *request*; the queued event for it (no secret in it).

        Raises:
            ControlError: no job id, or the job is already being prepared or run.
            ForgeAuthError: GitLab refused the runner token at start-up.
        """
        if self.auth_error:
            raise ForgeAuthError(f"{self.name}: {self.auth_error}")
        job_id = request.job_id.strip()
        if not job_id:
            raise ControlError(
                "CUSTOM_ENV_CI_JOB_ID is not set: run this from gitlab-runner's custom executor"
            )
        if job_id in self._jobs:
            raise ControlError(f"gitlab job {job_id} is already prepared on this daemon")
        variables = request.variables
        self._jobs[job_id] = GitLabJob(request, image=variables.get("CI_JOB_IMAGE", "").strip())
        return JobEvent(
            instance=self.name,
            action=JobAction.QUEUED,
            job_id=job_id,
            run_id=variables.get("CI_PIPELINE_ID", ""),
            repo=variables.get("CI_PROJECT_PATH", ""),
            job_name=variables.get("CI_JOB_NAME", ""),
            labels=runner_tags(variables),
        )

    def prepared(self, job_id: str) -> bool:
        """Whether *job_id* is between its prepare and the end of its sandbox here."""
        return job_id in self._jobs

    def forget(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None and job.handle is None:
            del self._jobs[job_id]
            job.close("its prepare failed")

    async def run(self, job_id: str, script: bytes, stage: str, output: OutputSink) -> int:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(
                f"gitlab job {job_id} is not running here (not prepared, cleaned up, or "
                "the daemon restarted since)"
            )
        return await job.run(script, stage, output, shell=self._options.shell)

    def cleanup(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None:
            return False
        job.cleanup.set()
        return True

    # -- Provider --------------------------------------------------------------------

    async def claim_job(self, event: JobEvent, *, runner_name: str, labels: Sequence[str]) -> Claim:
        """The prepared job's claim: nothing to register; the image policy is checked here.

        Raises:
            ForgeNotFound: no prepare waits for this job (never retried).
            ForgePermissionError: the job's image is not in ``allowed_images``.
        """
        del labels
        await trio.lowlevel.checkpoint()
        job = self._jobs.get(event.job_id)
        if job is None:
            raise ForgeNotFound(f"gitlab job {event.job_id}: no prepare is waiting for it")
        if job.image and not image_allowed(job.image, self._options.allowed_images):
            allowed = ", ".join(self._options.allowed_images)
            raise ForgePermissionError(
                f"image {job.image!r} is not allowed for {self.name} (allowed_images: {allowed})"
            )
        return Claim(runner_id=job.id, runner_name=runner_name, repo=event.repo, image=job.image)

    async def release_job(self, claim: Claim) -> None:
        """Nothing to release: gitlab-runner owns the job on GitLab."""
        del claim
        await trio.lowlevel.checkpoint()

    async def fetch_job_image(self, event: JobEvent) -> str | None:
        await trio.lowlevel.checkpoint()
        job = self._jobs.get(event.job_id)
        return (job.image or None) if job is not None else None

    async def drive_job(self, claim: Claim, sandbox: SandboxHandle) -> SandboxExit:
        """Lend *sandbox* to the job's run stages until cleanup, or until it dies.

        The exit code is the first failing build stage's (0 when none failed); a stage
        gitlab-runner cancelled (it does so when GitLab cancels the job or it times out)
        makes the job cancelled.

        Cancellation: running stages are cancelled (their processes killed) and later
            ones refused; then it re-raises.
        """
        job = self._jobs.get(claim.runner_id)
        if job is None or job.closed:
            log.error("%s: job %s has no prepare waiting for it", self.name, claim.runner_id)
            return SandboxExit(reason=ExitReason.EXITED, exit_code=1)
        job.handle = sandbox
        why = "the job was killed or timed out"
        try:
            async with trio.open_nursery() as nursery:
                died = trio.Event()

                async def watch() -> None:
                    await sandbox.wait()
                    died.set()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                await job.cleanup.wait()
                nursery.cancel_scope.cancel()
            if died.is_set():
                why = "the sandbox's main process ended"
                log.warning("%s: job %s: %s", self.name, job.id, why)
                return SandboxExit(reason=ExitReason.LOST)
            why = "the job was cleaned up"
            if job.cut_short:
                log.info("%s: job %s: gitlab-runner cancelled %s", self.name, job.id, job.cut_short)
                return SandboxExit(reason=ExitReason.CANCELLED)
            return SandboxExit(reason=ExitReason.EXITED, exit_code=job.exit_code)
        finally:
            job.close(why)
            self._jobs.pop(job.id, None)

    def close_all(self, why: str) -> None:
        """Refuse every further stage (the daemon is going away)."""
        for job in list(self._jobs.values()):
            job.close(why)

    async def stop(self) -> None:
        """Nothing to deregister; running jobs end with their sandboxes."""
        await trio.lowlevel.checkpoint()


async def verify_token(provider: GitLabProvider) -> None:
    """Check the runner token with GitLab once; a refusal refuses every later prepare.

    An unreachable GitLab is only a warning: gitlab-runner may reach it later, and jobs
    it sends are still served.
    """
    options = provider.options
    if options.system_id_file is None:
        return
    system_id = await trio.to_thread.run_sync(load_system_id, options.system_id_file)
    try:
        async with open_http_client() as client:
            identity = await verify_runner(
                client, instance_url=options.instance_url, token=options.token, system_id=system_id
            )
    except ForgeAuthError as exc:
        provider.auth_error = f"GitLab refused the runner token: {exc}"
        log.error("%s: %s; every job is refused until it is fixed", provider.name, exc)
        return
    except ForgeError as exc:
        log.warning("%s: cannot verify the runner token: %s", provider.name, exc)
        return
    provider.runner_id = identity.id
    log.info("%s: runner %s verified with %s", provider.name, identity.id, options.instance_url)


@asynccontextmanager
async def open_gitlab_provider(options: GitLabOptions) -> AsyncGenerator[GitLabProvider]:
    """A provider for *options* for the block's duration; the token is verified meanwhile.

    With a ``webhook_token`` it is a ``GitLabWebhookProvider`` (also a ``Webhook``).

    Raises:
        ConfigError: the options are inconsistent.
    Cancellation: safe; the verification is cancelled with the block.
    """
    provider = GitLabWebhookProvider(options) if options.webhook_token else GitLabProvider(options)
    async with trio.open_nursery() as background:
        background.start_soon(verify_token, provider)
        if options.supervise is not None:
            config_file = write_runner_config(options)
            await background.start(
                partial(
                    supervise_gitlab_runner,
                    binary=options.supervise.binary,
                    config_file=config_file,
                    switch=provider.runner_switch,
                )
            )
        try:
            yield provider
        finally:
            provider.close_all("ephemerd is stopping")
            background.cancel_scope.cancel()


class GitLabWebhookProvider(GitLabProvider):
    """A ``GitLabProvider`` that also takes Job Hook deliveries (``Webhook``).

    Jobs GitLab has waiting are shown as pending; nothing is claimed from a hook, since
    gitlab-runner decides which runner takes a job and this daemon's ``prepare`` admits it.
    A job prepared here is driven by gitlab-runner's executor calls alone: hooks about it
    are ignored. The hook is set up by the operator in GitLab, so ``register_webhooks``
    and ``deregister_webhooks`` do nothing.
    """

    def __init__(self, options: GitLabOptions) -> None:
        super().__init__(options)
        self._receiver = HookReceiver(options.name, options.webhook_token)

    async def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        """Authenticate (constant time), parse, deduplicate; never raises for bad input."""
        await trio.lowlevel.checkpoint()
        reply, hook = self._receiver.handle(request)
        if hook is None or self.prepared(str(hook.job_id)):
            return reply
        ours = self.runner_id is not None and hook.runner_id == self.runner_id
        event = job_event(self.name, hook, ours=ours)
        if event is None:
            return reply
        return WebhookReply(status=reply.status, body=reply.body, events=(event,))

    async def register_webhooks(self, url: str) -> None:
        """Nothing to do: GitLab's Job Hook is configured by the operator."""
        del url
        await trio.lowlevel.checkpoint()

    async def deregister_webhooks(self) -> None:
        await trio.lowlevel.checkpoint()
