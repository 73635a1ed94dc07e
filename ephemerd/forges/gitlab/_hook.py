"""GitLab Job Hook deliveries: authenticate first, parse second.

GitLab signs nothing: a hook carries its secret in ``X-Gitlab-Token`` as it is. The checks,
each with the answer GitLab gets (the same shape as the GitHub receiver's):

1. not a POST → 405;
2. no token configured → 503 (fail closed: anyone could otherwise feed us job events);
3. a body over ``MAX_BODY`` → 413;
4. ``X-Gitlab-Token`` missing or not ours → 403, compared in constant time before a byte of
   the body is parsed;
5. any event but ``Job Hook`` (or the historical ``Build Hook``) → 200, ignored;
6. a body that is not a job payload → 400;
7. a delivery UUID seen before → 200, ignored (GitLab retries, and a delivery may be
   replayed from its UI).

``parse_job_hook`` does 1-6 and raises ``HookRejected`` for the refusals; ``HookReceiver``
adds 7 and turns everything into a ``WebhookReply``.
"""

from __future__ import annotations

import hmac
import logging
from collections import OrderedDict
from urllib.parse import urlsplit

import msgspec

from ephemerd._errors import ForgeError
from ephemerd.capabilities import JobAction, JobEvent, WebhookReply, WebhookRequest

__all__ = [
    "JOB_EVENTS",
    "MAX_BODY",
    "HookReceiver",
    "HookRejected",
    "JobHook",
    "job_event",
    "parse_job_hook",
]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
"""A Job Hook is a few KiB; one MiB leaves room for long commit messages, not for abuse."""

JOB_EVENTS = frozenset({"Job Hook", "Build Hook"})
"""``X-Gitlab-Event`` values of job deliveries (``Build Hook`` before GitLab 9.3)."""


class HookRejected(ForgeError):
    """A delivery refused before (or while) parsing it; ``reply()`` is the answer to send.

    Args:
        status: the HTTP status GitLab gets (400, 403, 405, 413 or 503).
        reason: the short text of the answer body, also the error message.
    """

    retryable = False

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"gitlab webhook: {reason}")
        self.status = status
        self.reason = reason

    def reply(self) -> WebhookReply:
        return WebhookReply(status=self.status, body=self.reason.encode() + b"\n")


class JobHook(msgspec.Struct, frozen=True, kw_only=True):
    """One job status change, as a Job Hook told it.

    Attributes:
        job_id: the job (``build_id``).
        project_path: ``group/project``; from ``project.path_with_namespace`` when GitLab
            sends it, else from the repository's web URL.
        project_id: the project's numeric id.
        pipeline_id: the pipeline the job belongs to.
        job_name: the job's name in ``.gitlab-ci.yml``.
        stage: the job's stage.
        status: ``created``, ``pending``, ``running``, ``success``, ``failed``,
            ``canceled``, ``skipped``, ``manual``...
        tags: the job's own tags, when GitLab includes them (newer versions); empty else.
        runner_id: the runner that picked the job; ``None`` until one did.
        runner_description: that runner's description; ``None`` until one picked it.
        event_uuid: ``X-Gitlab-Event-UUID``, for deduplication ("" if absent).
    """

    job_id: int
    project_path: str
    project_id: int
    pipeline_id: int
    job_name: str
    stage: str
    status: str
    tags: tuple[str, ...] = ()
    runner_id: int | None = None
    runner_description: str | None = None
    event_uuid: str = ""


class _Runner(msgspec.Struct, frozen=True):
    id: int | None = None
    description: str | None = None


class _Project(msgspec.Struct, frozen=True):
    path_with_namespace: str = ""


class _Repository(msgspec.Struct, frozen=True):
    homepage: str = ""


class _Payload(msgspec.Struct, frozen=True):
    """The fields of a ``build`` payload ephemerd reads; the rest is ignored."""

    build_id: int
    build_name: str
    build_status: str
    project_id: int
    object_kind: str = "build"
    build_stage: str = ""
    pipeline_id: int = 0
    project_name: str = ""
    runner: _Runner | None = None
    project: _Project | None = None
    repository: _Repository | None = None
    # Job-level tags (GitLab MR 140760); the key has been seen under both names.
    build_tags: list[str] | None = None
    tags: list[str] | None = None


def _project_path(payload: _Payload) -> str:
    if payload.project and payload.project.path_with_namespace:
        return payload.project.path_with_namespace
    if payload.repository and payload.repository.homepage:
        path = urlsplit(payload.repository.homepage).path.strip("/")
        if path:
            return path
    # "Group / Sub / Project" is the display name, the last resort
    return "/".join(part.strip() for part in payload.project_name.split(" / "))


def parse_job_hook(request: WebhookRequest, *, token: str) -> JobHook | None:
    """The job event *request* carries; ``None`` for deliveries that are not job events.

    Args:
        request: the delivery; header names lower-case.
        token: the hook's secret token; "" refuses every delivery (503).

    Raises:
        HookRejected: the delivery must be refused; ``status`` says how (see the module).
    """
    if request.method.upper() != "POST":
        raise HookRejected(405, "method not allowed")
    if not token:
        raise HookRejected(503, "webhook token not configured")
    if len(request.body) > MAX_BODY:
        raise HookRejected(413, "payload too large")
    given = request.headers.get("x-gitlab-token", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise HookRejected(403, "bad token")
    if request.headers.get("x-gitlab-event", "") not in JOB_EVENTS:
        return None
    try:
        payload = msgspec.json.decode(request.body, type=_Payload)
    except msgspec.DecodeError as exc:
        detail = " ".join(str(exc).split())[:160]
        raise HookRejected(400, f"body is not a job hook payload ({detail})") from None
    if payload.object_kind != "build":
        raise HookRejected(400, f"body is a {payload.object_kind!r} payload, not a job hook")
    runner = payload.runner
    tags = payload.build_tags if payload.build_tags is not None else payload.tags
    return JobHook(
        job_id=payload.build_id,
        project_path=_project_path(payload),
        project_id=payload.project_id,
        pipeline_id=payload.pipeline_id,
        job_name=payload.build_name,
        stage=payload.build_stage,
        status=payload.build_status,
        tags=tuple(tags or ()),
        runner_id=runner.id if runner else None,
        runner_description=runner.description if runner else None,
        event_uuid=request.headers.get("x-gitlab-event-uuid", ""),
    )


class HookReceiver:
    """``parse_job_hook`` plus deduplication by delivery UUID, answering like GitHub's.

    Args:
        instance: the provider instance name, for log lines.
        token: the hook's secret token ("" refuses everything with 503).
        remembered: how many delivery UUIDs to keep; the oldest are forgotten first.
    """

    def __init__(self, instance: str, token: str, *, remembered: int = 4096) -> None:
        self._instance = instance
        self._token = token
        self._remembered = remembered
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"HookReceiver(instance={self._instance!r}, token=<redacted>)"

    def handle(self, request: WebhookRequest) -> tuple[WebhookReply, JobHook | None]:
        """The answer to send and the job event, if the delivery is a new, genuine one.

        Never raises for bad input.
        """
        try:
            hook = parse_job_hook(request, token=self._token)
        except HookRejected as rejected:
            if rejected.status == 403:
                log.warning("gitlab %s: webhook delivery with a bad token refused", self._instance)
            return rejected.reply(), None
        if hook is None:
            event = request.headers.get("x-gitlab-event", "") or "(none)"
            return WebhookReply(status=200, body=f"event {event} ignored\n".encode()), None
        if hook.event_uuid:
            if hook.event_uuid in self._seen:
                log.debug("gitlab %s: duplicate delivery %s", self._instance, hook.event_uuid)
                return WebhookReply(status=200, body=b"duplicate delivery\n"), None
            self._seen[hook.event_uuid] = None
            while len(self._seen) > self._remembered:
                self._seen.popitem(last=False)
        return WebhookReply(status=200, body=b"ok\n"), hook


_ACTIONS = {
    "created": JobAction.PENDING,
    "pending": JobAction.PENDING,
    "running": JobAction.IN_PROGRESS,
    "success": JobAction.COMPLETED,
    "failed": JobAction.COMPLETED,
    "canceled": JobAction.COMPLETED,
    "skipped": JobAction.COMPLETED,
}


def job_event(instance: str, hook: JobHook, *, ours: bool = False) -> JobEvent | None:
    """*hook* as the scheduler's ``JobEvent``; ``None`` for states it has no use for.

    A waiting job (``created``, ``pending``) is only PENDING: gitlab-runner decides which
    runner takes it, and this daemon's executor ``prepare`` announces it QUEUED when it is
    ours. ``manual``, ``scheduled`` and the like wait for a person or a time; the job is
    reported again once it is ``pending``.

    Args:
        instance: the provider instance name.
        hook: the parsed delivery.
        ours: the runner named in *hook* is this daemon's; the event then names no runner,
            so a job shown pending is not mistaken for one that runs elsewhere.
    """
    action = _ACTIONS.get(hook.status)
    if action is None:
        return None
    runner = ""
    if not ours and action is not JobAction.PENDING:
        runner = hook.runner_description or (f"runner #{hook.runner_id}" if hook.runner_id else "")
    return JobEvent(
        instance=instance,
        action=action,
        job_id=str(hook.job_id),
        run_id=str(hook.pipeline_id) if hook.pipeline_id else "",
        repo=hook.project_path,
        job_name=hook.job_name,
        labels=hook.tags,
        conclusion=hook.status if action is JobAction.COMPLETED else "",
        runner_name=runner,
    )
