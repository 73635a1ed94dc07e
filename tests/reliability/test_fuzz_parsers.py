"""Hostile input at every parser of forge and registry data: only our errors come out.

Each parser of untrusted bytes is driven with hypothesis: documents shaped like the real
ones with any value in any slot, arbitrary JSON, and arbitrary bytes. The contract checked:
a parser returns, or raises an ``EphemerdError`` subclass (the codec its ``CodecError``)
with a one-line message; a webhook never yields a job event for a delivery it could not
authenticate.
"""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from ephemerd._errors import (
    EphemerdError,
    ForgeError,
    ForgeProtocolError,
    ImagePullError,
)
from ephemerd._proto.ping.v1 import PingResponse
from ephemerd._proto.runner.v1 import (
    DeclareResponse,
    FetchSingleTaskResponse,
    FetchTaskResponse,
    RegisterRequest,
    RegisterResponse,
    UpdateLogResponse,
    UpdateTaskResponse,
)
from ephemerd._retry import RetryPolicy
from ephemerd.capabilities import WebhookRequest
from ephemerd.forges._actions._codec import JSON_TYPE, PROTO_TYPE, CodecError, decode_message
from ephemerd.forges._actions._connect import RUNNER_SERVICE, ConnectClient
from ephemerd.forges._actions._rest import RestClient
from ephemerd.forges.github._policy import JobPolicy
from ephemerd.forges.github._webhook import WebhookReceiver, signature
from ephemerd.forges.woodpecker._payload import decode_config, step_command, workflow_image
from ephemerd.sandbox._oci import (
    Platform,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
    sniff_kind,
)
from ephemerd.sandbox._registry import RegistryClient
from ephemerd.sandbox._registry_auth import parse_challenges
from tests.fakes.oci_images import MemorySink

from ._strategies import FUZZ, JSON, SCALARS, encoded, near

SECRET = "fuzz-secret"


def _one_line(error: BaseException) -> None:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text, repr(text)


# --- GitHub workflow_job deliveries ------------------------------------------------------

_WORKFLOW_JOB = {
    "action": "queued",
    "workflow_job": {
        "id": 42,
        "run_id": 7,
        "name": "build",
        "status": "queued",
        "labels": ["self-hosted", "linux"],
        "runner_name": None,
        "run_attempt": 1,
    },
    "repository": {"name": "app", "full_name": "acme/app"},
}
_HEADER_NAMES = st.sampled_from(
    ["x-github-event", "x-github-delivery", "x-hub-signature-256", "content-type", "x-other"]
)
_HEADERS = st.dictionaries(_HEADER_NAMES, st.text(max_size=80), max_size=5)
_BODIES = encoded(near(_WORKFLOW_JOB) | JSON)


def _receiver() -> WebhookReceiver:
    return WebhookReceiver("gh", SECRET, JobPolicy(owner="acme", repos=["app"]))


@FUZZ
@given(st.sampled_from(["POST", "GET", "post", "PUT", ""]), _HEADERS, _BODIES)
def test_github_webhook_unsigned_deliveries_never_yield_events(
    method: str, headers: dict[str, str], body: bytes
) -> None:
    if headers.get("x-hub-signature-256") == signature(SECRET, body):
        headers["x-hub-signature-256"] = "sha256=" + "0" * 64  # (astronomically unlikely)
    reply = _receiver().handle(WebhookRequest(method=method, headers=headers, body=body))
    assert reply.events == ()
    assert reply.status in (403, 405, 413)


@FUZZ
@given(
    st.sampled_from(["workflow_job", "ping", "push", ""]),
    st.text(max_size=20),
    _BODIES,
    st.booleans(),
)
def test_github_webhook_signed_garbage_is_answered_never_raised(
    event: str, delivery: str, body: bytes, wrong_secret: bool
) -> None:
    signed_with = "not-" + SECRET if wrong_secret else SECRET
    headers = {
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": signature(signed_with, body),
    }
    reply = _receiver().handle(WebhookRequest(method="POST", headers=headers, body=body))
    assert 200 <= reply.status < 500
    if wrong_secret:
        assert reply.status == 403 and reply.events == ()
    if reply.events:
        assert reply.status == 200 and event == "workflow_job"
        assert all(e.instance == "gh" and e.repo == "acme/app" for e in reply.events)


# --- ConnectRPC (Forgejo/Gitea runner protocol) ------------------------------------------

_ANSWERS = [
    RegisterResponse,
    DeclareResponse,
    FetchTaskResponse,
    FetchSingleTaskResponse,
    UpdateTaskResponse,
    UpdateLogResponse,
    PingResponse,
]
_TASK = {
    "task": {
        "id": "12",
        "workflowPayload": "bmFtZTogeA==",
        "context": {"repository": "acme/app", "token": "x", "n": [1, {"a": None}]},
        "secrets": {"A": "b"},
        "needs": {"x": {"outputs": {"o": "v"}, "result": "RESULT_SUCCESS"}},
        "vars": {"V": "1"},
    },
    "tasksVersion": "3",
}
_RUNNER = {"runner": {"id": "1", "uuid": "u", "token": "t", "name": "n", "labels": ["a"]}}
_UPDATE = {"state": {"id": 1, "result": 3, "startedAt": "2024-01-01T00:00:00Z"}, "ackIndex": 9}
_CONNECT_JSON = near(_TASK) | near(_RUNNER) | near(_UPDATE) | JSON


@FUZZ
@given(st.sampled_from(_ANSWERS), encoded(_CONNECT_JSON), st.booleans())
def test_connect_codec_raises_only_codec_errors(
    answer: type[RegisterResponse], body: bytes, binary: bool
) -> None:
    try:
        decode_message(answer, body, PROTO_TYPE if binary else JSON_TYPE)
    except CodecError as error:
        _one_line(error)


@FUZZ
@given(
    st.sampled_from([200, 200, 200, 400, 401, 404, 409, 429, 500, 503, 302]),
    st.sampled_from([JSON_TYPE, PROTO_TYPE, "text/html", "", "application/json; charset=x"]),
    encoded(_CONNECT_JSON | near({"code": "unauthenticated", "message": "x"})),
    st.sampled_from(_ANSWERS),
)
async def test_connect_client_replies_map_to_forge_errors(
    status: int, content_type: str, body: bytes, answer: type[RegisterResponse]
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(reply), base_url="http://forge.test"
    ) as http:
        client = ConnectClient(http, forge="Forgejo fuzz")
        try:
            await client.call(RUNNER_SERVICE, "Register", RegisterRequest(name="r"), answer)
        except ForgeError as error:
            _one_line(error)


_REST_JSON = (
    near({"version": "1.22"})
    | near({"token": "t"})
    | near({"runners": [{"id": 1, "name": "n", "status": "idle", "labels": [{"name": "a"}]}]})
    | near({"jobs": [{"id": 1, "handle": "h", "runs_on": ["a"], "repo_id": 3, "status": "x"}]})
    | st.lists(near({"id": 1, "handle": "h", "runs_on": ["a"], "status": "waiting"}), max_size=3)
    | JSON
)


@FUZZ
@given(
    st.sampled_from([200, 200, 201, 204, 400, 401, 403, 404, 429, 500]),
    encoded(_REST_JSON),
    st.sampled_from(["version", "registration_token", "list_runners", "forgejo", "gitea"]),
)
async def test_rest_replies_map_to_forge_errors(status: int, body: bytes, call: str) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": JSON_TYPE})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(reply), base_url="http://forge.test"
    ) as http:
        rest = RestClient(http, forge="Gitea fuzz", token="pat")
        scope = "/repos/acme/app"
        calls = {
            "version": rest.version,
            "registration_token": lambda: rest.registration_token(scope),
            "list_runners": lambda: rest.list_runners(scope),
            "forgejo": lambda: rest.forgejo_jobs(scope, ["a"]),
            "gitea": lambda: rest.gitea_jobs(scope),
        }
        try:
            await calls[call]()
        except ForgeError as error:
            _one_line(error)


# --- Woodpecker workflow payloads --------------------------------------------------------

_STEP = {
    "name": "build",
    "uuid": "u1",
    "type": "commands",
    "image": "alpine",
    "commands": ["echo hi"],
    "entrypoint": ["sh"],
    "environment": {"A": "1"},
    "secret_mapping": {"S": "x"},
    "working_dir": "/w",
    "on_success": True,
    "on_failure": False,
    "failure": "ignore",
}
_PAYLOAD = near({"pipeline": [{"steps": [_STEP]}], "volume": "v", "network": "n"})


@FUZZ
@given(encoded(_PAYLOAD | JSON))
def test_woodpecker_payload_raises_only_protocol_errors(payload: bytes) -> None:
    try:
        config = decode_config(payload)
    except ForgeProtocolError as error:
        _one_line(error)
        return
    assert isinstance(workflow_image(config), str)
    for step in config.steps:
        try:
            command = step_command(step, extra_env={"CI_WORKSPACE": "/w"})
        except ForgeProtocolError as error:
            _one_line(error)
        else:
            assert command.argv and all(isinstance(a, str) for a in command.argv)


# --- OCI documents and registry replies --------------------------------------------------

_DIGEST = "sha256:" + "ab" * 32
_DESC = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _DIGEST, "size": 9}
_INDEX = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{**_DESC, "platform": {"os": "linux", "architecture": "amd64", "variant": ""}}],
}
_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {**_DESC, "mediaType": "application/vnd.oci.image.config.v1+json"},
    "layers": [{**_DESC, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}],
}
_CONFIG = {
    "os": "linux",
    "architecture": "amd64",
    "rootfs": {"type": "layers", "diff_ids": [_DIGEST]},
    "config": {"Entrypoint": ["sh"], "Cmd": None, "Env": ["A=1"], "WorkingDir": "/", "User": ""},
}
_OCI = encoded(near(_INDEX) | near(_MANIFEST) | near(_CONFIG) | JSON)


@FUZZ
@given(_OCI, st.text(max_size=40), st.sampled_from(["amd64", "arm64", "arm", "riscv64"]))
def test_oci_documents_raise_only_image_pull_errors(
    data: bytes, content_type: str, arch: str
) -> None:
    for parse in (lambda: sniff_kind(data, content_type), lambda: parse_manifest(data)):
        try:
            parse()
        except ImagePullError as error:
            _one_line(error)
    try:
        plat, diff_ids, runtime = parse_config(data)
    except ImagePullError as error:
        _one_line(error)
    else:
        assert isinstance(plat.os, str) and all(isinstance(d, str) for d in diff_ids)
        assert all(isinstance(e, str) for e in runtime.env)
    try:
        entries = parse_index(data)
        select_platform(entries, Platform(architecture=arch, variant="v7" if arch == "arm" else ""))
    except ImagePullError as error:
        _one_line(error)


@FUZZ
@given(
    st.lists(
        st.text(max_size=60)
        | st.builds(
            lambda scheme, params: f"{scheme} {params}",
            st.sampled_from(["Bearer", "bearer", "Basic", "Digest", ""]),
            st.text(alphabet='realm=service,scope"\\ :/h', max_size=60),
        ),
        max_size=4,
    )
)
def test_auth_challenges_parse_without_raising(values: list[str]) -> None:
    for challenge in parse_challenges(values):
        assert challenge.scheme in ("basic", "bearer")


_REGISTRY_REPLY = st.tuples(
    st.sampled_from([200, 200, 200, 401, 403, 404, 429, 500, 301]),
    st.dictionaries(
        st.sampled_from(["content-type", "www-authenticate", "docker-content-digest", "location"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
        | st.sampled_from(
            [
                'Bearer realm="http://127.0.0.1:5000/token",service="r",scope="x"',
                'Bearer realm="ftp://x"',
                'Basic realm="r"',
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.oci.image.manifest.v1+json",
                _DIGEST,
            ]
        ),
        max_size=3,
    ),
    encoded(near(_INDEX) | near(_MANIFEST) | near(_CONFIG) | near({"token": "t"}) | SCALARS),
)


@FUZZ
@given(st.lists(_REGISTRY_REPLY, min_size=1, max_size=8))
async def test_registry_replies_raise_only_image_pull_errors(
    replies: list[tuple[int, dict[str, str], bytes]],
) -> None:
    """A registry answering anything at all, in any order: a pull ends in ImagePullError."""
    answers = iter(replies)

    def reply(request: httpx.Request) -> httpx.Response:
        status, headers, body = next(answers, replies[-1])
        # a stream, as from a socket: the client reads it incrementally with a limit
        return httpx.Response(status, stream=httpx.ByteStream(body), headers=headers)

    async with httpx.AsyncClient(transport=httpx.MockTransport(reply)) as http:
        client = RegistryClient(
            secure=http,
            insecure_tls=http,
            credentials={},
            insecure_registries=(),
            retry=RetryPolicy(schedule=(0.0,), jitter=0.0, max_attempts=1, max_age=None),
            platform=Platform(architecture="amd64"),
            max_parallel_blobs=2,
        )
        with trio.fail_after(10):
            try:
                await client.pull("127.0.0.1:5000/fuzz/img:v1", MemorySink())
            except ImagePullError as error:
                _one_line(error)


def test_the_error_tree_is_what_these_tests_accept() -> None:
    """The errors allowed above are all in ephemerd's tree (CodecError is wrapped by callers)."""
    for kind in (ForgeError, ForgeProtocolError, ImagePullError):
        assert issubclass(kind, EphemerdError)
    with pytest.raises(ForgeProtocolError):
        decode_config(json.dumps({"pipeline": []}).encode())
