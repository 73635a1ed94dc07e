"""The blocking custom-executor calls, against betterproto and against the real server.

``executor_prepare``/``executor_run``/``executor_cleanup`` encode and decode their
messages by hand, so each codec is checked against betterproto by property; the calls
run against a real control server on a real unix socket with a ``CustomExecutor``
double, the Trio client as the reference for errors. The last tests check the contract
the CLI relies on: output arrives while the stage still runs, and a client that goes
away cancels the stage on the daemon side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import hypothesis.strategies as st
import pytest
import trio
from hypothesis import given

from ephemerd._errors import ControlError, EphemerdError, JobNotFound
from ephemerd._proto.ephemerd import v1 as pb
from ephemerd.control import (
    PreparedJob,
    executor_cleanup,
    executor_prepare,
    executor_run,
    open_control_client,
    open_control_server,
)
from ephemerd.control._convert import output_from_pb
from ephemerd.control._quick import (
    cleanup_request,
    known_from_bytes,
    output_from_bytes,
    prepare_request,
    prepared_from_bytes,
    run_request,
)

from .fake_executor import INSTANCE, ExecutorTarget, FakeExecutor

T = TypeVar("T")
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_blob = st.binary(max_size=300)


@given(_text, _text, st.dictionaries(_text, _text, max_size=5), _blob)
def test_prepare_request_parses_in_betterproto(
    instance: str, job_id: str, variables: dict[str, str], payload: bytes
) -> None:
    data = prepare_request(
        instance=instance, job_id=job_id, variables=variables, job_response=payload
    )
    reference = pb.ExecutorPrepareRequest(
        instance=instance, job_id=job_id, variables=variables, job_response=payload
    )
    assert pb.ExecutorPrepareRequest().parse(data) == reference


@given(_text, _text, _blob, _text)
def test_run_request_parses_in_betterproto(
    instance: str, job_id: str, script: bytes, stage: str
) -> None:
    data = run_request(instance=instance, job_id=job_id, script=script, stage=stage)
    reference = pb.ExecutorRunRequest(instance=instance, job_id=job_id, script=script, stage=stage)
    assert pb.ExecutorRunRequest().parse(data) == reference
    assert bytes(reference) == data  # field order and proto3 defaults as betterproto


@given(_text, _text)
def test_cleanup_request_parses_in_betterproto(instance: str, job_id: str) -> None:
    data = cleanup_request(instance=instance, job_id=job_id)
    assert bytes(pb.ExecutorCleanupRequest(instance=instance, job_id=job_id)) == data


_jobs = st.builds(
    pb.Job,
    instance=_text,
    job_id=_text,
    state=st.integers(0, 9),
    sandbox=_text,
    image=_text,
    labels=st.lists(_text, max_size=3),
    queued_at=st.floats(allow_nan=False),
    exit_code=st.none() | st.integers(-(2**31), 2**31 - 1),
    detail=_text,
)


@given(_jobs)
def test_prepared_job_decodes_like_betterproto(job: pb.Job) -> None:
    data = bytes(pb.ExecutorPrepareResponse(job=job))
    parsed = pb.ExecutorPrepareResponse().parse(data).job
    assert prepared_from_bytes(data) == PreparedJob(parsed.sandbox, parsed.image)


@given(st.booleans(), _jobs)
def test_cleanup_reply_decodes_like_betterproto(known: bool, job: pb.Job) -> None:
    data = bytes(pb.ExecutorCleanupResponse(known=known, job=job))
    assert known_from_bytes(data) is pb.ExecutorCleanupResponse().parse(data).known


_outputs = st.builds(
    pb.ExecutorOutput,
    stdout=_blob,
    stderr=_blob,
    exited=st.booleans(),
    exit_code=st.integers(-(2**31), 2**31 - 1),
)


@given(_outputs)
def test_output_decodes_like_output_from_pb(message: pb.ExecutorOutput) -> None:
    data = bytes(message)
    reference = output_from_pb(pb.ExecutorOutput().parse(data))
    stream, chunk, code = output_from_bytes(data)
    assert (chunk, code) == (reference.data, reference.exit_code)
    assert stream == reference.stream or not chunk  # an empty chunk is written nowhere


# -- against the real server -------------------------------------------------------------


@pytest.fixture
def executor() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
async def sock(executor: FakeExecutor, tmp_path: Path) -> AsyncIterator[Path]:
    target = ExecutorTarget(tmp_path, executor)
    async with open_control_server(
        target, socket_path=tmp_path / "ephemerd.sock", executors={INSTANCE: executor}
    ) as path:
        yield path


async def _in_thread(fn: Callable[[], T]) -> T:
    return await trio.to_thread.run_sync(fn)


def _collecting(into: list[tuple[str, bytes]]) -> Callable[[str, bytes], None]:
    return lambda stream, chunk: into.append((stream, chunk))


async def test_a_job_from_prepare_to_cleanup(executor: FakeExecutor, sock: Path) -> None:
    payload = b"x" * 300_000  # past the default window and frame size: flow control
    prepared = await _in_thread(
        lambda: executor_prepare(
            sock, "7", variables={"CI_JOB_TOKEN": "secret", "A": "b"}, job_response=payload
        )
    )
    assert prepared == PreparedJob(sandbox="sb-7", image="busybox:latest")
    request = executor.requests[0]
    assert (request.job_id, request.variables, request.job_response) == (
        "7",
        {"CI_JOB_TOKEN": "secret", "A": "b"},
        payload,
    )
    output: list[tuple[str, bytes]] = []
    script = b"out one\nerr two\nout three\nexit 3\n" + b"#" * 200_000
    code = await _in_thread(
        lambda: executor_run(
            sock,
            "7",
            instance=INSTANCE,
            script=script,
            stage="build_script",
            on_output=_collecting(output),
        )
    )
    assert code == 3
    assert output == [("stdout", b"one\n"), ("stderr", b"two\n"), ("stdout", b"three\n")]
    assert executor.scripts == [("7", script, "build_script")]
    assert await _in_thread(lambda: executor_cleanup(sock, "7")) is True
    assert await _in_thread(lambda: executor_cleanup(sock, "7")) is False


async def test_much_output_is_streamed_whole(executor: FakeExecutor, sock: Path) -> None:
    await _in_thread(lambda: executor_prepare(sock, "8", variables={}))
    lines = b"".join(b"out %d %s\n" % (n, b"y" * 1000) for n in range(2000))  # ~2 MB out
    output: list[tuple[str, bytes]] = []
    code = await _in_thread(
        lambda: executor_run(sock, "8", script=lines, stage="s", on_output=_collecting(output))
    )
    assert code == 0
    assert b"".join(chunk for _, chunk in output) == b"".join(
        line[4:] + b"\n" for line in lines.splitlines()
    )


async def test_errors_match_the_trio_client(executor: FakeExecutor, sock: Path) -> None:
    def run_unknown() -> int:
        return executor_run(sock, "404", script=b"", stage="s", on_output=lambda s, c: None)

    with pytest.raises(EphemerdError) as quick:
        await _in_thread(run_unknown)
    async with open_control_client(sock) as client:
        with pytest.raises(EphemerdError) as reference:
            async with client.executor_run("404", script=b"", stage="s") as items:
                async for _ in items:
                    pass
    assert type(quick.value) is type(reference.value) is JobNotFound
    assert str(quick.value) == str(reference.value) == "job gitlab/404 is not running here"
    with pytest.raises(ControlError, match="takes no custom executor calls"):
        await _in_thread(lambda: executor_prepare(sock, "9", instance="nope", variables={}))


async def test_output_arrives_while_the_stage_runs(executor: FakeExecutor, sock: Path) -> None:
    await _in_thread(lambda: executor_prepare(sock, "10", variables={}))
    output: list[tuple[str, bytes]] = []

    def on_output(stream: str, chunk: bytes) -> None:
        output.append((stream, chunk))
        if chunk == b"first\n":  # the stage waits for this before it goes on
            trio.from_thread.run_sync(executor.proceed)

    code = await _in_thread(
        lambda: executor_run(
            sock, "10", script=b"out first\nwait\nout second\n", stage="s", on_output=on_output
        )
    )
    assert code == 0 and output == [("stdout", b"first\n"), ("stdout", b"second\n")]


class _GoneAway(BaseException):
    """What a signal handler raises in the CLI, here raised by the output callback."""


async def test_a_client_going_away_cancels_the_stage(executor: FakeExecutor, sock: Path) -> None:
    await _in_thread(lambda: executor_prepare(sock, "11", variables={}))

    def on_output(stream: str, chunk: bytes) -> None:
        raise _GoneAway

    def run() -> int:
        return executor_run(sock, "11", script=b"out hi\nhang\n", stage="s", on_output=on_output)

    with pytest.raises(_GoneAway):
        await _in_thread(run)
    with trio.fail_after(30):
        await executor.cancelled.wait()  # the daemon cancelled the stage: the script dies


async def test_an_output_error_is_not_a_lost_connection(executor: FakeExecutor, sock: Path) -> None:
    await _in_thread(lambda: executor_prepare(sock, "12", variables={}))

    def on_output(stream: str, chunk: bytes) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def run() -> int:
        return executor_run(sock, "12", script=b"out hi\nhang\n", stage="s", on_output=on_output)

    with pytest.raises(BrokenPipeError):
        await _in_thread(run)
    with trio.fail_after(30):
        await executor.cancelled.wait()
