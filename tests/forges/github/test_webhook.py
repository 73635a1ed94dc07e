"""The workflow_job receiver, fed by the fake's signed deliveries over real HTTP."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ephemerd.capabilities import JobAction, WebhookRequest
from ephemerd.forges.github import GitHubProvider
from tests.fakes.github import FakeGitHub, sign

from .conftest import SECRET, open_intake, provider_for

SH = ["self-hosted", "linux"]


async def test_queued_delivery_becomes_an_event(fake: FakeGitHub) -> None:
    run = fake.world.add_run("acme/app", [("build", SH)])
    job = run.jobs[0]
    async with provider_for(fake) as provider, open_intake(provider) as intake:
        reply = await fake.emit(intake.url, "workflow_job", fake.workflow_job(job), SECRET)
    assert reply.status_code == 200
    (event,) = intake.events
    assert (event.action, event.job_id, event.run_id, event.repo, event.labels) == (
        JobAction.QUEUED,
        str(job.id),
        str(run.id),
        "acme/app",
        tuple(SH),
    )


async def test_bad_or_missing_signature_is_403_and_no_event(fake: FakeGitHub) -> None:
    job = fake.world.add_run("acme/app", [("build", SH)]).jobs[0]
    payload = fake.workflow_job(job)
    async with provider_for(fake) as provider, open_intake(provider) as intake:
        wrong = await fake.emit(intake.url, "workflow_job", payload, "not-the-secret")
        missing = await fake.emit(intake.url, "workflow_job", payload, SECRET, signature="")
        garbage = await fake.emit(
            intake.url, "workflow_job", payload, SECRET, signature="sha256=zz"
        )
        sha1 = await fake.emit(intake.url, "workflow_job", payload, SECRET, signature="sha1=00")
    assert [r.status_code for r in (wrong, missing, garbage, sha1)] == [403, 403, 403, 403]
    assert intake.events == []


async def test_signature_is_checked_before_the_body_is_parsed(fake: FakeGitHub) -> None:
    async with provider_for(fake) as provider:
        forged = await provider.handle_webhook(
            WebhookRequest(
                method="POST",
                headers={"x-github-event": "workflow_job", "x-hub-signature-256": "sha256=00"},
                body=b"{not json",
            )
        )
        genuine = await provider.handle_webhook(
            WebhookRequest(
                method="POST",
                headers={
                    "x-github-event": "workflow_job",
                    "x-hub-signature-256": sign(SECRET, b"{not json"),
                },
                body=b"{not json",
            )
        )
    assert (forged.status, genuine.status) == (403, 400)


async def test_no_secret_fails_closed_with_503(fake: FakeGitHub) -> None:
    job = fake.world.add_run("acme/app", [("build", SH)]).jobs[0]
    async with provider_for(fake, webhook_secret="") as provider, open_intake(provider) as intake:
        reply = await fake.emit(intake.url, "workflow_job", fake.workflow_job(job), "")
    assert reply.status_code == 503
    assert intake.events == []


async def test_duplicate_delivery_gives_one_event(fake: FakeGitHub) -> None:
    job = fake.world.add_run("acme/app", [("build", SH)]).jobs[0]
    payload = fake.workflow_job(job)
    async with provider_for(fake) as provider, open_intake(provider) as intake:
        first = await fake.emit(intake.url, "workflow_job", payload, SECRET, delivery_id="d-1")
        again = await fake.emit(intake.url, "workflow_job", payload, SECRET, delivery_id="d-1")
        other = await fake.emit(intake.url, "workflow_job", payload, SECRET, delivery_id="d-2")
    assert [r.status_code for r in (first, again, other)] == [200, 200, 200]
    assert len(intake.events) == 2  # d-2 is a distinct delivery; the scheduler dedups jobs


async def test_ping_other_events_and_methods(fake: FakeGitHub) -> None:
    async with provider_for(fake) as provider, open_intake(provider) as intake:
        ping = await fake.emit(intake.url, "ping", {"zen": "Keep it simple.", "hook_id": 1}, SECRET)
        push = await fake.emit(intake.url, "push", {"ref": "refs/heads/main"}, SECRET)
        waiting = await fake.emit(
            intake.url,
            "workflow_job",
            {
                "action": "waiting",
                "workflow_job": {"id": 1, "labels": SH},
                "repository": {"full_name": "acme/app"},
            },
            SECRET,
        )
        get = await provider.handle_webhook(WebhookRequest(method="GET", headers={}, body=b""))
    assert (ping.status_code, push.status_code, waiting.status_code, get.status) == (
        200,
        200,
        200,
        405,
    )
    assert intake.events == []


async def test_bad_json_or_shape_is_400(fake: FakeGitHub) -> None:
    async with provider_for(fake) as provider:

        async def deliver(body: bytes) -> int:
            headers = {"x-github-event": "workflow_job", "x-hub-signature-256": sign(SECRET, body)}
            reply = await provider.handle_webhook(
                WebhookRequest(method="POST", headers=headers, body=body)
            )
            return reply.status

        assert await deliver(b"[1, 2") == 400
        assert await deliver(b'{"action": "queued"}') == 400
        assert await deliver(b'{"action": "queued", "workflow_job": {"id": "x"}}') == 400


async def test_policy_applies_to_queued_deliveries(fake: FakeGitHub) -> None:
    run = fake.world.add_run("acme/app", [("hosted", ["ubuntu-latest"]), ("plain", SH)])
    foreign = fake.world.add_run("acme/other", [("x", SH)])
    async with (
        provider_for(fake, required_labels=("gpu",)) as provider,
        open_intake(provider) as intake,
    ):
        for job in [*run.jobs, *foreign.jobs]:
            reply = await fake.emit(intake.url, "workflow_job", fake.workflow_job(job), SECRET)
            assert reply.status_code == 200
    assert intake.events == []


async def fungible_round(fake: FakeGitHub, provider: GitHubProvider, url: str) -> None:
    """Two jobs, two JIT runners; GitHub hands each runner the *other* job."""
    from ephemerd.capabilities import JobEvent

    run = fake.world.add_run("acme/app", [("a", SH), ("b", SH)])
    job_a, job_b = run.jobs
    for job in (job_a, job_b):
        await fake.emit(url, "workflow_job", fake.workflow_job(job), SECRET)
    event_b = JobEvent(
        instance="gh", action=JobAction.QUEUED, job_id=str(job_b.id), repo="acme/app"
    )
    event_a = JobEvent(
        instance="gh", action=JobAction.QUEUED, job_id=str(job_a.id), repo="acme/app"
    )
    # the runner created for b connects first and is given a (the oldest queued job)
    await provider.claim_job(event_a, runner_name="runner-for-a", labels=SH)
    await provider.claim_job(event_b, runner_name="runner-for-b", labels=SH)
    assert fake.world.connect("runner-for-b") is job_a
    assert fake.world.connect("runner-for-a") is job_b
    for job in (job_a, job_b):
        await fake.emit(url, "workflow_job", fake.workflow_job(job, "in_progress"), SECRET)
    fake.world.complete(job_a.id)
    await fake.emit(url, "workflow_job", fake.workflow_job(job_a, "completed"), SECRET)


async def test_in_progress_and_completed_carry_the_runner_github_chose(fake: FakeGitHub) -> None:
    async with provider_for(fake) as provider, open_intake(provider) as intake:
        assert provider.reports_runner_names is True
        await fungible_round(fake, provider, intake.url)
    started = [
        (e.job_name, e.runner_name) for e in intake.events if e.action is JobAction.IN_PROGRESS
    ]
    assert started == [("a", "runner-for-b"), ("b", "runner-for-a")]
    (done,) = [e for e in intake.events if e.action is JobAction.COMPLETED]
    assert (done.job_name, done.runner_name, done.conclusion) == ("a", "runner-for-b", "success")
    # the completed job's runner removed itself, as JIT runners do
    assert [r.name for r in fake.world.live_runners()] == ["runner-for-a"]


async def test_cancelled_before_pickup_completes_without_a_runner(fake: FakeGitHub) -> None:
    job = fake.world.add_run("acme/app", [("build", SH)]).jobs[0]
    async with provider_for(fake) as provider, open_intake(provider) as intake:
        fake.world.complete(job.id, "cancelled")
        await fake.emit(intake.url, "workflow_job", fake.workflow_job(job, "completed"), SECRET)
    (event,) = intake.events
    assert (event.action, event.runner_name, event.conclusion) == (
        JobAction.COMPLETED,
        "",
        "cancelled",
    )


async def test_secret_is_not_in_reprs(fake: FakeGitHub) -> None:
    async with provider_for(fake) as provider:
        text = repr(provider) + repr(provider._receiver)  # pyright: ignore[reportPrivateUsage]
    assert SECRET not in text
    assert json.dumps(SECRET) not in text


async def test_forged_delivery_does_not_poison_dedup(fake: FakeGitHub) -> None:
    job = fake.world.add_run("acme/app", [("build", SH)]).jobs[0]
    payload = fake.workflow_job(job)
    async with provider_for(fake) as provider, open_intake(provider) as intake:
        forged = await fake.emit(intake.url, "workflow_job", payload, "x", delivery_id="d-1")
        genuine = await fake.emit(intake.url, "workflow_job", payload, SECRET, delivery_id="d-1")
    assert (forged.status_code, genuine.status_code) == (403, 200)
    assert len(intake.events) == 1


def test_delivery_memory_is_bounded() -> None:
    from ephemerd.forges.github._policy import JobPolicy
    from ephemerd.forges.github._webhook import WebhookReceiver

    receiver = WebhookReceiver("gh", SECRET, JobPolicy(owner="acme"), remembered=2)
    body = json.dumps(
        {
            "action": "queued",
            "workflow_job": {"id": 7, "run_id": 1, "labels": SH},
            "repository": {"full_name": "acme/app"},
        }
    ).encode()

    def deliver(delivery: str) -> int:
        headers = {
            "x-github-event": "workflow_job",
            "x-github-delivery": delivery,
            "x-hub-signature-256": sign(SECRET, body),
        }
        return len(
            receiver.handle(WebhookRequest(method="POST", headers=headers, body=body)).events
        )

    assert [deliver(d) for d in ("a", "b", "a", "c", "a")] == [1, 1, 0, 1, 1]


@settings(max_examples=200, deadline=None)
@given(body=st.binary(min_size=1, max_size=512), flip=st.integers(min_value=0))
def test_any_change_to_a_signed_body_is_refused(body: bytes, flip: int) -> None:
    from ephemerd.forges.github._policy import JobPolicy
    from ephemerd.forges.github._webhook import WebhookReceiver

    receiver = WebhookReceiver("gh", SECRET, JobPolicy(owner="acme"))
    headers = {"x-github-event": "ping", "x-hub-signature-256": sign(SECRET, body)}
    assert receiver.handle(WebhookRequest(method="POST", headers=headers, body=body)).status == 200
    index = flip % len(body)
    tampered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
    reply = receiver.handle(WebhookRequest(method="POST", headers=headers, body=tampered))
    assert reply.status == 403
