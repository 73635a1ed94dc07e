"""``ephemerd drain`` and ``ephemerd uncordon``.

``drain`` signals the daemon with SIGTERM, but only once the control socket confirms that
the daemon answering there has the pid the PID file names: a stale PID file must never
get an unrelated process killed. ``drain --wait`` does not signal at all: it cordons the
daemon over the socket and follows the watch stream until no job is active.
"""

from __future__ import annotations

import os
import signal
import time

from ephemerd._errors import ControlError, DaemonNotRunning

from ._format import format_age
from ._options import GlobalOptions, run_trio

__all__ = ["DEFAULT_DRAIN_TIMEOUT", "drain", "drain_and_wait", "uncordon"]

DEFAULT_DRAIN_TIMEOUT = 45 * 60.0


def drain(opts: GlobalOptions) -> int:
    from ephemerd.control import fetch_status, read_pid_file

    pid = read_pid_file(opts.pid_path)
    status = fetch_status(opts.socket_path)  # DaemonNotRunning: nothing is signalled
    if status.pid != pid:
        raise ControlError(
            f"pid file {opts.pid_path} names pid {pid}, but the daemon on {opts.socket_path}"
            f" is pid {status.pid}; not signalling"
        )
    print(f"Active jobs: {status.active_jobs}")
    print(f"Sending SIGTERM to ephemerd (pid {pid})...")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        raise DaemonNotRunning(
            f"ephemerd (pid {pid}) exited before it could be signalled"
        ) from None
    except PermissionError:
        raise ControlError(f"not allowed to signal ephemerd (pid {pid}); run as root") from None
    print("The daemon will wait for running jobs to finish before exiting.")
    print("Use 'ephemerd status' to monitor progress.")
    return 0


def drain_and_wait(opts: GlobalOptions, *, timeout: float) -> int:
    """Cordon, then wait until no job is active. Exit 1 (with the daemon still cordoned)
    when *timeout* seconds pass first."""
    import trio

    from ephemerd.control import open_control_client

    started = time.monotonic()

    def waited() -> str:
        return format_age(time.monotonic() - started)

    async def wait() -> int:
        active = 0
        with trio.move_on_after(timeout):
            async with open_control_client(opts.socket_path) as client:
                status = await client.cordon()
                active = status.active_jobs
                print(f"Cordoned: daemon stopped claiming new jobs ({active} active).", flush=True)
                if active == 0:
                    print("Drained: no active jobs.")
                    return 0
                async with client.watch_jobs() as updates:
                    async for update in updates:
                        if update.status.active_jobs == 0:
                            print(f"Drained: no active jobs (waited {waited()}).")
                            return 0
                        if update.status.active_jobs != active:
                            active = update.status.active_jobs
                            print(
                                f"Waiting: {active} active job(s), elapsed {waited()}", flush=True
                            )
                raise DaemonNotRunning("ephemerd stopped before its jobs finished")
        raise ControlError(
            f"drain timed out after {format_age(timeout)} with {active} job(s) still running"
            " (daemon stays cordoned)"
        )

    return run_trio(wait)


def uncordon(opts: GlobalOptions) -> int:
    from ephemerd.control import open_control_client

    async def call() -> int:
        async with open_control_client(opts.socket_path) as client:
            return (await client.uncordon()).active_jobs

    active = run_trio(call)
    print(f"Uncordoned: daemon is claiming new jobs again ({active} active).")
    return 0
