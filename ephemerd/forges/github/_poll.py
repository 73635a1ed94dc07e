"""Polling GitHub for jobs, missing none.

A queued job can sit in a *queued* run or in an *in_progress* one (a ``needs:`` successor,
a later matrix leg), so both run listings are read, every page of them, and every page of
each run's jobs. In organisation scope every page of the org's repositories is listed
first. All of it is GET with ``If-None-Match``, so an idle cycle is a handful of 304s that
cost nothing of the primary quota.

Queued jobs are reported on every cycle (the scheduler deduplicates); in_progress and
completed jobs once per change, because they name the runner GitHub gave the job.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import trio

from ephemerd._errors import ForgeAuthError, ForgeError, ForgeNotFound, ForgeRateLimited
from ephemerd._retry import Backoff, RetryPolicy
from ephemerd.capabilities import JobAction, JobEvent

from ._client import GitHubClient
from ._events import ACTIONS, job_event
from ._payloads import Job, JobsPage, Repository, RunsPage
from ._policy import SELF_HOSTED, JobPolicy

__all__ = ["Poller"]

log = logging.getLogger(__name__)

_RUN_STATUSES = ("queued", "in_progress")
_FAILURE_POLICY = RetryPolicy.exponential(first=5.0, cap=300.0)


class Poller:
    """Finds jobs of one instance's repositories.

    Args:
        client: the instance's REST client.
        instance: the instance name stamped on events.
        owner: the user or organisation.
        repos: short repository names; empty lists the organisation's repositories.
        policy: the instance's job policy (applied to queued jobs).
        remembered: how many job states to remember for change detection.
    """

    def __init__(
        self,
        client: GitHubClient,
        *,
        instance: str,
        owner: str,
        repos: tuple[str, ...],
        policy: JobPolicy,
        remembered: int = 10_000,
    ) -> None:
        self._client = client
        self._instance = instance
        self._owner = owner
        self._repos = repos
        self._policy = policy
        self._reported: OrderedDict[int, str] = OrderedDict()
        self._remembered = remembered
        self.cycles = 0

    async def repositories(self) -> list[str]:
        """``owner/name`` of every repository to poll (archived ones have no jobs)."""
        if self._repos:
            return [f"{self._owner}/{name}" for name in self._repos]
        try:
            pages = await self._client.pages(
                f"/orgs/{self._owner}/repos", list[Repository], params={"type": "all"}
            )
        except ForgeNotFound as exc:
            raise ForgeNotFound(
                f"GitHub {self._instance}: {self._owner} is not an organisation these "
                "credentials can see; name its repos to serve them at repository scope"
            ) from exc
        return [
            repo.full_name or f"{self._owner}/{repo.name}"
            for page in pages
            for repo in page
            if not repo.archived
        ]

    async def jobs(self, repo: str) -> list[Job]:
        """Every job of *repo*'s queued and in_progress runs (latest attempt)."""
        run_ids: dict[int, None] = {}
        for status in _RUN_STATUSES:
            pages = await self._client.pages(
                f"/repos/{repo}/actions/runs", RunsPage, params={"status": status}
            )
            for page in pages:
                run_ids.update((run.id, None) for run in page.workflow_runs)
        found: list[Job] = []
        for run_id in run_ids:
            pages = await self._client.pages(
                f"/repos/{repo}/actions/runs/{run_id}/jobs", JobsPage, params={"filter": "latest"}
            )
            found.extend(job for page in pages for job in page.jobs)
        return found

    def _events(self, repo: str, jobs: list[Job]) -> list[JobEvent]:
        events: list[JobEvent] = []
        for job in jobs:
            action = ACTIONS.get(job.status)
            if action is None:
                continue  # waiting/pending/requested: not yet for any runner
            if action is JobAction.QUEUED:
                refusal = self._policy.refusal(repo, job.labels)
                if refusal is not None:
                    log.debug("github %s: job %s not ours: %s", self._instance, job.id, refusal)
                    continue
            else:
                if SELF_HOSTED not in {label.lower() for label in job.labels}:
                    continue
                if self._reported.get(job.id) == job.status:
                    continue
                self._reported[job.id] = job.status
                self._reported.move_to_end(job.id)
                while len(self._reported) > self._remembered:
                    self._reported.popitem(last=False)
            events.append(job_event(self._instance, action, job, repo))
        return events

    async def poll_once(self, events: trio.MemorySendChannel[JobEvent]) -> int:
        """One cycle over every repository; returns how many events were sent.

        A repository that fails is logged and skipped; the others are still polled.

        Raises:
            ForgeRateLimited: stop the cycle, GitHub asked us to wait.
            ForgeAuthError: the credentials are refused; polling on is pointless.
            ForgeError: every repository failed: GitHub is down, and the caller backs off.
        """
        sent = 0
        repos = await self.repositories()
        failed: ForgeError | None = None
        failures = 0
        for repo in repos:
            try:
                jobs = await self.jobs(repo)
            except (ForgeRateLimited, ForgeAuthError):
                raise
            except ForgeError as exc:
                log.warning("github %s: polling %s failed: %s", self._instance, repo, exc)
                failed, failures = exc, failures + 1
                continue
            for event in self._events(repo, jobs):
                await events.send(event)
                sent += 1
        self.cycles += 1
        if failed is not None and failures == len(repos):
            raise failed
        return sent

    async def run(self, events: trio.MemorySendChannel[JobEvent], *, interval: float) -> None:
        """Poll every *interval* seconds until cancelled, starting at once.

        Rate limits are waited out; other retryable failures back off exponentially.

        Raises:
            ForgeError: a failure that retrying cannot fix (bad credentials, no permission).
        """
        failures = Backoff(_FAILURE_POLICY)
        while True:
            delay = interval
            try:
                await self.poll_once(events)
                failures.reset()
            except ForgeRateLimited as exc:
                delay = max(exc.retry_after or interval, 1.0)
                log.warning("github %s: %s", self._instance, exc)
            except ForgeError as exc:
                if not exc.retryable:
                    raise
                delay = failures.next_delay(trio.current_time()) or interval
                log.warning(
                    "github %s: poll failed, next try in %.0fs: %s", self._instance, delay, exc
                )
            await trio.sleep(delay)
