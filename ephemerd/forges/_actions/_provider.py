"""The Forgejo/Gitea Actions provider: one class, parametrised by a ``Flavour``.

ephemerd never calls FetchTask: fetching assigns the task to the calling runner, so the
only identity that fetches is the runner inside the job's sandbox. What ephemerd does is
discover (REST listing, or a warm pool), create or register one ephemeral runner per
claim, and delete that runner once its sandbox is gone (404: the forge removed it first).

A job whose workflow names a ``container:`` image (learnt over REST before the runner is
created, see ``_images.py``) runs in that image, with the runner binary mounted read-only
from the runner image; every other job, and every warm-pool runner, runs in the runner
image, so the two images are never confused.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import asynccontextmanager

import httpx
import trio

from ephemerd._errors import ForgeAuthError, ForgeError, ForgeNotFound, ForgeRateLimited
from ephemerd._http import open_http_client
from ephemerd._proto.runner.v1 import Runner
from ephemerd._retry import Backoff, RetryPolicy
from ephemerd.capabilities import Claim, ImageMount, JobEvent, PollConfig

from ._connect import ConnectClient
from ._discovery import forgejo_job_of, list_waiting
from ._images import JobImageFinder
from ._models import ClaimModel, Discovery, choose_model
from ._options import ActionsOptions, Flavour
from ._pool import WarmPool
from ._rest import RestClient
from ._runner import (
    handle_argv,
    host_labels,
    in_job_image,
    label_names,
    registered_files,
    token_file,
)

__all__ = ["ActionsProvider", "open_actions_provider"]

log = logging.getLogger(__name__)

_FAILURE_POLICY = RetryPolicy.exponential(first=2.0, cap=300.0)


class ActionsProvider:
    """One Forgejo or Gitea instance. Build it with ``open_actions_provider``.

    Implements ``Provider`` and ``Poll`` from ``ephemerd.capabilities``.
    """

    def __init__(
        self, options: ActionsOptions, flavour: Flavour, connect: ConnectClient, rest: RestClient
    ) -> None:
        self._options = options
        self._flavour = flavour
        self.connect = connect
        self.rest = rest
        self.model: ClaimModel | None = None
        self.discovery: Discovery | None = None
        self.server_version = ""
        self._registration_token = options.registration_token
        self._pool = WarmPool(options.name, size=options.pool_size, unclaimed_ttl=60.0)
        self._warned_undeletable = False
        self.job_images = JobImageFinder(rest, flavour=flavour, instance=options.name)

    def __repr__(self) -> str:
        return f"ActionsProvider({self._flavour.kind}, {self._options!r})"

    @property
    def name(self) -> str:
        return self._options.name

    @property
    def kind(self) -> str:
        return self._flavour.kind

    @property
    def image(self) -> str:
        return self._options.runner_image or self._flavour.default_image

    @property
    def runner_path(self) -> str:
        """The runner binary's path in the runner image."""
        return self._options.runner_path or self._flavour.runner_path

    @property
    def default_images(self) -> Mapping[str, str]:
        return {"linux": self.image}

    @property
    def pool(self) -> WarmPool:
        return self._pool

    async def resolve_model(self) -> ClaimModel:
        """Ask the server its version (once) and pick the claim model.

        Raises:
            ForgeError: the server could not be asked; the next call asks again.
        """
        if self.model is not None:
            return self.model
        version = await self.rest.version()
        model = choose_model(self._flavour, self._options, version)
        self.server_version = version
        if self.discovery is None:
            rest = model is ClaimModel.HANDLE or self.rest.authenticated
            self.discovery = Discovery.REST_LIST if rest else Discovery.WARM_POOL
        self.model = model
        log.info(
            "%s %s: server %s; claim model %s, discovery %s",
            self.kind,
            self.name,
            version or "(unknown version)",
            model.value,
            self.discovery.value,
        )
        return model

    # --- discovery -----------------------------------------------------------------------

    async def poll_once(self, config: PollConfig) -> list[JobEvent]:
        """One discovery cycle: listed waiting jobs, or the warm pool's missing slots."""
        await self.resolve_model()
        if self.discovery is Discovery.REST_LIST:
            # the labels every runner of ours registers: the host's and the configured ones
            names = label_names([*config.labels, *self._options.labels])
            found: list[JobEvent] = []
            try:
                for scope in self._options.scopes():
                    found += await list_waiting(
                        self.rest,
                        listing=self._flavour.jobs_listing,
                        instance=self.name,
                        scope=scope,
                        labels=names if self._flavour.jobs_listing == "forgejo" else (),
                    )
                return found
            except ForgeNotFound:
                if self.model is ClaimModel.HANDLE:
                    raise
                log.warning("%s %s: no job listing on this server; warm pool", self.kind, self.name)
                self.discovery = Discovery.WARM_POOL
        return self._pool.refill(trio.current_time())

    async def poll(self, config: PollConfig, events: trio.MemorySendChannel[JobEvent]) -> None:
        """Discover every interval until cancelled; back off on failures.

        Raises:
            ForgeError: a failure retrying cannot fix (credentials refused).
        """
        interval = self._options.poll_interval or config.interval
        failures = Backoff(_FAILURE_POLICY)
        while True:
            delay = interval
            try:
                for event in await self.poll_once(config):
                    await events.send(event)
                failures.reset()
            except ForgeRateLimited as exc:
                delay = max(exc.retry_after or interval, 1.0)
                log.warning("%s %s: %s", self.kind, self.name, exc)
            except ForgeError as exc:
                if not exc.retryable:
                    raise
                delay = failures.next_delay(trio.current_time()) or interval
                log.warning(
                    "%s %s: poll failed, next in %.0fs: %s", self.kind, self.name, delay, exc
                )
            await trio.sleep(delay)

    # --- claims --------------------------------------------------------------------------

    async def claim_job(self, event: JobEvent, *, runner_name: str, labels: Sequence[str]) -> Claim:
        """Create (Forgejo >= 15) or register an ephemeral runner for *event*.

        Raises:
            ForgeAuthError: the registration token (or API token) was refused.
            ForgeError: anything else, classified.

        Cancellation: the creating request is shielded, so a runner the forge created is
        always returned in a claim (and so released by the caller).
        """
        model = await self.resolve_model()
        wanted = host_labels([*labels, *self._options.labels])
        scope = self._options.runner_scope(event.repo)
        # learnt before any runner exists: a forge that cannot answer fails the claim cleanly
        job_image = await self._job_image(event)
        if model is ClaimModel.HANDLE:
            job = forgejo_job_of(event)
            if job is None or not job.handle:
                error = ForgeError(f"{self.kind} {self.name}: job {event.job_id} has no handle")
                error.retryable = False
                raise error
            created = None
            with trio.CancelScope(shield=True):
                created = await self.rest.create_runner(scope, name=runner_name)
            assert created is not None  # a shielded scope is not cancelled
            log.info(
                "%s %s: runner %s (id %s) for job %s",
                self.kind,
                self.name,
                runner_name,
                created.id,
                event.job_id,
            )
            argv = handle_argv(
                handle=job.handle,
                url=self._options.url_for_runners,
                uuid=created.uuid,
                labels=wanted,
            )
            image, argv, mounts = self._placement(argv, job_image)
            return Claim(
                runner_id=str(created.id),
                runner_name=runner_name,
                repo=event.repo,
                files=(token_file(created.token),),
                entrypoint=argv,
                image=image,
                image_mounts=mounts,
            )
        runner = await self._register(scope, runner_name, wanted)
        if self._pool.is_slot(event.job_id):
            self._pool.claimed(event.job_id, runner.name or runner_name)
        log.info(
            "%s %s: runner %s (id %s) for job %s",
            self.kind,
            self.name,
            runner.name,
            runner.id,
            event.job_id,
        )
        image, argv, mounts = self._placement(self._flavour.runner_argv, job_image)
        return Claim(
            runner_id=str(runner.id),
            runner_name=runner.name or runner_name,
            repo=event.repo,
            files=registered_files(runner, address=self._options.url_for_runners, labels=wanted),
            entrypoint=argv,
            image=image,
            image_mounts=mounts,
        )

    async def _job_image(self, event: JobEvent) -> str | None:
        if not self.rest.authenticated:
            return None  # no REST discovery, so no run to read: the warm pool
        image = await self.job_images.image_of(event)
        if image is not None:
            log.info(
                "%s %s: job %s runs in its container image %s, the runner mounted from %s",
                self.kind,
                self.name,
                event.job_id,
                image,
                self.image,
            )
        return image

    def _placement(
        self, argv: tuple[str, ...], job_image: str | None
    ) -> tuple[str, tuple[str, ...], tuple[ImageMount, ...]]:
        """The sandbox image, the runner's argv and the image mounts of one claim."""
        if not job_image or job_image == self.image:
            return self.image, argv, ()
        argv, mount = in_job_image(argv, runner_image=self.image, runner_path=self.runner_path)
        return job_image, argv, (mount,)

    async def _register(self, scope: str, runner_name: str, labels: list[str]) -> Runner:
        """Register with the registration token; fetch a fresh one once if it was refused."""
        for attempt in (1, 2):
            token = self._registration_token
            try:
                if not token:
                    raise ForgeAuthError(f"{self.kind} {self.name}: no registration token")
                with trio.CancelScope(shield=True):
                    return await self.connect.register(
                        token=token,
                        name=runner_name,
                        labels=labels,
                        version=self._options.runner_version,
                        ephemeral=True,
                    )
            except ForgeAuthError:
                if attempt == 2 or not self.rest.authenticated:
                    raise
                self._registration_token = await self.rest.registration_token(scope)
        raise AssertionError("unreachable")  # pragma: no cover

    async def release_job(self, claim: Claim) -> None:
        """Delete the claim's runner unless the forge already did; 404 counts as done.

        Without an API token a runner cannot be deleted by ephemerd; an ephemeral runner is
        removed by the server after its one task.
        """
        self._pool.released(claim.runner_name)
        if not self.rest.authenticated:
            if not self._warned_undeletable:
                self._warned_undeletable = True
                log.warning(
                    "%s %s: no api_token, so runners that took no job stay registered",
                    self.kind,
                    self.name,
                )
            return
        scope = self._options.runner_scope(claim.repo)
        if claim.runner_id:
            await self.rest.delete_runner(scope, int(claim.runner_id))
            return
        for runner in await self.rest.list_runners(scope):
            if runner.name == claim.runner_name:
                await self.rest.delete_runner(scope, runner.id)

    async def fetch_job_image(self, event: JobEvent) -> str | None:
        """Always ``None``: the claim already names the sandbox image (the job's
        ``container:`` image or the runner image), since the runner must be placed too."""
        del event
        return None

    async def stop(self) -> None:
        """Nothing held: runners are released per claim."""


@asynccontextmanager
async def open_actions_provider(
    options: ActionsOptions,
    flavour: Flavour,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncGenerator[ActionsProvider, None]:
    """A provider for *options*; its HTTP client closes on exit. No request is made yet.

    Raises:
        ConfigError: the options are inconsistent.
    """
    options.validate(flavour)
    forge = f"{flavour.title} {options.name}"
    async with open_http_client(
        base_url=options.instance_url.rstrip("/"),
        timeout=options.timeout,
        transport=transport,
        http2=False,
    ) as http:
        provider = ActionsProvider(
            options,
            flavour,
            ConnectClient(http, forge=forge, codec=options.codec),
            RestClient(http, forge=forge, token=options.api_token),
        )
        try:
            yield provider
        finally:
            with trio.CancelScope(shield=True):
                await provider.stop()
