"""Both Connect codecs, against betterproto's own binary encoding and proto3 JSON rules."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ephemerd._proto.runner import v1 as pb
from ephemerd.forges._actions import (
    JSON_TYPE,
    PROTO_TYPE,
    CodecError,
    decode_message,
    encode_message,
)
from ephemerd.forges._actions._codec import plain_from_struct, struct_from_plain


def _task_response() -> pb.FetchTaskResponse:
    context = struct_from_plain({"repository": "acme/app", "event": {"n": [1, None, True, "x"]}})
    task = pb.Task(
        id=2**40,
        workflow_payload=b"jobs: {}",
        context=context,
        secrets={"TOKEN": "s"},
        needs={"build": pb.TaskNeed(outputs={"a": "b"}, result=pb.Result.SUCCESS)},
    )
    return pb.FetchTaskResponse(task=task, tasks_version=9)


def test_json_follows_proto3_rules() -> None:
    plain = json.loads(encode_message(_task_response(), JSON_TYPE))
    assert plain["tasksVersion"] == "9"  # int64 as string, camelCase
    task = plain["task"]
    assert task["id"] == str(2**40)
    assert task["workflowPayload"] == "am9iczoge30="  # padded base64
    assert task["context"] == {"repository": "acme/app", "event": {"n": [1, None, True, "x"]}}
    assert task["needs"]["build"]["result"] == "RESULT_SUCCESS"  # full enum name
    assert "machine" not in task  # defaults omitted
    assert json.loads(encode_message(pb.FetchTaskResponse(), JSON_TYPE)) == {}


@pytest.mark.parametrize("codec", [JSON_TYPE, PROTO_TYPE])
def test_round_trip(codec: str) -> None:
    message = _task_response()
    assert decode_message(pb.FetchTaskResponse, encode_message(message, codec), codec) == message


def test_binary_is_betterproto_wire_format() -> None:
    message = _task_response()
    assert encode_message(message, PROTO_TYPE) == bytes(message)
    context = pb.FetchTaskResponse().parse(bytes(message)).task.context
    assert plain_from_struct(context)["repository"] == "acme/app"


def test_json_input_leniency() -> None:
    body = (
        b'{"state": {"id": 5, "result": 3, "started_at": "2025-01-01T12:00:00.5+02:00",'
        b' "steps": [{"id": "1", "logLength": 4}]}, "unknownField": 1}'
    )
    request = decode_message(pb.UpdateTaskRequest, body, JSON_TYPE)
    assert request.state.id == 5 and request.state.result == pb.Result.CANCELLED
    assert request.state.started_at == dt.datetime(2025, 1, 1, 10, 0, 0, 500000, tzinfo=dt.UTC)
    assert request.state.steps[0].log_length == 4
    by_name = decode_message(pb.TaskState, b'{"result": "RESULT_FAILURE"}', JSON_TYPE)
    assert by_name.result == pb.Result.FAILURE
    unpadded = decode_message(pb.Task, b'{"workflowPayload": "am9iczoge30"}', JSON_TYPE)
    assert unpadded.workflow_payload == b"jobs: {}"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"", "zero-length"),
        (b"{", "malformed JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"state": {"id": "x"}}', "UpdateTaskRequest.state.id"),
        (b'{"state": {"result": "RESULT_BOGUS"}}', "unknown Result"),
        (b'{"state": {"startedAt": "yesterday"}}', "bad timestamp"),
    ],
)
def test_bad_json_names_the_problem(body: bytes, where: str) -> None:
    with pytest.raises(CodecError, match=where):
        decode_message(pb.UpdateTaskRequest, body, JSON_TYPE)


def test_bad_binary_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="bad protobuf body"):
        decode_message(pb.Runner, b"\x0a\xff\xff", PROTO_TYPE)


@given(
    st.builds(
        pb.UpdateLogRequest,
        task_id=st.integers(0, 2**63 - 1),
        index=st.integers(0, 2**63 - 1),
        rows=st.lists(st.builds(pb.LogRow, content=st.text(max_size=20)), max_size=3),
        no_more=st.booleans(),
    )
)
def test_fuzzed_round_trip(message: pb.UpdateLogRequest) -> None:
    for codec in (JSON_TYPE, PROTO_TYPE):
        assert decode_message(pb.UpdateLogRequest, encode_message(message, codec), codec) == message
