"""The ``workflow_job`` webhook receiver: authenticate first, parse second.

Order of checks, each with the answer GitHub gets:

1. not a POST → 405;
2. no secret configured → 503 (fail closed: an unauthenticated receiver would let anyone
   make us register runners);
3. ``X-Hub-Signature-256`` missing or not the HMAC-SHA256 of the raw body → 403, compared
   in constant time before a byte of the body is parsed;
4. a ``X-GitHub-Delivery`` already handled → 200, no events (GitHub redelivers, and a
   delivery may be replayed);
5. ``ping`` → 200; other events → 200, ignored;
6. a body that is not a ``workflow_job`` payload → 400;
7. queued jobs the policy refuses → 200, dropped with a debug log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import OrderedDict

import msgspec

from ephemerd.capabilities import JobAction, JobEvent, WebhookReply, WebhookRequest

from ._events import ACTIONS, job_event
from ._payloads import WorkflowJobDelivery
from ._policy import SELF_HOSTED, JobPolicy

__all__ = ["MAX_BODY", "WebhookReceiver", "signature"]

log = logging.getLogger(__name__)

MAX_BODY = 25 * 1024 * 1024
"""GitHub caps payloads at 25 MiB; anything larger is not GitHub."""


def signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for *body*."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _DeliveryLog:
    """A bounded memory of delivery ids; the oldest are forgotten first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, delivery: str) -> bool:
        return delivery in self._ids

    def add(self, delivery: str) -> None:
        self._ids[delivery] = None
        self._ids.move_to_end(delivery)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)


def _reply(status: int, text: str, events: tuple[JobEvent, ...] = ()) -> WebhookReply:
    return WebhookReply(status=status, body=text.encode() + b"\n", events=events)


class WebhookReceiver:
    """Turns authenticated ``workflow_job`` deliveries into ``JobEvent``s.

    Args:
        instance: the provider instance name, stamped on every event.
        secret: the hooks' HMAC secret; empty refuses everything with 503.
        policy: the instance's job policy, applied to queued jobs.
        remembered: how many delivery ids to keep for deduplication.
    """

    def __init__(
        self, instance: str, secret: str, policy: JobPolicy, *, remembered: int = 4096
    ) -> None:
        self._instance = instance
        self._secret = secret
        self._policy = policy
        self._seen = _DeliveryLog(remembered)

    def __repr__(self) -> str:
        return f"WebhookReceiver(instance={self._instance!r}, secret=<redacted>)"

    def authentic(self, request: WebhookRequest) -> bool:
        """Whether the signature over the raw body is ours (constant-time comparison)."""
        given = request.headers.get("x-hub-signature-256", "")
        expected = signature(self._secret, request.body)
        return hmac.compare_digest(given.encode(), expected.encode())

    def handle(self, request: WebhookRequest) -> WebhookReply:
        """Answer one delivery; never raises for bad input."""
        if request.method.upper() != "POST":
            return _reply(405, "method not allowed")
        if not self._secret:
            return _reply(503, "webhook secret not configured")
        if len(request.body) > MAX_BODY:
            return _reply(413, "payload too large")
        if not self.authentic(request):
            log.warning("github %s: webhook delivery with a bad signature refused", self._instance)
            return _reply(403, "bad signature")
        event = request.headers.get("x-github-event", "")
        delivery = request.headers.get("x-github-delivery", "")
        if delivery and delivery in self._seen:
            log.debug("github %s: duplicate delivery %s ignored", self._instance, delivery)
            return _reply(200, "duplicate delivery")
        if event == "ping":
            return _reply(200, "pong")
        if event != "workflow_job":
            return _reply(200, f"event {event or '(none)'} ignored")
        try:
            payload = msgspec.json.decode(request.body, type=WorkflowJobDelivery)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return _reply(400, "body is not a workflow_job payload")
        job, repository = payload.workflow_job, payload.repository
        if job is None or repository is None or not repository.full_name:
            return _reply(400, "workflow_job payload without a job or a repository")
        if delivery:
            self._seen.add(delivery)
        action = ACTIONS.get(payload.action)
        if action is None:
            return _reply(200, f"action {payload.action or '(none)'} ignored")
        repo = repository.full_name
        if action is JobAction.QUEUED:
            refusal = self._policy.refusal(repo, job.labels)
            if refusal is not None:
                log.debug("github %s: job %s not ours: %s", self._instance, job.id, refusal)
                return _reply(200, "job not for this instance")
        elif SELF_HOSTED not in {label.lower() for label in job.labels}:
            return _reply(200, "job not on a self-hosted runner")
        return _reply(200, "ok", (job_event(self._instance, action, job, repo),))
