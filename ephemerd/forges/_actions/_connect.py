"""The ConnectRPC client of ``runner.v1.RunnerService`` and ``ping.v1.PingService``.

Connect unary calls are plain HTTP POSTs to ``{instance}/api/actions/{service}/{method}``
with a JSON or binary protobuf body; the answer uses the same codec. Every call except
Register and Ping carries the calling runner's ``x-runner-uuid``/``x-runner-token``.

ephemerd itself only pings and registers: fetching a task *claims* it for the calling
runner, so FetchTask and FetchSingleTask are for the runner that executes the task (the
stand-in runner of the tests uses this client), never for ephemerd's own identity.
"""

from __future__ import annotations

from typing import TypeVar

import betterproto
import httpx
import msgspec

from ephemerd._errors import ForgeProtocolError
from ephemerd._proto.ping.v1 import PingRequest, PingResponse
from ephemerd._proto.runner.v1 import (
    DeclareRequest,
    DeclareResponse,
    FetchSingleTaskRequest,
    FetchSingleTaskResponse,
    FetchTaskRequest,
    FetchTaskResponse,
    RegisterRequest,
    RegisterResponse,
    Runner,
    UpdateLogRequest,
    UpdateLogResponse,
    UpdateTaskRequest,
    UpdateTaskResponse,
)

from ._codec import JSON_TYPE, PROTO_TYPE, CodecError, decode_message, encode_message
from ._wire import connect_error, map_transport_errors

__all__ = ["RUNNER_SERVICE", "ConnectClient", "RunnerCredentials"]

RUNNER_SERVICE = "runner.v1.RunnerService"
PING_SERVICE = "ping.v1.PingService"
MAX_ANSWER = 16 * 1024 * 1024
"""Bytes an answer may have; a task payload is far smaller."""

_M = TypeVar("_M", bound=betterproto.Message)


class RunnerCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """A registered runner's identity; the token is redacted from every repr."""

    uuid: str
    token: str

    def __repr__(self) -> str:
        return f"RunnerCredentials(uuid={self.uuid!r}, token=<redacted>)"


class ConnectClient:
    """Typed Connect calls against one instance.

    Args:
        http: a client whose ``base_url`` is the instance URL.
        forge: how messages name the server (``Forgejo eu``).
        codec: ``application/json`` (default; keys on names, so fields whose numbers are
            unverified still work) or ``application/proto``.
    """

    def __init__(self, http: httpx.AsyncClient, *, forge: str, codec: str = JSON_TYPE) -> None:
        if codec not in (JSON_TYPE, PROTO_TYPE):
            raise ValueError(f"unknown Connect codec {codec!r}")
        self._http = http
        self._forge = forge
        self.codec = codec
        self.calls = 0

    async def call(
        self,
        service: str,
        method: str,
        request: betterproto.Message,
        answer: type[_M],
        *,
        credentials: RunnerCredentials | None = None,
        headers: dict[str, str] | None = None,
    ) -> _M:
        """One unary call; returns the decoded answer.

        Raises:
            ForgeAuthError: the runner credentials or registration token were refused.
            ForgeNotFound: the method is unimplemented on this server (or the object is gone).
            ForgeProtocolError: the answer does not decode as *answer*.
            ForgeError: anything else, classified from the Connect ``code``.
        """
        what = f"{self._forge} {method}"
        sent = {
            "Content-Type": self.codec,
            "Connect-Protocol-Version": "1",
            "Accept-Encoding": "gzip",
        }
        if credentials is not None:
            sent["x-runner-uuid"] = credentials.uuid
            sent["x-runner-token"] = credentials.token
        if headers:
            sent.update(headers)
        body = encode_message(request, self.codec)
        self.calls += 1
        async with map_transport_errors(what):
            response = await self._http.post(
                f"/api/actions/{service}/{method}", content=body, headers=sent
            )
        if response.status_code != 200:
            raise connect_error(response, what=what)
        if len(response.content) > MAX_ANSWER:
            raise ForgeProtocolError(f"{what}: answer larger than {MAX_ANSWER} bytes")
        kind = response.headers.get("content-type", "").split(";")[0].strip() or self.codec
        try:
            return decode_message(answer, response.content, kind)
        except CodecError as exc:
            raise ForgeProtocolError(f"{what}: unreadable answer ({exc})") from exc

    async def ping(self, data: str = "ephemerd") -> str:
        """The server's greeting for *data*; proves the runner API answers."""
        answer = await self.call(PING_SERVICE, "Ping", PingRequest(data=data), PingResponse)
        return answer.data

    async def register(
        self,
        *,
        token: str,
        name: str,
        labels: list[str],
        version: str,
        ephemeral: bool = True,
    ) -> Runner:
        """Register a runner with registration *token*; returns it with its uuid and token."""
        request = RegisterRequest(
            name=name, token=token, version=version, labels=labels, ephemeral=ephemeral
        )
        answer = await self.call(RUNNER_SERVICE, "Register", request, RegisterResponse)
        if not answer.runner.uuid or not answer.runner.token:
            raise ForgeProtocolError(f"{self._forge} Register: answer lacks uuid or token")
        return answer.runner

    async def declare(
        self, credentials: RunnerCredentials, *, labels: list[str], version: str
    ) -> Runner:
        """Replace the runner's labels and version. ``ForgeNotFound`` on servers < 1.21."""
        request = DeclareRequest(version=version, labels=labels)
        answer = await self.call(
            RUNNER_SERVICE, "Declare", request, DeclareResponse, credentials=credentials
        )
        return answer.runner

    async def fetch_task(
        self,
        credentials: RunnerCredentials,
        *,
        tasks_version: int = 0,
        task_capacity: int | None = None,
        request_key: str = "",
    ) -> FetchTaskResponse:
        """Ask for a task *for the calling runner*: a returned task is assigned to it."""
        request = FetchTaskRequest(tasks_version=tasks_version, task_capacity=task_capacity)
        headers = {"x-runner-request-key": request_key} if request_key else None
        return await self.call(
            RUNNER_SERVICE,
            "FetchTask",
            request,
            FetchTaskResponse,
            credentials=credentials,
            headers=headers,
        )

    async def fetch_single_task(
        self,
        credentials: RunnerCredentials,
        *,
        handle: str | None = None,
        tasks_version: int = 0,
        request_key: str = "",
    ) -> FetchSingleTaskResponse:
        """Forgejo >= 15: fetch one task, the job attempt *handle* if given."""
        request = FetchSingleTaskRequest(tasks_version=tasks_version, handle=handle)
        headers = {"x-runner-request-key": request_key} if request_key else None
        return await self.call(
            RUNNER_SERVICE,
            "FetchSingleTask",
            request,
            FetchSingleTaskResponse,
            credentials=credentials,
            headers=headers,
        )

    async def update_task(
        self, credentials: RunnerCredentials, request: UpdateTaskRequest
    ) -> UpdateTaskResponse:
        """Report progress or the final result; the answer's result says "cancelled"."""
        return await self.call(
            RUNNER_SERVICE, "UpdateTask", request, UpdateTaskResponse, credentials=credentials
        )

    async def update_log(
        self, credentials: RunnerCredentials, request: UpdateLogRequest
    ) -> UpdateLogResponse:
        """Append log rows; the answer's ``ack_index`` is how many rows the server holds."""
        return await self.call(
            RUNNER_SERVICE, "UpdateLog", request, UpdateLogResponse, credentials=credentials
        )
