"""Webhook deliveries through a real server on 127.0.0.1 and a real HTTP client."""

from __future__ import annotations

import contextlib
import json
import logging

import httpx
import pytest
import trio

from ephemerd.capabilities import JobAction

from .conftest import MAX_BODY, Intake, sign


def _delivery(jobs: list[str]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"jobs": jobs}).encode()
    return body, {"X-Hub-Signature-256": sign(body), "X-GitHub-Event": "workflow_job"}


async def test_genuine_delivery_is_submitted_and_answered(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    body, headers = _delivery(["11", "12"])
    r = await client.post(f"{intake.url}/webhook/hooked", content=body, headers=headers)
    assert (r.status_code, r.content) == (200, b"accepted")
    assert [(e.instance, e.job_id, e.action) for e in intake.submitted] == [
        ("hooked", "11", JobAction.QUEUED),
        ("hooked", "12", JobAction.QUEUED),
    ]
    (request,) = intake.hook.requests
    assert request.method == "POST"
    assert request.body == body
    assert request.headers["x-github-event"] == "workflow_job"
    assert all(name == name.lower() for name in request.headers)
    assert intake.metrics.webhook_deliveries_total.get(instance="hooked", status="200") == 1


async def test_provider_rejection_is_passed_through_and_nothing_submitted(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    body, headers = _delivery(["1"])
    headers["X-Hub-Signature-256"] = sign(body, b"wrong")
    r = await client.post(f"{intake.url}/webhook/hooked", content=body, headers=headers)
    assert (r.status_code, r.content) == (403, b"bad signature")
    assert intake.submitted == []
    assert intake.metrics.webhook_deliveries_total.get(instance="hooked", status="403") == 1


async def test_declared_oversize_body_gets_413_and_handler_never_runs(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    body = b"x" * (MAX_BODY + 1)
    r = await client.post(f"{intake.url}/webhook/hooked", content=body)
    assert r.status_code == 413
    assert r.headers["connection"] == "close"  # the unread body is not waited for
    assert intake.hook.requests == []
    assert intake.metrics.webhook_deliveries_total.get(instance="hooked", status="413") == 1
    # A body of exactly the limit is accepted.
    body = b"y" * MAX_BODY
    headers = {"X-Hub-Signature-256": sign(body)}
    r = await client.post(f"{intake.url}/webhook/hooked", content=body, headers=headers)
    assert r.status_code == 400  # reached the provider, which could not parse it
    assert len(intake.hook.requests) == 1


async def test_chunked_oversize_body_gets_413_and_handler_never_runs(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    async def chunks():
        for _ in range(4):
            yield b"z" * (MAX_BODY // 2)

    r = await client.post(f"{intake.url}/webhook/hooked", content=chunks())
    assert r.status_code == 413
    assert intake.hook.requests == []


async def _open(intake: Intake) -> trio.SocketStream:
    host, _, port = intake.address.rpartition(":")
    return await trio.open_tcp_stream(host, int(port))


async def _read_until_closed(stream: trio.SocketStream) -> bytes:
    received = b""
    while chunk := await stream.receive_some():
        received += chunk
    return received


async def _send_ignoring_close(stream: trio.SocketStream, data: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError):  # the server closed first
        await stream.send_all(data)


@pytest.mark.parametrize("flood", [MAX_BODY * 2, 4 * 1024 * 1024], ids=["small", "flood"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_413_comes_without_the_rest_of_the_body_being_sent(
    intake: Intake, client: httpx.AsyncClient, declared: bool, flood: int
) -> None:
    """The server answers and closes while the client still has most of 100 MiB to send.

    The flood variant fills the server's queue of body chunks before the answer goes out.
    """
    stream = await _open(intake)
    framing = (
        f"Content-Length: {100 * 1024 * 1024}\r\n" if declared else "Transfer-Encoding: chunked\r\n"
    )
    head = f"POST /webhook/hooked HTTP/1.1\r\nHost: x\r\n{framing}\r\n".encode()
    piece = b"a" * flood
    if not declared:
        piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_send_ignoring_close, stream, head + piece)
        with trio.fail_after(30):
            reply = await _read_until_closed(stream)
    await stream.aclose()
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert intake.hook.requests == []
    # The server is still there for the next delivery.
    body, headers = _delivery(["1"])
    r = await client.post(f"{intake.url}/webhook/hooked", content=body, headers=headers)
    assert r.status_code == 200


async def test_client_gone_mid_body_is_harmless(intake: Intake, client: httpx.AsyncClient) -> None:
    stream = await _open(intake)
    await stream.send_all(
        b"POST /webhook/hooked HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part"
    )
    await stream.aclose()
    body, headers = _delivery(["2"])
    r = await client.post(f"{intake.url}/webhook/hooked", content=body, headers=headers)
    assert r.status_code == 200
    assert [e.job_id for e in intake.submitted] == ["2"]
    assert len(intake.hook.requests) == 1


async def test_handler_exception_gives_500_one_log_line_and_server_keeps_serving(
    intake: Intake, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    intake.hook.mode = "raise"
    body, headers = _delivery(["1"])
    with caplog.at_level(logging.ERROR, logger="ephemerd.intake"):
        r = await client.post(f"{intake.url}/webhook/hooked", content=body, headers=headers)
    assert r.status_code == 500
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "\n" not in message and "RuntimeError: handler blew up with a second line" in message
    assert errors[0].exc_info is None
    assert intake.submitted == []
    assert intake.metrics.webhook_deliveries_total.get(instance="hooked", status="500") == 1

    intake.hook.mode = "ok"
    r = await client.post(f"{intake.url}/webhook/hooked", content=body, headers=headers)
    assert r.status_code == 200


async def test_invalid_reply_gives_500(intake: Intake, client: httpx.AsyncClient) -> None:
    intake.hook.mode = "bad_reply"
    r = await client.post(f"{intake.url}/webhook/hooked", content=b"{}")
    assert r.status_code == 500


async def test_submit_failure_gives_500(intake: Intake, client: httpx.AsyncClient) -> None:
    intake.submit_fails = True
    body, headers = _delivery(["1"])
    r = await client.post(f"{intake.url}/webhook/hooked", content=body, headers=headers)
    assert r.status_code == 500


async def test_events_for_another_instance_are_dropped(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    intake.hook.mode = "foreign"
    body, headers = _delivery(["1"])
    r = await client.post(f"{intake.url}/webhook/hooked", content=body, headers=headers)
    assert r.status_code == 200
    assert intake.submitted == []


async def test_unknown_instance_is_404_and_poll_only_provider_has_no_route(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    for path in ("/webhook/nobody", "/webhook/polled", "/webhook/", "/webhook/hooked/extra"):
        r = await client.post(f"{intake.url}{path}", content=b"{}")
        assert r.status_code == 404, path
    assert intake.hook.requests == []
    # The client-chosen path never becomes a label value.
    assert intake.metrics.webhook_deliveries_total.get(instance="", status="404") == 4
    assert "nobody" not in intake.metrics.render()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_non_post_on_webhook_is_405(
    intake: Intake, client: httpx.AsyncClient, method: str
) -> None:
    r = await client.request(method, f"{intake.url}/webhook/hooked")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert intake.hook.requests == []


async def test_hanging_handler_gives_503(
    intake: Intake, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    intake.hook.mode = "hang"
    r = await client.post(f"{intake.url}/webhook/hooked", content=b"{}")
    assert r.status_code == 503


async def test_slow_body_gives_408(intake: Intake, autojump_clock: trio.testing.MockClock) -> None:
    stream = await _open(intake)
    await stream.send_all(
        b"POST /webhook/hooked HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nslow"
    )
    with trio.fail_after(120):
        reply = await _read_until_closed(stream)
    await stream.aclose()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert intake.hook.requests == []
