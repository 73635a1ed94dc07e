"""``ephemerd jobs``: list, show, kill and read the logs of jobs over the control socket."""

from __future__ import annotations

import sys
import time

from ._format import job_text, jobs_table, to_json
from ._options import GlobalOptions, run_trio

__all__ = ["job_logs", "kill_job", "list_jobs", "show_job"]


def list_jobs(opts: GlobalOptions, *, as_json: bool) -> int:
    from ephemerd.control import open_control_client

    async def fetch() -> str:
        async with open_control_client(opts.socket_path) as client:
            jobs = await client.jobs()
        return to_json(jobs) if as_json else jobs_table(jobs, now=time.time())

    print(run_trio(fetch))
    return 0


def show_job(opts: GlobalOptions, ref: str, *, as_json: bool) -> int:
    from ephemerd.control import open_control_client, parse_job_ref

    parse_job_ref(ref)  # a malformed ref fails before any connection

    async def fetch() -> str:
        async with open_control_client(opts.socket_path) as client:
            job = await client.job(ref)
        return to_json(job) if as_json else job_text(job, now=time.time())

    print(run_trio(fetch))
    return 0


def kill_job(opts: GlobalOptions, ref: str) -> int:
    from ephemerd.control import open_control_client, parse_job_ref

    parse_job_ref(ref)

    async def kill() -> str:
        async with open_control_client(opts.socket_path) as client:
            job = await client.kill_job(ref)
        return f"Job {job.key} killed ({job.state.value}); its sandbox and runner are cleaned up."

    print(run_trio(kill))
    return 0


def job_logs(opts: GlobalOptions, ref: str, *, follow: bool) -> int:
    """Copy the job's log to stdout as raw bytes, chunk by chunk."""
    from ephemerd.control import open_control_client, parse_job_ref

    parse_job_ref(ref)
    out = sys.stdout.buffer

    async def copy() -> None:
        async with (
            open_control_client(opts.socket_path) as client,
            client.job_logs(ref, follow=follow) as chunks,
        ):
            async for chunk in chunks:
                out.write(chunk)
                out.flush()

    run_trio(copy)
    return 0
