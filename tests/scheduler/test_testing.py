"""The public test doubles behave as documented."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import trio

from ephemerd._errors import SandboxError, SandboxNotFound
from ephemerd.capabilities import (
    ExitReason,
    JobAction,
    Poll,
    Provider,
    RateLimitReporter,
    RunnerNameReporter,
    SandboxBackend,
    SandboxHandle,
    SandboxSpec,
    Webhook,
    WebhookRequest,
)
from ephemerd.testing import MemoryDrivingProvider, MemoryProvider, MemorySandbox


def test_protocols():
    provider = MemoryProvider()
    for proto in (Provider, Poll, Webhook, RunnerNameReporter, RateLimitReporter):
        assert isinstance(provider, proto)
    assert isinstance(MemorySandbox(log_dir=Path("/tmp")), SandboxBackend)
    assert "s3cret" not in repr(MemoryProvider(webhook_secret="s3cret"))
    assert not MemoryDrivingProvider().reports_runner_names


@pytest.mark.parametrize(
    ("argv", "seconds", "reason", "code"),
    [
        (("exit", "3"), 0, ExitReason.EXITED, 3),
        (("sleep", "5"), 5, ExitReason.EXITED, 0),
        (("sleep", "5", "exit", "2"), 5, ExitReason.EXITED, 2),
        (("fail",), 0, ExitReason.EXITED, 1),
        (("oom",), 0, ExitReason.OOM, 137),
        ((), 0, ExitReason.EXITED, 0),
        (("bash", "-c", "x"), 0, ExitReason.EXITED, 127),
        (("exit", "abc"), 0, ExitReason.EXITED, 127),
    ],
)
async def test_sandbox_scripts(tmp_path: Path, argv, seconds, reason, code, autojump_clock):
    backend = MemorySandbox(log_dir=tmp_path)
    handle = await backend.create(SandboxSpec(name="s", image="i", argv=argv))
    assert isinstance(handle, SandboxHandle)
    await handle.start()
    exit_ = await handle.wait()
    assert (trio.current_time(), exit_.reason, exit_.exit_code) == (seconds, reason, code)
    assert "exited" in handle.log_path.read_text()


async def test_sandbox_kill_exec_destroy(tmp_path: Path, autojump_clock):
    backend = MemorySandbox(log_dir=tmp_path)
    handle = await backend.create(SandboxSpec(name="s", image="i", argv=("sleep", "infinity")))
    await handle.start()
    chunks: list[bytes] = []

    async def sink(stream: str, chunk: bytes) -> None:
        chunks.append(chunk)

    assert await handle.exec(("exit", "4"), env={"A": "1"}, output=sink) == 4
    assert backend.execs[0].argv == ("exit", "4") and chunks == [b"exit 4\n"]
    await handle.kill(15)
    exit_ = await handle.wait()
    assert (exit_.reason, exit_.exit_code) == (ExitReason.KILLED, 143)
    assert await backend.list_own() == ["s"]
    await backend.destroy("s")
    await backend.destroy("s")  # idempotent
    assert await backend.list_own() == [] and backend.destroyed == ["s"]
    with pytest.raises(SandboxNotFound):
        await handle.wait()


async def test_sandbox_failure_injection(tmp_path: Path):
    backend = MemorySandbox(log_dir=tmp_path)
    backend.fail_next_creates(1)
    with pytest.raises(SandboxError):
        await backend.create(SandboxSpec(name="s", image="i"))
    backend.fail_next_starts(1)
    handle = await backend.create(SandboxSpec(name="s", image="i"))
    with pytest.raises(SandboxError):
        await handle.start()
    with pytest.raises(SandboxError, match="already exists"):
        await backend.create(SandboxSpec(name="s", image="i"))


async def test_webhook_auth_and_parse():
    provider = MemoryProvider("mem", webhook_secret="s3cret")
    body = msgspec.json.encode(
        [{"action": "queued", "job_id": "7", "repo": "o/r", "labels": ["linux"]}]
    )
    ok = await provider.handle_webhook(
        WebhookRequest(method="POST", headers={"x-ephemerd-test-token": "s3cret"}, body=body)
    )
    assert ok.status == 200
    (event,) = ok.events
    assert (event.instance, event.action, event.job_id, event.labels) == (
        "mem",
        JobAction.QUEUED,
        "7",
        ("linux",),
    )
    for headers in ({}, {"x-ephemerd-test-token": "nope"}):
        reply = await provider.handle_webhook(
            WebhookRequest(method="POST", headers=headers, body=body)
        )
        assert (reply.status, reply.events) == (403, ())
    bad = await provider.handle_webhook(
        WebhookRequest(method="POST", headers={"x-ephemerd-test-token": "s3cret"}, body=b"{")
    )
    assert bad.status == 400
    get = await provider.handle_webhook(WebhookRequest(method="GET", headers={}, body=b""))
    assert get.status == 405
    closed = MemoryProvider("m")  # no secret configured: refuse everything
    reply = await closed.handle_webhook(
        WebhookRequest(method="POST", headers={"x-ephemerd-test-token": ""}, body=body)
    )
    assert reply.status == 403
