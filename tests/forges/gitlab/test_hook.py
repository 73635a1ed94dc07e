"""Job Hook deliveries: as the fake GitLab sends them, directly and through the real intake."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import partial

import httpx
import pytest
import trio

from ephemerd.capabilities import (
    Claim,
    DaemonStatus,
    ExecutorRequest,
    JobAction,
    JobEvent,
    Webhook,
    WebhookReply,
    WebhookRequest,
)
from ephemerd.forges.gitlab import (
    MAX_BODY,
    GitLabOptions,
    GitLabProvider,
    GitLabWebhookProvider,
    HookReceiver,
    HookRejected,
    JobHook,
    job_event,
    parse_job_hook,
)
from ephemerd.intake import serve_intake
from tests.fakes.gitlab import FakeGitLab, FakeJob, open_fake_gitlab

TOKEN = "hook-token-5f2c"


@pytest.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with open_fake_gitlab() as gl:
        yield gl


def request_for(gitlab: FakeGitLab, job: FakeJob, token: str = TOKEN, **kw: str) -> WebhookRequest:
    headers, body = gitlab.delivery(job, token, **kw)
    return WebhookRequest(method="POST", headers=headers, body=body)


async def test_a_pending_job(gitlab: FakeGitLab) -> None:
    job = gitlab.new_job("acme/tools/app", "build", stage="compile", tags=["linux", "x64"])
    job.status = "pending"
    request = request_for(gitlab, job, event_uuid="uuid-1")
    assert parse_job_hook(request, token=TOKEN) == JobHook(
        job_id=job.id,
        project_path="acme/tools/app",
        project_id=job.project_id,
        pipeline_id=job.pipeline_id,
        job_name="build",
        stage="compile",
        status="pending",
        tags=("linux", "x64"),
        runner_id=None,
        runner_description=None,
        event_uuid="uuid-1",
    )


async def test_the_historical_build_hook_event(gitlab: FakeGitLab) -> None:
    job = gitlab.new_job("acme/app", "test")
    hook = parse_job_hook(request_for(gitlab, job, event="Build Hook"), token=TOKEN)
    assert hook is not None and hook.job_id == job.id


async def test_project_path_without_the_project_object(gitlab: FakeGitLab) -> None:
    """Older GitLab sends no ``project``: the path comes from the repository's web URL."""
    job = gitlab.new_job("acme/sub/app", "test")
    payload = gitlab.job_payload(job)
    del payload["project"], payload["build_tags"]
    headers, _ = gitlab.delivery(job, TOKEN)
    request = WebhookRequest(method="POST", headers=headers, body=json.dumps(payload).encode())
    hook = parse_job_hook(request, token=TOKEN)
    assert hook is not None
    assert hook.project_path == "acme/sub/app" and hook.tags == ()


@pytest.mark.parametrize("given", ["", "wrong", TOKEN + "x", TOKEN[:-1], TOKEN.upper()])
async def test_a_bad_token_is_refused_before_parsing(gitlab: FakeGitLab, given: str) -> None:
    job = gitlab.new_job("acme/app", "build")
    headers, _ = gitlab.delivery(job, given)
    if not given:
        del headers["x-gitlab-token"]
    # a body that would be a 400 if it were ever parsed
    request = WebhookRequest(method="POST", headers=headers, body=b"{not json")
    with pytest.raises(HookRejected) as caught:
        parse_job_hook(request, token=TOKEN)
    assert caught.value.status == 403
    assert caught.value.reply() == WebhookReply(status=403, body=b"bad token\n")


async def test_no_configured_token_refuses_everything(gitlab: FakeGitLab) -> None:
    job = gitlab.new_job("acme/app", "build")
    with pytest.raises(HookRejected) as caught:
        parse_job_hook(request_for(gitlab, job, token=""), token="")
    assert caught.value.status == 503


async def test_other_events_are_ignored(gitlab: FakeGitLab) -> None:
    job = gitlab.new_job("acme/app", "build")
    assert parse_job_hook(request_for(gitlab, job, event="Pipeline Hook"), token=TOKEN) is None
    assert parse_job_hook(request_for(gitlab, job, event="Push Hook"), token=TOKEN) is None


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"build_id": "x"}', b'{"object_kind": "build"}', b"\xff\xfe"],
)
async def test_malformed_bodies_are_a_one_line_400(gitlab: FakeGitLab, body: bytes) -> None:
    job = gitlab.new_job("acme/app", "build")
    headers, _ = gitlab.delivery(job, TOKEN)
    with pytest.raises(HookRejected) as caught:
        parse_job_hook(WebhookRequest(method="POST", headers=headers, body=body), token=TOKEN)
    assert caught.value.status == 400
    assert "\n" not in str(caught.value)


async def test_a_pipeline_payload_under_a_job_header_is_a_400(gitlab: FakeGitLab) -> None:
    job = gitlab.new_job("acme/app", "build")
    payload = gitlab.job_payload(job) | {"object_kind": "pipeline"}
    headers, _ = gitlab.delivery(job, TOKEN)
    request = WebhookRequest(method="POST", headers=headers, body=json.dumps(payload).encode())
    with pytest.raises(HookRejected) as caught:
        parse_job_hook(request, token=TOKEN)
    assert caught.value.status == 400


async def test_size_limit_and_method(gitlab: FakeGitLab) -> None:
    job = gitlab.new_job("acme/app", "build")
    headers, _ = gitlab.delivery(job, TOKEN)
    huge = WebhookRequest(method="POST", headers=headers, body=b" " * (MAX_BODY + 1))
    with pytest.raises(HookRejected) as caught:
        parse_job_hook(huge, token=TOKEN)
    assert caught.value.status == 413
    with pytest.raises(HookRejected) as caught:
        parse_job_hook(WebhookRequest(method="GET", headers=headers, body=b""), token=TOKEN)
    assert caught.value.status == 405


async def test_duplicate_delivery_uuid_is_answered_but_not_repeated(gitlab: FakeGitLab) -> None:
    receiver = HookReceiver("gl", TOKEN, remembered=2)
    job = gitlab.new_job("acme/app", "build")
    first, hook = receiver.handle(request_for(gitlab, job, event_uuid="u-1"))
    assert first.status == 200 and hook is not None
    again, hook = receiver.handle(request_for(gitlab, job, event_uuid="u-1"))
    assert again == WebhookReply(status=200, body=b"duplicate delivery\n") and hook is None
    # a refused delivery does not poison the UUID
    bad, _ = receiver.handle(request_for(gitlab, job, token="nope", event_uuid="u-2"))
    assert bad.status == 403
    assert receiver.handle(request_for(gitlab, job, event_uuid="u-2"))[1] is not None
    # the memory is bounded: the oldest UUID is forgotten first
    receiver.handle(request_for(gitlab, job, event_uuid="u-3"))
    assert receiver.handle(request_for(gitlab, job, event_uuid="u-1"))[1] is not None
    assert TOKEN not in repr(receiver)


async def test_job_events_for_the_scheduler(gitlab: FakeGitLab) -> None:
    job = gitlab.new_job("acme/app", "build", tags=["linux"])
    expected = {
        "created": JobAction.PENDING,
        "manual": None,
        "pending": JobAction.PENDING,
        "running": JobAction.IN_PROGRESS,
        "failed": JobAction.COMPLETED,
    }
    for status, action in expected.items():
        job.status = status
        hook = parse_job_hook(request_for(gitlab, job), token=TOKEN)
        assert hook is not None
        event = job_event("gl", hook)
        assert (event.action if event else None) is action
    job.status = "canceled"
    hook = parse_job_hook(request_for(gitlab, job), token=TOKEN)
    assert hook is not None
    event = job_event("gl", hook)
    assert event is not None
    assert (event.job_id, event.repo, event.labels, event.conclusion) == (
        str(job.id),
        "acme/app",
        ("linux",),
        "canceled",
    )


def _runner_name(gitlab: FakeGitLab, job: FakeJob, *, ours: bool = False) -> str:
    hook = parse_job_hook(request_for(gitlab, job), token=TOKEN)
    assert hook is not None
    event = job_event("gl", hook, ours=ours)
    assert event is not None
    return event.runner_name


async def test_the_runner_is_named_only_when_it_is_not_ours(gitlab: FakeGitLab) -> None:
    job = gitlab.new_job("acme/app", "build")
    job.status, job.runner = "running", {"id": 42, "description": "shared-7"}
    assert _runner_name(gitlab, job) == "shared-7"
    assert _runner_name(gitlab, job, ours=True) == ""
    job.status, job.runner = "success", {"id": 42, "description": None}
    assert _runner_name(gitlab, job) == "runner #42"
    job.status = "pending"  # a waiting job has no runner, whatever the payload says
    assert _runner_name(gitlab, job) == ""


async def test_webhook_provider_only_with_a_token(gitlab: FakeGitLab) -> None:
    plain = GitLabProvider(GitLabOptions(name="gl", token="glrt-x"))
    assert not isinstance(plain, Webhook)
    hooked = GitLabWebhookProvider(GitLabOptions(name="gl", token="glrt-x", webhook_token=TOKEN))
    assert isinstance(hooked, Webhook) and TOKEN not in repr(hooked.options)
    hooked.runner_id = 42
    job = gitlab.new_job("acme/app", "build")
    job.status = "pending"
    reply = await hooked.handle_webhook(request_for(gitlab, job))
    assert [(e.action, e.repo, e.job_name) for e in reply.events] == [
        (JobAction.PENDING, "acme/app", "build")
    ]
    job.status, job.runner = "running", {"id": 42, "description": "this host"}
    reply = await hooked.handle_webhook(request_for(gitlab, job))
    assert [(e.action, e.runner_name) for e in reply.events] == [(JobAction.IN_PROGRESS, "")]
    bad = await hooked.handle_webhook(request_for(gitlab, job, token="wrong"))
    assert (bad.status, bad.events) == (403, ())
    # a job prepared here is driven by gitlab-runner's executor calls alone
    hooked.expect(ExecutorRequest(job_id=str(job.id), variables={}, job_response=b""))
    job.status = "success"
    reply = await hooked.handle_webhook(request_for(gitlab, job))
    assert (reply.status, reply.events) == (200, ())
    await hooked.register_webhooks("http://unused")
    await hooked.deregister_webhooks()


# --- through the real intake, over HTTP ------------------------------------------------------


class _HookedProvider:
    """The smallest ``Webhook`` provider around ``HookReceiver``, as a GitLab provider has."""

    kind = "gitlab"
    default_images: Mapping[str, str] = {}

    def __init__(self, name: str, token: str) -> None:
        self.name = name
        self._receiver = HookReceiver(name, token)

    async def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        reply, hook = self._receiver.handle(request)
        event = job_event(self.name, hook) if hook else None
        if event is None:
            return reply
        return WebhookReply(status=reply.status, body=reply.body, events=(event,))

    async def register_webhooks(self, url: str) -> None:
        pass

    async def deregister_webhooks(self) -> None:
        pass

    async def claim_job(self, event: JobEvent, *, runner_name: str, labels: Sequence[str]) -> Claim:
        raise NotImplementedError

    async def release_job(self, claim: Claim) -> None:
        raise NotImplementedError

    async def fetch_job_image(self, event: JobEvent) -> str | None:
        return None

    async def stop(self) -> None:
        pass


async def test_job_lifecycle_through_the_intake(gitlab: FakeGitLab, nursery: trio.Nursery) -> None:
    submitted: list[JobEvent] = []

    async def submit(event: JobEvent) -> None:
        submitted.append(event)

    def status() -> DaemonStatus:
        return DaemonStatus(
            pid=1, version="t", started_at=0.0, active_jobs=0, parked_jobs=0, max_concurrent=1
        )

    address = await nursery.start(
        partial(
            serve_intake,
            listen="127.0.0.1:0",
            providers=[_HookedProvider("gl", TOKEN)],
            submit=submit,
            status=status,
            metrics=None,
        )
    )
    url = f"http://{address}/webhook/gl"
    job = gitlab.new_job("acme/app", "build", tags=["linux"])
    answers = await gitlab.job_lifecycle(url, TOKEN, job, final="success")
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [e.action for e in submitted] == [
        JobAction.PENDING,
        JobAction.IN_PROGRESS,
        JobAction.COMPLETED,
    ]
    assert submitted[0].runner_name == "" and submitted[1].runner_name == "ephemerd"

    forged = await gitlab.emit(url, job, "not-the-token")
    assert (forged.status_code, forged.text) == (403, "bad token\n")
    headers, body = gitlab.delivery(job, TOKEN, event_uuid="same")
    async with httpx.AsyncClient() as client:
        first = await client.post(url, content=body, headers=headers)
        second = await client.post(url, content=body, headers=headers)
        garbage = await client.post(
            url, content=b"{", headers={**headers, "x-gitlab-event-uuid": "g"}
        )
    assert (first.status_code, second.status_code, second.text) == (
        200,
        200,
        "duplicate delivery\n",
    )
    assert garbage.status_code == 400
    assert len(submitted) == 4  # the forged, duplicate and garbage deliveries added nothing
