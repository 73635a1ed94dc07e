"""The fake's Connect face: ``/api/actions/{service}/{method}`` in JSON or binary protobuf.

Requests are parsed with betterproto's own ``from_dict``/``parse`` and answers written with
its ``to_dict``/``bytes`` plus the proto3 JSON fix-ups Go servers apply (full enum names,
Struct context as a plain object): an implementation independent of ephemerd's codec.
"""

from __future__ import annotations

import json
from typing import Any

import betterproto

from ephemerd._proto.ping.v1 import PingRequest, PingResponse
from ephemerd._proto.runner import v1 as pb

from ._state import FakeRunner, FakeTask, World

__all__ = ["Rpc", "RpcError"]

_ENUM_PREFIX = {"result": "RESULT_", "status": "RUNNER_STATUS_"}

_OLD_STATUS = {
    "canceled": 408,
    "deadline_exceeded": 408,
    "failed_precondition": 412,
    "unimplemented": 404,
}
_NEW_STATUS = {
    "canceled": 499,
    "deadline_exceeded": 504,
    "failed_precondition": 400,
    "unimplemented": 501,
}
_STATUS = {
    "unknown": 500,
    "internal": 500,
    "data_loss": 500,
    "invalid_argument": 400,
    "out_of_range": 400,
    "not_found": 404,
    "already_exists": 409,
    "aborted": 409,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "unavailable": 503,
    "unauthenticated": 401,
}


class RpcError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _strip_enums(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            prefix = _ENUM_PREFIX.get(k)
            short = (
                v[len(prefix) :] if prefix and isinstance(v, str) and v.startswith(prefix) else v
            )
            out[k] = _strip_enums(short)
        return out
    if isinstance(value, list):
        return [_strip_enums(v) for v in value]
    return value


def _add_enum_prefixes(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            prefix = _ENUM_PREFIX.get(k)
            out[k] = prefix + v if prefix and isinstance(v, str) else _add_enum_prefixes(v)
        return out
    if isinstance(value, list):
        return [_add_enum_prefixes(v) for v in value]
    return value


def _value(plain: object) -> pb.JsonValue:
    if plain is None:
        return pb.JsonValue(null_value=0)
    if isinstance(plain, bool):
        return pb.JsonValue(bool_value=plain)
    if isinstance(plain, int | float):
        return pb.JsonValue(number_value=float(plain))
    if isinstance(plain, str):
        return pb.JsonValue(string_value=plain)
    if isinstance(plain, dict):
        return pb.JsonValue(
            struct_value=pb.JsonStruct(fields={k: _value(v) for k, v in plain.items()})
        )
    return pb.JsonValue(list_value=pb.JsonList(values=[_value(v) for v in plain]))  # type: ignore[union-attr]


class Rpc:
    """Handles one Connect call against a ``World``."""

    def __init__(self, world: World) -> None:
        self.world = world

    def status_of(self, code: str) -> int:
        table = _OLD_STATUS if self.world.flavour.old_connect else _NEW_STATUS
        return table.get(code, _STATUS.get(code, 500))

    def error(self, code: str, message: str) -> RpcError:
        if self.world.flavour.plain_errors:
            return RpcError("unknown", message)  # a plain Go error
        return RpcError(code, message)

    # --- codec -------------------------------------------------------------------------

    def parse(self, cls: type[betterproto.Message], body: bytes, content_type: str) -> Any:
        if content_type == "application/proto":
            try:
                return cls().parse(body)
            except Exception as exc:
                raise RpcError("invalid_argument", f"unmarshal message: {exc}") from exc
        if not body:
            raise RpcError(
                "invalid_argument",
                "unmarshal into "
                + cls.__name__
                + ": zero-length payload is not a valid JSON object",
            )
        try:
            plain = json.loads(body)
        except ValueError as exc:
            raise RpcError("invalid_argument", f"unmarshal message: {exc}") from exc
        if not isinstance(plain, dict):
            raise RpcError("invalid_argument", "unmarshal message: not an object")
        if self.world.flavour.strict_json:
            known = cls._betterproto.meta_by_field_name  # type: ignore[attr-defined]
            names = set(known) | {betterproto.casing.camel_case(n) for n in known}
            unknown = set(plain) - names
            if unknown:
                raise RpcError("invalid_argument", f"unknown field {sorted(unknown)[0]!r}")
        try:
            return cls().from_dict(_strip_enums(plain))
        except Exception as exc:
            raise RpcError("invalid_argument", f"unmarshal message: {exc}") from exc

    def render(
        self,
        message: betterproto.Message,
        content_type: str,
        contexts: dict[str, dict[str, object]] | None = None,
    ) -> bytes:
        """*contexts*: plain Struct contexts by the JSON key of the task they belong to."""
        if content_type == "application/proto":
            return bytes(message)
        plain = _add_enum_prefixes(message.to_dict())
        for key, context in (contexts or {}).items():
            plain[key]["context"] = context
        return json.dumps(plain).encode()

    # --- dispatch ----------------------------------------------------------------------

    def call(
        self, service: str, method: str, body: bytes, headers: dict[str, str], content_type: str
    ) -> bytes:
        if service == "ping.v1.PingService" and method == "Ping":
            request = self.parse(PingRequest, body, content_type)
            return self.render(PingResponse(data=f"Hello, {request.data}!"), content_type)
        if service != "runner.v1.RunnerService":
            raise RpcError("unimplemented", f"{service} is not implemented")
        if method == "Register":
            return self.render(
                self.register(self.parse(pb.RegisterRequest, body, content_type)), content_type
            )
        runner = self.world.authenticate(
            headers.get("x-runner-uuid", ""), headers.get("x-runner-token", "")
        )
        if runner is None:
            raise self.error("unauthenticated", "unregistered runner")
        if method == "Declare":
            if not self.world.flavour.declare:
                raise RpcError(
                    "unimplemented", "runner.v1.RunnerService.Declare is not implemented"
                )
            request = self.parse(pb.DeclareRequest, body, content_type)
            runner.labels, runner.version = list(request.labels), request.version
            return self.render(pb.DeclareResponse(runner=_runner(runner)), content_type)
        if method == "FetchTask":
            request = self.parse(pb.FetchTaskRequest, body, content_type)
            return self.fetch(
                runner, request.tasks_version, None, headers, content_type, single=False
            )
        if method == "FetchSingleTask":
            if not self.world.flavour.single_task:
                raise RpcError(
                    "unimplemented", "runner.v1.RunnerService.FetchSingleTask is not implemented"
                )
            request = self.parse(pb.FetchSingleTaskRequest, body, content_type)
            return self.fetch(
                runner, request.tasks_version, request.handle, headers, content_type, single=True
            )
        if method == "UpdateTask":
            return self.render(
                self.update_task(runner, self.parse(pb.UpdateTaskRequest, body, content_type)),
                content_type,
            )
        if method == "UpdateLog":
            return self.render(
                self.update_log(runner, self.parse(pb.UpdateLogRequest, body, content_type)),
                content_type,
            )
        raise RpcError("unimplemented", f"runner.v1.RunnerService.{method} is not implemented")

    def register(self, request: pb.RegisterRequest) -> pb.RegisterResponse:
        if not request.token or not request.name:
            raise self.error("invalid_argument", "missing runner token or name")
        scope = self.world.registration_tokens.get(request.token)
        if scope is None:
            raise self.error("unauthenticated", "runner registration token not found")
        labels = list(request.labels or request.agent_labels)
        runner = self.world.create_runner(scope, request.name, labels, ephemeral=request.ephemeral)
        runner.version = request.version
        return pb.RegisterResponse(runner=_runner(runner))

    def fetch(
        self,
        runner: FakeRunner,
        tasks_version: int,
        handle: str | None,
        headers: dict[str, str],
        content_type: str,
        *,
        single: bool,
    ) -> bytes:
        world = self.world
        if runner.ephemeral and runner.task_id and world.task_done(runner):
            runner.deleted = True
            raise self.error("unauthenticated", "runner has been removed")
        key = headers.get("x-runner-request-key", "") if world.flavour.single_task else ""
        task: FakeTask | None = None
        if key and (runner.id, key) in world.request_keys:
            task = world.tasks.get(world.request_keys[(runner.id, key)])
        elif not (
            world.flavour.tasks_version and tasks_version and tasks_version == world.tasks_version
        ):
            task = world.pick(runner, handle=handle)
            if task is not None and key:
                world.request_keys[(runner.id, key)] = task.id
        latest = world.tasks_version if world.flavour.tasks_version else 0
        response_cls = pb.FetchSingleTaskResponse if single else pb.FetchTaskResponse
        if task is None:
            return self.render(response_cls(tasks_version=latest), content_type)
        job = world.jobs[task.job_id]
        message = pb.Task(
            id=task.id, workflow_payload=job.payload, secrets={"GITEA_TOKEN": "job-token"}
        )
        if content_type == "application/proto":
            message.context = pb.JsonStruct(fields={k: _value(v) for k, v in task.context.items()})
        return self.render(
            response_cls(task=message, tasks_version=latest), content_type, {"task": task.context}
        )

    def _owned(self, runner: FakeRunner, task_id: int) -> FakeTask:
        task = self.world.tasks.get(task_id)
        if task is None:
            raise self.error("not_found", "task not found")
        if task.runner_id != runner.id:
            raise self.error("internal", "invalid runner for task")
        return task

    def update_task(
        self, runner: FakeRunner, request: pb.UpdateTaskRequest
    ) -> pb.UpdateTaskResponse:
        task = self._owned(runner, request.state.id)
        job = self.world.jobs[task.job_id]
        task.updates += 1
        for key, value in request.outputs.items():
            if len(key.encode()) <= 255 and len(value.encode()) <= 1024 * 1024:
                task.outputs.setdefault(key, value)
        if request.state.result and not task.result:
            self.world.finish(task, int(request.state.result))
        result = pb.Result.CANCELLED if job.cancelled else pb.Result(task.result)
        state = pb.TaskState(id=task.id, result=result)
        return pb.UpdateTaskResponse(state=state, sent_outputs=sorted(task.outputs))

    def update_log(self, runner: FakeRunner, request: pb.UpdateLogRequest) -> pb.UpdateLogResponse:
        task = self._owned(runner, request.task_id)
        ack = len(task.log)
        if task.archived:
            raise self.error("already_exists", "log file has been archived")
        rows = [row.content for row in request.rows]
        if rows and request.index <= ack < request.index + len(rows):
            task.log.extend(rows[ack - request.index :])
        if request.no_more:
            task.archived = True
        return pb.UpdateLogResponse(ack_index=len(task.log))


def _runner(runner: FakeRunner) -> pb.Runner:
    return pb.Runner(
        id=runner.id,
        uuid=runner.uuid,
        token=runner.token,
        name=runner.name,
        version=runner.version,
        labels=list(runner.labels),
        ephemeral=runner.ephemeral,
    )
