"""Checking a runner authentication token with GitLab (``POST /api/v4/runners/verify``).

gitlab-runner does the job API itself (the custom executor only runs stages), so the one
call ephemerd makes is *verify*: at start-up and at install time, so a revoked token or a
removed runner is one clear error instead of a gitlab-runner that silently never gets work.

Answers, as GitLab gives them:

- 200 with ``{"id", "token", "token_expires_at"}`` (GitLab >= 15.x);
- 200 with an empty or plain-text body (older GitLab; gitlab-runner accepts it too);
- 403: the token is not valid, or the runner was removed (never retried);
- 5xx, 429 and network failures: retried on a short ladder, then ``ForgeUnavailable``.

The token travels in the body and the ``RUNNER-TOKEN`` header, never in the URL, and no
message or ``repr`` here contains it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import platform
import re
import secrets
import string
from datetime import datetime
from pathlib import Path

import httpx
import msgspec
import trio

from ephemerd import __version__
from ephemerd._errors import (
    ForgeAuthError,
    ForgeError,
    ForgeProtocolError,
    ForgeRateLimited,
    ForgeUnavailable,
)
from ephemerd._retry import Backoff, RetryPolicy
from ephemerd.forges._http import error_for_status, map_transport_errors

__all__ = [
    "VERIFY_RETRY",
    "FeaturesInfo",
    "RunnerIdentity",
    "RunnerInfo",
    "custom_executor_info",
    "load_system_id",
    "verify_runner",
]

log = logging.getLogger(__name__)

VERIFY_RETRY = RetryPolicy(schedule=(1.0, 2.0, 4.0, 8.0, 16.0), max_age=None, max_attempts=5)
"""At most six requests over about half a minute: enough to ride out a GitLab restart."""

_WHAT = "gitlab POST /api/v4/runners/verify"
_SYSTEM_ID = re.compile(r"[sr]_[0-9a-zA-Z]{12}")
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


class FeaturesInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The ``info.features`` booleans GitLab routes jobs by; everything off by default."""

    variables: bool = False
    image: bool = False
    services: bool = False
    artifacts: bool = False
    cache: bool = False
    fallback_cache_keys: bool = False
    shared: bool = False
    upload_multiple_artifacts: bool = False
    upload_raw_artifacts: bool = False
    session: bool = False
    terminal: bool = False
    refspecs: bool = False
    masking: bool = False
    proxy: bool = False
    raw_variables: bool = False
    artifacts_exclude: bool = False
    multi_build_steps: bool = False
    trace_reset: bool = False
    trace_checksum: bool = False
    trace_size: bool = False
    vault_secrets: bool = False
    cancelable: bool = False
    return_exit_code: bool = False
    service_variables: bool = False
    service_multiple_aliases: bool = False
    image_executor_opts: bool = False
    service_executor_opts: bool = False
    cancel_gracefully: bool = False
    native_steps_integration: bool = False
    two_phase_job_commit: bool = False
    job_inputs: bool = False


class RunnerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The ``info`` object a runner sends with verify and job requests."""

    name: str = "ephemerd"
    version: str = __version__
    platform: str = "linux"
    architecture: str = ""
    executor: str = "custom"
    shell: str = "bash"
    features: FeaturesInfo = FeaturesInfo()


def custom_executor_info() -> RunnerInfo:
    """What gitlab-runner's custom executor with the bash shell advertises, no more.

    gitlab-runner sends the same set with every job request; sending more here would make
    GitLab route jobs (``image:``, ``services:``, terminals) that the executor cannot honour.
    """
    machine = platform.machine()
    features = FeaturesInfo(
        # gitlab-runner's network client
        trace_reset=True,
        trace_checksum=True,
        trace_size=True,
        cancelable=True,
        cancel_gracefully=True,
        two_phase_job_commit=True,
        job_inputs=True,
        # the custom executor
        variables=True,
        shared=True,
        service_variables=True,
        # the bash shell
        artifacts=True,
        upload_multiple_artifacts=True,
        upload_raw_artifacts=True,
        cache=True,
        fallback_cache_keys=True,
        refspecs=True,  # without it GitLab withholds detached merge-request pipelines
        masking=True,
        raw_variables=True,
        artifacts_exclude=True,
        multi_build_steps=True,
        vault_secrets=True,
        return_exit_code=True,
    )
    return RunnerInfo(architecture=_GO_ARCH.get(machine, machine.lower()), features=features)


class RunnerIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """Who GitLab says the runner is.

    Attributes:
        id: the runner's id; ``None`` when an older GitLab answered with an empty body.
        token: the runner authentication token GitLab confirmed (never printed).
        token_expires_at: when the token expires; ``None`` if it does not, or GitLab
            did not say.
    """

    id: int | None
    token: str
    token_expires_at: datetime | None = None

    def __repr__(self) -> str:
        return (
            f"RunnerIdentity(id={self.id!r}, token=<redacted>, "
            f"token_expires_at={self.token_expires_at!r})"
        )


class _VerifyRequest(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    system_id: str
    info: RunnerInfo


class _VerifyReply(msgspec.Struct, frozen=True, kw_only=True):
    id: int | None = None
    token: str = ""
    token_expires_at: datetime | None = None


async def verify_runner(
    client: httpx.AsyncClient,
    *,
    instance_url: str,
    token: str,
    system_id: str,
    info: RunnerInfo | None = None,
    retry: RetryPolicy = VERIFY_RETRY,
) -> RunnerIdentity:
    """Ask GitLab whether *token* is a live runner authentication token.

    Args:
        client: from ``ephemerd._http.open_http_client``; its base URL is not used.
        instance_url: the GitLab base URL (a path prefix such as ``/gitlab`` is kept).
        token: the runner authentication token (``glrt-...``).
        system_id: this runner manager's id (see ``load_system_id``).
        info: what to advertise; ``custom_executor_info()`` by default.
        retry: the ladder for 5xx, 429 and network failures.

    Raises:
        ForgeAuthError: the token is invalid or the runner was removed (403).
        ForgeUnavailable: GitLab could not be reached or kept failing.
        ForgeProtocolError: GitLab answered something that is not the verify reply.
        ForgeError: another refusal (e.g. 404 when the URL is not a GitLab).

    Cancellation: safe at any point; nothing is created on GitLab.
    """
    url = instance_url.rstrip("/") + "/api/v4/runners/verify"
    body = msgspec.json.encode(
        _VerifyRequest(token=token, system_id=system_id, info=info or custom_executor_info())
    )
    backoff = Backoff(retry)
    while True:
        try:
            return await _verify_once(client, url, token, body)
        except (ForgeUnavailable, ForgeRateLimited) as error:
            delay = backoff.next_delay(trio.current_time())
            if delay is None:
                raise
            if isinstance(error, ForgeRateLimited) and error.retry_after:
                delay = max(delay, error.retry_after)
            log.info("%s; retrying in %.1fs", error, delay)
            await trio.sleep(delay)


async def _verify_once(
    client: httpx.AsyncClient, url: str, token: str, body: bytes
) -> RunnerIdentity:
    headers = {"Content-Type": "application/json", "RUNNER-TOKEN": token}
    async with map_transport_errors(_WHAT):
        response = await client.post(url, content=body, headers=headers)
        await response.aread()
    status = response.status_code
    if status in (401, 403):
        raise ForgeAuthError(
            f"{_WHAT}: HTTP {status}: GitLab refused the runner token: it is invalid, "
            "or the runner was removed; create a new runner and use its token"
        )
    if status != 200:
        raise _refusal(response)
    return _identity(response, token)


def _refusal(response: httpx.Response) -> ForgeError:
    message = ""
    try:
        said = msgspec.json.decode(response.content)
        if isinstance(said, dict):
            text = said.get("message") or said.get("error") or ""  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            message = " ".join(str(text).split())[:200]  # pyright: ignore[reportUnknownArgumentType]
    except msgspec.DecodeError:
        pass
    return error_for_status(
        response.status_code,
        what=_WHAT,
        message=message,
        retry_after=response.headers.get("retry-after", ""),
    )


def _identity(response: httpx.Response, token: str) -> RunnerIdentity:
    raw = response.content.strip()
    json_reply = "json" in response.headers.get("content-type", "")
    if not raw or not (json_reply or raw.startswith(b"{")):
        # Older GitLab: 200 with an empty or plain body means "valid", nothing more.
        return RunnerIdentity(id=None, token=token)
    try:
        reply = msgspec.json.decode(raw, type=_VerifyReply)
    except msgspec.DecodeError as exc:
        reason = " ".join(str(exc).split())
        raise ForgeProtocolError(f"{_WHAT}: the reply is not a verify answer ({reason})") from None
    expires = reply.token_expires_at
    if expires is not None and expires.year <= 1:
        expires = None  # Go's zero time: the token does not expire
    return RunnerIdentity(id=reply.id, token=reply.token or token, token_expires_at=expires)


def load_system_id(path: Path) -> str:
    """This host's runner-manager id, kept in *path* (0600) so it survives restarts.

    GitLab lists one "runner manager" per ``system_id``; a new id on every start would pile
    them up. Like gitlab-runner: ``s_`` + 12 hex characters derived from
    ``/etc/machine-id``, or ``r_`` + 12 random characters where there is none. A file
    with anything else in it is replaced. If the file cannot be written the id is still
    returned (and a warning logged), so a read-only data dir does not stop the daemon.
    """
    try:
        kept = path.read_text().strip()
    except OSError:
        kept = ""
    if _SYSTEM_ID.fullmatch(kept):
        return kept
    system_id = _new_system_id(path.name)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(system_id + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot keep the gitlab system id in %s: %s", path, exc.strerror)
    return system_id


def _new_system_id(salt: str) -> str:
    try:
        machine = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine = ""
    if machine:
        digest = hmac.new(machine.encode(), f"ephemerd:{salt}".encode(), hashlib.sha256)
        return "s_" + digest.hexdigest()[:12]
    alphabet = string.ascii_letters + string.digits
    return "r_" + "".join(secrets.choice(alphabet) for _ in range(12))
