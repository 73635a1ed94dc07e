"""A stand-in runner: does with a ``Claim`` what forgejo-runner / act_runner would do.

It reads only what the claim gives the sandbox (argv and files), so a test that passes
proves a real runner in the sandbox has everything it needs, and nothing more.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

import httpx

from ephemerd._errors import ForgeNotFound
from ephemerd._proto.runner.v1 import LogRow, Result, TaskState, UpdateLogRequest, UpdateTaskRequest
from ephemerd.capabilities import Claim
from ephemerd.forges._actions import (
    RUNNER_FILE_PATH,
    TOKEN_PATH,
    ConnectClient,
    RunnerCredentials,
)


@dataclass
class Outcome:
    task_id: int
    cancelled: bool
    credentials: RunnerCredentials


def labels_of(claim: Claim) -> list[str]:
    """The labels the runner declares: ``--label`` flags, else the ``.runner`` file's."""
    argv = list(claim.entrypoint)
    flagged = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--label"]
    if flagged:
        return flagged
    files = {f.path: f.content for f in claim.files}
    return list(json.loads(files[RUNNER_FILE_PATH])["labels"])


def credentials_of(claim: Claim) -> tuple[RunnerCredentials, str, str | None]:
    """(credentials, forge URL, handle) as the runner in the sandbox would find them."""
    files = {f.path: f.content for f in claim.files}
    argv = list(claim.entrypoint)
    if "--handle" in argv:
        token = files[TOKEN_PATH].decode()
        assert argv[argv.index("--token-url") + 1] == f"file://{TOKEN_PATH}"
        uuid = argv[argv.index("--uuid") + 1]
        url = argv[argv.index("--url") + 1]
        return RunnerCredentials(uuid=uuid, token=token), url, argv[argv.index("--handle") + 1]
    registration = json.loads(files[RUNNER_FILE_PATH])
    creds = RunnerCredentials(uuid=registration["uuid"], token=registration["token"])
    return creds, registration["address"], None


async def run_one_job(
    claim: Claim, *, result: Result = Result.SUCCESS, codec: str = "application/json"
) -> Outcome | None:
    """Fetch one task with the claim's identity, log a line, report *result*; None if no task."""
    creds, url, handle = credentials_of(claim)
    async with httpx.AsyncClient(base_url=url) as http:
        client = ConnectClient(http, forge="stand-in", codec=codec)
        with contextlib.suppress(ForgeNotFound):  # as real runners do; old Gitea has none
            await client.declare(creds, labels=labels_of(claim), version="stand-in")
        if handle is not None:
            answer = await client.fetch_single_task(creds, handle=handle, request_key="k1")
            task = answer.task
        else:
            task = (await client.fetch_task(creds)).task
        if not task.id:
            return None
        rows = [LogRow(content="hello from the stand-in")]
        await client.update_log(
            creds, UpdateLogRequest(task_id=task.id, index=0, rows=rows, no_more=True)
        )
        reply = await client.update_task(
            creds, UpdateTaskRequest(state=TaskState(id=task.id, result=result))
        )
        return Outcome(task.id, reply.state.result == Result.CANCELLED, creds)
