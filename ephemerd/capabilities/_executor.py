"""A forge whose own runner drives each job from outside (gitlab-runner's custom executor).

gitlab-runner polls GitLab and calls four programs per job: ``config``, ``prepare``,
``run`` (once per sub-stage) and ``cleanup``. Those programs are ephemerd's CLI talking
to the daemon over the control socket; the daemon hands each call to the provider
instance's ``CustomExecutor``. Admission, slots, the sandbox and teardown stay the
scheduler's: ``prepare`` turns into a queued ``JobEvent``, and the provider, which also
satisfies ``DrivesJob``, serves the run stages from inside ``drive_job``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

from ._events import JobEvent
from ._sandbox import OutputSink

__all__ = ["CustomExecutor", "ExecutorRequest"]


class ExecutorRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One ``prepare`` call: everything gitlab-runner told the executor about the job.

    Attributes:
        job_id: the forge's job id (``CI_JOB_ID``).
        variables: the job's variables, without gitlab-runner's ``CUSTOM_ENV_`` prefix.
            They hold secrets (``CI_JOB_TOKEN``...): never logged, never on argv.
        job_response: the content of ``JOB_RESPONSE_FILE`` (the job payload), if any.
    """

    job_id: str
    variables: dict[str, str] = msgspec.field(default_factory=dict[str, str])
    job_response: bytes = b""

    def __repr__(self) -> str:
        return (
            f"ExecutorRequest(job_id={self.job_id!r}, variables=<{len(self.variables)}>, "
            f"job_response=<{len(self.job_response)} bytes>)"
        )


@runtime_checkable
class CustomExecutor(Protocol):
    """The daemon side of a custom executor; the control plane calls it, the scheduler runs it.

    The control plane answers ``prepare`` itself from the scheduler's view of the job (it
    admits the event, then waits for the job to run or fail); this Protocol covers what
    only the provider knows.
    """

    def expect(self, request: ExecutorRequest) -> JobEvent:
        """Remember *request* and return the queued event that asks the scheduler for it.

        Raises:
            ControlError: the request names no job, or this job is already expected.
        """
        ...

    def forget(self, job_id: str) -> None:
        """Drop an expected job the scheduler did not admit. Unknown ids are ignored."""
        ...

    async def run(self, job_id: str, script: bytes, stage: str, output: OutputSink) -> int:
        """Run *script* for *stage* inside the job's sandbox; return the script's exit code.

        Raises:
            JobNotFound: no running job has this id (never prepared, cleaned up, or the
                daemon restarted since).
            SandboxError: the sandbox died, or the job was killed while the stage ran.
        Cancellation: the process inside the sandbox is killed before this returns.
        """
        ...

    def cleanup(self, job_id: str) -> bool:
        """Let the job's ``drive_job`` return, so the scheduler tears the sandbox down.

        Returns whether the job was known. Idempotent.
        """
        ...
