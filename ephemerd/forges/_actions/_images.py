"""The ``container:`` image of a Forgejo/Gitea job, learnt before its runner starts.

With REST discovery the listed job names its run; the run names its workflow file and
commit (Forgejo: ``workflow_id`` + ``commit_sha``; Gitea: ``path`` + ``head_sha``); the
file, read at that commit from the forge's workflow directories, names the job's
container. Each run's file is read and parsed once (matrix legs of one run share it).

What cannot be known gives ``None`` and the sandbox runs the runner image, as before:
a job of the warm pool (its runner takes whatever job the server hands it, so the job is
unknown until then), an image written as an expression (warned), a file that is gone or
unreadable (warned). A forge that is down or rate-limiting raises instead, so the claim
is retried rather than the job run in the wrong image.

Only a job handle (Forgejo >= 15, ``one-job --handle``) binds a runner to its job. A
runner registered the Gitea way fetches whichever waiting job its labels fit, so two
jobs with the same ``runs-on`` queued at once may swap sandboxes, and with them images.
"""

from __future__ import annotations

import logging

import msgspec

from ephemerd._errors import ForgeError, ForgeRateLimited, ForgeUnavailable
from ephemerd.capabilities import JobEvent
from ephemerd.forges._workflow import (
    EXPRESSION_MARK,
    JobImages,
    WorkflowImages,
    decode_content,
    find_image,
    job_images,
)

from ._options import Flavour
from ._pool import WarmPool
from ._rest import GiteaJob, RestClient

__all__ = ["JobImageFinder"]

log = logging.getLogger(__name__)


def _listed_sha(event: JobEvent) -> str:
    try:
        return msgspec.json.decode(event.raw, type=GiteaJob).head_sha if event.raw else ""
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


class JobImageFinder:
    """Finds jobs' container images over REST, caching each run's workflow.

    Args:
        rest: the instance's REST client (an API token that may read the repositories).
        flavour: where the forge keeps workflow files.
        instance: the provider instance name, for messages.
        cache_size: runs whose parsed workflow is kept.
    """

    def __init__(
        self, rest: RestClient, *, flavour: Flavour, instance: str, cache_size: int = 256
    ) -> None:
        self._rest = rest
        self._flavour = flavour
        self._where = f"{flavour.kind} {instance}"
        self._runs = WorkflowImages(cache_size)

    async def image_of(self, event: JobEvent) -> str | None:
        """The image *event*'s job names with ``container:``, or ``None`` (see module doc).

        Raises:
            ForgeUnavailable, ForgeRateLimited: the forge could not answer now.
        """
        if WarmPool.is_slot(event.job_id) or not (event.repo and event.run_id and event.job_name):
            return None
        try:
            jobs = await self._jobs(event)
        except (ForgeUnavailable, ForgeRateLimited):
            raise
        except (ForgeError, ValueError) as exc:
            log.warning(
                "%s: job %s: cannot read its workflow, so it runs in the runner image: %s",
                self._where,
                event.job_id,
                exc,
            )
            return None
        image = find_image(jobs, event.job_name)
        if image is not None and EXPRESSION_MARK in image:
            log.warning(
                "%s: job %s: its container image %r is an expression ephemerd cannot "
                "evaluate, so it runs in the runner image",
                self._where,
                event.job_id,
                image,
            )
            return None
        return image

    async def _jobs(self, event: JobEvent) -> JobImages:
        cached = self._runs.get(event.repo, event.run_id)
        if cached is not None:
            return cached
        run = await self._rest.get_run(event.repo, event.run_id)
        sha = run.sha or _listed_sha(event)
        jobs: JobImages = []
        if run.workflow_file and sha:
            text = await self._read(event.repo, run.workflow_file, sha)
            if text is None:
                log.warning(
                    "%s: run %s: workflow %s not found at %s",
                    self._where,
                    event.run_id,
                    run.workflow_file,
                    sha[:12],
                )
            else:
                try:
                    jobs = job_images(text, keep_expressions=True)
                except ValueError as exc:  # broken for this run: do not read it again
                    log.warning("%s: run %s: %s", self._where, event.run_id, exc)
        self._runs.put(event.repo, event.run_id, jobs)
        return jobs

    async def _read(self, repo: str, name: str, sha: str) -> str | None:
        if "/" in name:
            paths = [name]
        else:
            paths = [f"{folder}/{name}" for folder in self._flavour.workflow_dirs]
        for path in paths:
            content = await self._rest.file_content(repo, path, ref=sha)
            if content is not None:
                return decode_content(content)
        return None
