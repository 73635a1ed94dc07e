"""A ``CustomExecutor`` double and a target that admits its jobs, for the executor RPCs.

``ExecutorTarget`` runs a job as soon as it is submitted (in sandbox ``sb-<id>``), the
way the scheduler answers ``prepare`` once the sandbox runs. ``FakeExecutor.run`` plays
a script language of its own: each line ``out TEXT`` / ``err TEXT`` writes a chunk,
``wait`` blocks until the test calls ``proceed``, ``hang`` blocks until cancelled, and
``exit N`` ends the stage with code N. It records what it was asked and whether a run
was cancelled, so tests can check what the daemon side saw.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import trio

from ephemerd._errors import JobNotFound
from ephemerd.capabilities import (
    ExecutorRequest,
    JobAction,
    JobEvent,
    JobKey,
    JobState,
    JobView,
    OutputSink,
)

from .fake_daemon import FakeTarget

INSTANCE = "gitlab"


class FakeExecutor:
    def __init__(self) -> None:
        self.requests: list[ExecutorRequest] = []
        self.scripts: list[tuple[str, bytes, str]] = []
        self.running: set[str] = set()
        self.cleaned: list[str] = []
        self.started = trio.Event()
        self.cancelled = trio.Event()
        self._proceed = trio.Event()
        self.on_cleanup: Callable[[str], None] = lambda job_id: None

    def proceed(self) -> None:
        self._proceed.set()

    def expect(self, request: ExecutorRequest) -> JobEvent:
        self.requests.append(request)
        self.running.add(request.job_id)
        return JobEvent(instance=INSTANCE, action=JobAction.QUEUED, job_id=request.job_id)

    def forget(self, job_id: str) -> None:
        self.running.discard(job_id)

    async def run(self, job_id: str, script: bytes, stage: str, output: OutputSink) -> int:
        if job_id not in self.running:
            raise JobNotFound(f"job {INSTANCE}/{job_id} is not running here")
        self.scripts.append((job_id, script, stage))
        self.started.set()
        try:
            for line in script.decode().splitlines():
                word, _, rest = line.partition(" ")
                if word == "out":
                    await output("stdout", rest.encode() + b"\n")
                elif word == "err":
                    await output("stderr", rest.encode() + b"\n")
                elif word == "wait":
                    await self._proceed.wait()
                elif word == "hang":
                    await trio.sleep_forever()
                elif word == "exit":
                    return int(rest)
            return 0
        except trio.Cancelled:
            self.cancelled.set()
            raise

    def cleanup(self, job_id: str) -> bool:
        self.cleaned.append(job_id)
        if job_id in self.running:
            self.running.discard(job_id)
            self.on_cleanup(job_id)  # drive_job returns: the sandbox goes
            return True
        return False


class ExecutorTarget(FakeTarget):
    """A ``FakeTarget`` whose submitted jobs run at once (or park) and end at cleanup."""

    def __init__(
        self, log_dir: Path, executor: FakeExecutor, *, state: JobState = JobState.RUNNING
    ) -> None:
        super().__init__(log_dir)
        self.providers = ()
        self.state = state  # PARKED: a job that waits for a slot
        self.submitted_event = trio.Event()
        executor.on_cleanup = lambda job_id: self.finish(JobKey(INSTANCE, job_id))

    def submit_nowait(self, event: JobEvent) -> None:
        super().submit_nowait(event)
        self.put(
            JobView(
                key=JobKey(event.instance, event.job_id),
                kind="gitlab",
                state=self.state,
                sandbox=f"sb-{event.job_id}",
                image="busybox:latest",
            )
        )
        self.submitted_event.set()
