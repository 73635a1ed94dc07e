"""The GitHub Actions provider: JIT runners per job, discovered by poll and webhook.

A claim generates a just-in-time runner configuration on the job's scope (the repository,
or the organisation when no repositories are configured) and hands it to the sandbox as a
read-only file. JIT runners are fungible: GitHub gives a connecting runner any queued job
its labels fit, so teardown follows the ``runner_name`` GitHub reports on in_progress and
completed events (``reports_runner_names``), not the job a runner was created for.

How the JIT config stays off every argv: the actions runner reads each command-line
argument also from an ``ACTIONS_RUNNER_INPUT_<NAME>`` environment variable (actions/runner
``src/Runner.Listener/CommandSettings.cs``: it stores the value, registers ``jitconfig`` with
the secret masker, and removes the variable from its environment), so the entrypoint is a
two-line shell script that loads the file into ``ACTIONS_RUNNER_INPUT_JITCONFIG`` and execs
``run.sh`` with no arguments. The script's own argv holds only the file's path. The value
still appears in ``/proc/<pid>/environ`` of the runner's processes, which unlike
``cmdline`` only their own user (and root) can read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from urllib.parse import quote

import httpx
import msgspec
import trio

from ephemerd._errors import EphemerdError, ForgeError, ForgeUnavailable
from ephemerd._http import open_http_client
from ephemerd.capabilities import (
    Claim,
    ClaimFile,
    JobEvent,
    PollConfig,
    RateLimitHint,
    WebhookReply,
    WebhookRequest,
)

from ._auth import AppAuth, Credentials, TokenAuth
from ._client import GitHubClient
from ._hooks import HookManager
from ._images import WorkflowImages, decode_content, find_image, job_images
from ._options import GitHubOptions
from ._payloads import JitConfig, Job, Run, RunnersPage, WorkflowFile
from ._policy import SELF_HOSTED, JobPolicy
from ._poll import Poller
from ._ratelimit import RateLimitGate
from ._webhook import WebhookReceiver

__all__ = [
    "JITCONFIG_PATH",
    "RUNNER_ENTRYPOINT",
    "RUNNER_WORKDIR",
    "GitHubProvider",
    "open_github_provider",
]

log = logging.getLogger(__name__)

JITCONFIG_PATH = "/run/ephemerd/jitconfig"
"""Where the sandbox mounts the runner's JIT configuration, read-only."""

RUNNER_WORKDIR = "/home/runner"
"""The runner's install directory in ``ghcr.io/actions/actions-runner`` images."""

RUNNER_ENTRYPOINT = (
    "/bin/sh",
    "-c",
    f'ACTIONS_RUNNER_INPUT_JITCONFIG="$(cat {JITCONFIG_PATH})" || exit 1\n'
    "export ACTIONS_RUNNER_INPUT_JITCONFIG\nexec ./run.sh",
)
"""Start the runner with the JIT config from the file, through its environment, never argv."""

_MAX_LABELS = 100  # GitHub's limit per runner
RELEASE_TIMEOUT = 30.0
"""Seconds a clean-up of a half-registered runner may take, even when cancelled."""


class GitHubProvider:
    """One GitHub instance: owner, scope and credentials. Build it with ``open_github_provider``.

    It implements ``Provider``, ``Poll``, ``Webhook``, ``RunnerNameReporter`` and
    ``RateLimitReporter`` from ``ephemerd.capabilities``.
    """

    reports_runner_names: bool = True

    def __init__(self, options: GitHubOptions, client: GitHubClient) -> None:
        self._options = options
        self._client = client
        self._policy = JobPolicy(
            owner=options.owner,
            repos=options.repos,
            allowed_repos=options.allowed_repos,
            required_labels=options.required_labels,
        )
        self._poller = Poller(
            client,
            instance=options.name,
            owner=options.owner,
            repos=options.repos,
            policy=self._policy,
        )
        self._receiver = WebhookReceiver(options.name, options.webhook_secret, self._policy)
        targets = (
            [f"/orgs/{options.owner}"]
            if options.org_scope
            else [f"/repos/{options.owner}/{repo}" for repo in options.repos]
        )
        self._hooks = HookManager(client, targets, options.webhook_secret)
        self._workflows = WorkflowImages()

    def __repr__(self) -> str:
        return f"GitHubProvider({self._options!r})"

    @property
    def name(self) -> str:
        return self._options.name

    @property
    def kind(self) -> str:
        return "github"

    @property
    def default_images(self) -> Mapping[str, str]:
        return {"linux": self._options.default_image}

    @property
    def client(self) -> GitHubClient:
        """The REST client (for diagnostics: request counts, ETag hits)."""
        return self._client

    def _scope(self, repo: str) -> str:
        if self._options.org_scope:
            return f"/orgs/{self._options.owner}"
        owner, _, name = repo.rpartition("/")
        if owner.lower() != self._options.owner.lower() or name.lower() not in {
            r.lower() for r in self._options.repos
        }:
            error = ForgeError(f"GitHub {self.name}: repository {repo!r} is not served here")
            error.retryable = False
            raise error
        return f"/repos/{owner}/{name}"

    async def claim_job(self, event: JobEvent, *, runner_name: str, labels: Sequence[str]) -> Claim:
        """Generate a JIT runner named *runner_name* with this host's *labels*.

        Raises:
            ForgeConflict: the name is taken (HTTP 409).
            ForgeRateLimited: GitHub asked us to wait; ``retry_after``/``reset_at`` say how long.
            ForgeError: anything else, classified (``retryable`` says whether to retry).

        Cancellation: the registration request itself is shielded, so a runner GitHub
        created is always returned to the caller, which releases it.
        """
        names = [SELF_HOSTED, *labels]
        wanted = list(dict.fromkeys(label for label in names if label))[:_MAX_LABELS]
        scope = self._scope(event.repo)
        # Shielded: once GitHub has registered the runner, the caller must get the claim
        # (and so release it), or a registration leaks. Bounded by the client's timeout.
        response = await self._client.send_shielded(
            "POST",
            f"{scope}/actions/runners/generate-jitconfig",
            json={
                "name": runner_name,
                "runner_group_id": self._options.runner_group_id,
                "labels": wanted,
                "work_folder": self._options.work_folder,
            },
        )
        try:
            jit = msgspec.json.decode(response.content, type=JitConfig)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # GitHub may have registered the runner all the same: find it by name, delete it
            await self._delete_by_name(scope, runner_name)
            raise ForgeUnavailable(f"GitHub {self.name}: unreadable JIT config answer") from exc
        log.info(
            "github %s: JIT runner %s (id %s) for job %s",
            self.name,
            runner_name,
            jit.runner.id,
            event.job_id,
        )
        return Claim(
            runner_id=str(jit.runner.id),
            runner_name=jit.runner.name or runner_name,
            repo=event.repo,
            env={"RUNNER_ALLOW_RUNASROOT": "1"},
            # readable by the runner's own user, whatever uid the image runs as
            files=(
                ClaimFile(path=JITCONFIG_PATH, content=jit.encoded_jit_config.encode(), mode=0o444),
            ),
            entrypoint=RUNNER_ENTRYPOINT,
            workdir=RUNNER_WORKDIR,
            # Always the runner image, never the job's ``container:``: the sandbox must hold
            # the runner, and GitHub may hand this runner another queued job than *event*'s.
            image=self._options.default_image,
        )

    async def _delete_by_name(self, scope: str, runner_name: str) -> None:
        """Best effort, shielded: remove a runner whose id we never learnt."""
        with trio.move_on_after(RELEASE_TIMEOUT, shield=True):
            try:
                pages = await self._client.pages(f"{scope}/actions/runners", RunnersPage)
                named = [r for page in pages for r in page.runners if r.name == runner_name]
                for runner in named:
                    await self._client.send(
                        "DELETE", f"{scope}/actions/runners/{runner.id}", ok=(204, 404)
                    )
            except ForgeError as exc:
                log.warning(
                    "github %s: runner %s may be left over: %s", self.name, runner_name, exc
                )

    async def release_job(self, claim: Claim) -> None:
        """Delete the claim's runner at the scope it was created on; already gone is fine.

        Raises:
            ForgeUnavailable: GitHub still sees the runner busy, or could not be reached.
            ForgeError: the deletion was refused.
        """
        if not claim.runner_id:
            return
        scope = self._scope(claim.repo)
        response = await self._client.send(
            "DELETE", f"{scope}/actions/runners/{claim.runner_id}", ok=(204, 404, 422)
        )
        if response.status_code == 422:
            raise ForgeUnavailable(
                f"GitHub {self.name}: runner {claim.runner_name} is still busy; delete later"
            )

    async def fetch_job_image(self, event: JobEvent) -> str | None:
        """The job's ``container:`` image, or ``None`` (also on any failure, logged at debug).

        Claims name the runner image, so a sandbox never runs a job's container image: the
        actions runner inside runs ``container:`` jobs itself (which needs Docker).
        """
        try:
            return await self._fetch_job_image(event)
        except (EphemerdError, ValueError) as exc:
            log.debug("github %s: no image for job %s: %s", self.name, event.job_id, exc)
            return None

    async def _fetch_job_image(self, event: JobEvent) -> str | None:
        if not (event.repo and event.run_id and event.job_name):
            return None
        jobs = self._workflows.get(event.repo, event.run_id)
        if jobs is None:
            run = await self._client.get(f"/repos/{event.repo}/actions/runs/{event.run_id}", Run)
            sha = run.head_sha or self._head_sha(event)
            if not run.path or not sha:
                return None
            content = await self._client.get(
                f"/repos/{event.repo}/contents/{quote(run.path)}", WorkflowFile, params={"ref": sha}
            )
            try:
                jobs = job_images(decode_content(content.content))
            except ValueError:
                jobs = []  # a broken workflow stays broken for this run: do not fetch again
            self._workflows.put(event.repo, event.run_id, jobs)
        return find_image(jobs, event.job_name)

    @staticmethod
    def _head_sha(event: JobEvent) -> str:
        try:
            return msgspec.json.decode(event.raw, type=Job).head_sha
        except (msgspec.DecodeError, msgspec.ValidationError):
            return ""

    async def poll(self, config: PollConfig, events: trio.MemorySendChannel[JobEvent]) -> None:
        """Poll until cancelled; in webhook mode (``reconcile_only``) at the reconcile pace."""
        if config.reconcile_only:
            interval = self._options.reconcile_interval
        else:
            interval = self._options.poll_interval or config.interval
        await self._poller.run(events, interval=interval)

    async def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        return self._receiver.handle(request)

    async def register_webhooks(self, url: str) -> None:
        await self._hooks.register(url)

    async def deregister_webhooks(self) -> None:
        await self._hooks.deregister()

    def rate_limit_hint(self) -> RateLimitHint | None:
        return self._client.gate.hint

    async def stop(self) -> None:
        """Nothing to release: runners are released per claim, hooks by ``deregister_webhooks``."""


def _credentials(
    options: GitHubOptions,
    http: httpx.AsyncClient,
    gate: RateLimitGate,
    wall_clock: Callable[[], float],
) -> Credentials:
    if options.app is not None:
        return AppAuth(options.app, http, gate, wall_clock=wall_clock)
    return TokenAuth(options.token)


@asynccontextmanager
async def open_github_provider(
    options: GitHubOptions,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncGenerator[GitHubProvider, None]:
    """A ready provider for *options*; its HTTP client closes on exit.

    Args:
        options: the instance's options.
        transport: a custom httpx transport (tests, proxies).
        wall_clock: Unix time source, for App token expiry and rate-limit resets.

    Raises:
        ConfigError: the options are inconsistent (before anything is opened).
    """
    options.validate()
    gate = RateLimitGate(wall_clock=wall_clock)
    async with open_http_client(
        base_url=options.api_url.rstrip("/"), timeout=options.timeout, transport=transport
    ) as http:
        client = GitHubClient(http, _credentials(options, http, gate, wall_clock), gate)
        provider = GitHubProvider(options, client)
        try:
            yield provider
        finally:
            with trio.CancelScope(shield=True):
                await provider.stop()
