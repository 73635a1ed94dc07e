"""verify_runner against the fake GitLab on loopback; load_system_id on a real data dir."""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from ephemerd._errors import (
    ForgeAuthError,
    ForgeError,
    ForgeProtocolError,
    ForgeRateLimited,
    ForgeUnavailable,
)
from ephemerd._http import open_http_client
from ephemerd._retry import RetryPolicy
from ephemerd.forges.gitlab import (
    VERIFY_RETRY,
    RunnerIdentity,
    custom_executor_info,
    load_system_id,
    verify_runner,
)
from tests.fakes.gitlab import Failure, FakeGitLab, open_fake_gitlab

TOKEN = "glrt-t0ps3cr3t-runner-token"
SYSTEM_ID = "s_0123456789ab"


@pytest.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with open_fake_gitlab() as gl:
        yield gl


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with open_http_client(http2=False) as c:
        yield c


async def verify(
    gitlab: FakeGitLab, client: httpx.AsyncClient, token: str = TOKEN, **kw: object
) -> RunnerIdentity:
    return await verify_runner(
        client,
        instance_url=gitlab.url + "/",
        token=token,
        system_id=SYSTEM_ID,
        **kw,  # type: ignore[arg-type]
    )


async def test_new_gitlab_answers_with_the_runner_identity(
    gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    runner = gitlab.app.add_runner(TOKEN, token_expires_at="2027-01-31T12:00:00.000Z")
    identity = await verify(gitlab, client)
    assert identity.id == runner.id
    assert identity.token == TOKEN
    assert identity.token_expires_at == datetime(2027, 1, 31, 12, tzinfo=UTC)
    assert TOKEN not in repr(identity)
    (request,) = gitlab.app.requests
    assert request.path == "/api/v4/runners/verify"
    assert request.headers["runner-token"] == "<redacted>"  # sent, and recorded redacted
    assert request.body["system_id"] == SYSTEM_ID
    info = request.body["info"]
    assert info["executor"] == "custom" and info["shell"] == "bash"
    features = info["features"]
    assert features["refspecs"] is True and features["cancel_gracefully"] is True
    # the custom executor supports neither image:, services: nor terminals
    assert features["image"] is False and features["services"] is False
    assert features["terminal"] is False and features["session"] is False


async def test_a_token_that_never_expires(gitlab: FakeGitLab, client: httpx.AsyncClient) -> None:
    gitlab.app.add_runner(TOKEN, token_expires_at="0001-01-01T00:00:00Z")  # Go's zero time
    assert (await verify(gitlab, client)).token_expires_at is None
    gitlab.app.runners[TOKEN].token_expires_at = None
    assert (await verify(gitlab, client)).token_expires_at is None


async def test_older_gitlab_answers_with_an_empty_body(
    gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    gitlab.app.add_runner(TOKEN)
    gitlab.app.legacy_verify = True
    assert await verify(gitlab, client) == RunnerIdentity(id=None, token=TOKEN)


async def test_plain_text_200_is_an_older_gitlab_too(
    gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    gitlab.app.failures.append(Failure(200, b"200", content_type="text/plain"))
    assert (await verify(gitlab, client)).id is None


async def test_revoked_token_is_one_clear_line_without_the_token(
    gitlab: FakeGitLab, client: httpx.AsyncClient
) -> None:
    gitlab.app.add_runner(TOKEN).revoked = True
    with pytest.raises(ForgeAuthError) as caught:
        await verify(gitlab, client)
    message = str(caught.value)
    assert "\n" not in message
    assert "HTTP 403" in message and "invalid" in message and "removed" in message
    assert TOKEN not in message
    assert gitlab.app.count() == 1  # never retried


async def test_unknown_token_is_refused_too(gitlab: FakeGitLab, client: httpx.AsyncClient) -> None:
    with pytest.raises(ForgeAuthError):
        await verify(gitlab, client, token="glrt-someone-else")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"id": "not a number"}', "application/json"),
        (b'{"id": 1, "token": ', "application/json"),
        (b"<html>surprise</html>", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'{"id": 1, "token_expires_at": "yesterday"}', "text/plain"),
    ],
)
async def test_garbage_is_a_protocol_error(
    gitlab: FakeGitLab, client: httpx.AsyncClient, body: bytes, content_type: str
) -> None:
    gitlab.app.failures.append(Failure(200, body, content_type=content_type))
    with pytest.raises(ForgeProtocolError) as caught:
        await verify(gitlab, client)
    assert "\n" not in str(caught.value)


async def test_not_a_gitlab_is_not_retried(gitlab: FakeGitLab, client: httpx.AsyncClient) -> None:
    with pytest.raises(ForgeError) as caught:
        await verify_runner(
            client, instance_url=gitlab.url + "/nope", token=TOKEN, system_id=SYSTEM_ID
        )
    assert "HTTP 404" in str(caught.value) and not caught.value.retryable
    assert gitlab.app.count() == 1


async def test_5xx_is_retried_on_the_ladder_then_succeeds(
    gitlab: FakeGitLab, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    gitlab.app.add_runner(TOKEN)
    gitlab.app.failures.append(Failure(502, b"<h1>502 Bad Gateway</h1>", "text/html", times=3))
    policy = RetryPolicy(schedule=(1.0, 2.0, 4.0), jitter=0.0, max_age=None, max_attempts=5)
    identity = await verify(gitlab, client, retry=policy)
    assert identity.token == TOKEN
    times = [r.at for r in gitlab.app.requests]
    assert [r.status for r in gitlab.app.requests] == [502, 502, 502, 200]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    assert gaps == [1.0, 2.0, 4.0]  # the ladder, not a storm


async def test_unavailable_gives_up_after_the_budget(
    gitlab: FakeGitLab, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    gitlab.app.add_runner(TOKEN)
    gitlab.app.failures.append(Failure(503, b"", times=100))
    began = trio.current_time()
    with pytest.raises(ForgeUnavailable) as caught:
        await verify(gitlab, client)
    assert "HTTP 503" in str(caught.value)
    assert VERIFY_RETRY.max_attempts is not None
    assert gitlab.app.count() == VERIFY_RETRY.max_attempts + 1
    # jittered 1+2+4+8+16 s: about half a minute, never a tight loop
    assert 0.8 * 31 <= trio.current_time() - began <= 1.2 * 31


async def test_rate_limit_waits_at_least_retry_after(
    gitlab: FakeGitLab, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    gitlab.app.add_runner(TOKEN)
    gitlab.app.failures.append(Failure(429, b"{}", headers={"retry-after": "20"}))
    await verify(gitlab, client)
    first, second = (r.at for r in gitlab.app.requests)
    assert second - first >= 20


async def test_rate_limit_surfaces_when_it_never_ends(
    gitlab: FakeGitLab, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    gitlab.app.failures.append(Failure(429, b"{}", times=100))
    policy = RetryPolicy(schedule=(1.0,), jitter=0.0, max_age=None, max_attempts=2)
    with pytest.raises(ForgeRateLimited):
        await verify(gitlab, client, retry=policy)
    assert gitlab.app.count() == 3


async def test_unreachable_gitlab_is_unavailable(
    client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    policy = RetryPolicy(schedule=(1.0,), jitter=0.0, max_age=None, max_attempts=1)
    with pytest.raises(ForgeUnavailable) as caught:
        await verify_runner(
            client,
            instance_url=f"http://127.0.0.1:{port}",
            token=TOKEN,
            system_id=SYSTEM_ID,
            retry=policy,
        )
    assert TOKEN not in str(caught.value)


def test_the_info_is_what_gitlab_runner_sends() -> None:
    encoded = msgspec.json.decode(msgspec.json.encode(custom_executor_info()))
    assert encoded["name"] == "ephemerd"
    assert encoded["architecture"] in {"amd64", "arm64", "arm", "386"} or encoded["architecture"]
    assert len(encoded["features"]) == 31


def test_system_id_is_stable_and_private(tmp_path: Path) -> None:
    path = tmp_path / "gitlab" / "gitlab.system_id"
    first = load_system_id(path)
    assert first[:2] in ("s_", "r_") and len(first) == 14
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_system_id(path) == first
    assert path.read_text().strip() == first


def test_a_mangled_system_id_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "system_id"
    path.write_text("s_short\n")
    fresh = load_system_id(path)
    assert fresh != "s_short" and len(fresh) == 14
    assert path.read_text().strip() == fresh


def test_an_unwritable_data_dir_still_gives_an_id(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    system_id = load_system_id(blocker / "system_id")  # its parent is a file
    assert len(system_id) == 14
    assert not os.path.exists(blocker / "system_id")
