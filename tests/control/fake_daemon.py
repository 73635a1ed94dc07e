"""A small in-memory ``ControlTarget`` and a script that serves one on a real socket.

``FakeTarget`` behaves like the scheduler as the control plane sees it: a job table,
cordon flags, per-job log files and a watch feed (snapshot first, then changes). It
counts its watchers so tests can check that a client going away leaks nothing.

Run as a script it serves a seeded target until SIGTERM/SIGINT::

    python -m tests.control.fake_daemon --socket /tmp/x/ephemerd.sock [--jobs 3]

and prints ``ready`` on stdout once the socket accepts connections.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from ephemerd import __version__
from ephemerd._errors import JobNotFound
from ephemerd.capabilities import (
    DaemonStatus,
    JobChange,
    JobEvent,
    JobKey,
    JobState,
    JobView,
    ProviderState,
    ProviderView,
)


class FakeTarget:
    def __init__(self, log_dir: Path, *, max_concurrent: int = 4) -> None:
        self.log_dir = log_dir
        self.max_concurrent = max_concurrent
        self.started_at = time.time()
        self.cordoned = False
        self.draining = False
        self.table: dict[JobKey, JobView] = {}
        self.logs: dict[JobKey, Path] = {}
        self.watchers = 0
        self.watch_opened = 0
        self._watchers_changed = trio.Event()
        self.cordoned_event = trio.Event()
        self.killed: list[JobKey] = []
        self.submitted: list[JobEvent] = []
        self._subscribers: set[trio.MemorySendChannel[list[JobChange]]] = set()
        self._finished: dict[JobKey, trio.Event] = {}
        self.providers = (
            ProviderView(instance="github", kind="github", state=ProviderState.OK),
            ProviderView(
                instance="forgejo-eu",
                kind="forgejo",
                state=ProviderState.BACKING_OFF,
                last_error="503 from forge",
            ),
        )

    # -- test drivers -------------------------------------------------------------------

    def put(self, view: JobView) -> None:
        self.table[view.key] = view
        event = self._finished.setdefault(view.key, trio.Event())
        if view.state.finished:
            event.set()
        self._publish([JobChange(job=view)])

    def add(
        self,
        instance: str,
        job_id: str,
        *,
        state: JobState = JobState.RUNNING,
        log: bytes | None = None,
        **fields: object,
    ) -> JobView:
        key = JobKey(instance, job_id)
        if log is not None:
            path = self.log_dir / f"{instance}-{job_id}.log"
            path.write_bytes(log)
            self.logs[key] = path
        view = JobView(
            key=key,
            kind=instance.split("-", maxsplit=1)[0],
            state=state,
            repo=str(fields.pop("repo", "acme/widgets")),
            job_name=str(fields.pop("job_name", f"build-{job_id}")),
            runner_name=str(fields.pop("runner_name", f"ephemerd-{instance}-{job_id}")),
            queued_at=float(fields.pop("queued_at", time.time() - 30)),  # type: ignore[arg-type]
            started_at=float(fields.pop("started_at", time.time() - 20)),  # type: ignore[arg-type]
            labels=("self-hosted", "linux"),
        )
        self.put(view)
        return view

    def finish(self, key: JobKey, state: JobState = JobState.SUCCEEDED) -> None:
        import msgspec

        self.put(
            msgspec.structs.replace(
                self.table[key],
                state=state,
                finished_at=time.time(),
                exit_code=0 if state is JobState.SUCCEEDED else 1,
            )
        )

    def remove(self, key: JobKey) -> None:
        view = self.table.pop(key)
        self._finished[key].set()
        self._publish([JobChange(job=view, removed=True)])

    async def wait_watchers(self, count: int) -> None:
        """Wait until exactly *count* watch subscriptions are open."""
        while self.watchers != count:
            await self._watchers_changed.wait()

    def _note_watchers(self, delta: int) -> None:
        self.watchers += delta
        self._watchers_changed.set()
        self._watchers_changed = trio.Event()

    def close_watchers(self) -> None:
        for send in list(self._subscribers):
            send.close()

    def _publish(self, changes: list[JobChange]) -> None:
        for send in list(self._subscribers):
            send.send_nowait(changes)

    # -- ControlTarget --------------------------------------------------------------------

    def status(self) -> DaemonStatus:
        active = sum(
            1
            for v in self.table.values()
            if v.state not in (JobState.PARKED,) and not v.state.finished
        )
        parked = sum(1 for v in self.table.values() if v.state is JobState.PARKED)
        return DaemonStatus(
            pid=os.getpid(),
            version=__version__,
            started_at=self.started_at,
            active_jobs=active,
            parked_jobs=parked,
            max_concurrent=self.max_concurrent,
            cordoned=self.cordoned,
            draining=self.draining,
            providers=self.providers,
        )

    def jobs(self) -> list[JobView]:
        return list(self.table.values())

    def job(self, key: JobKey) -> JobView:
        try:
            return self.table[key]
        except KeyError:
            raise JobNotFound(f"job {key} not found") from None

    async def kill_job(self, key: JobKey) -> JobView:
        self.job(key)
        self.killed.append(key)
        self.finish(key, JobState.CANCELLED)
        return self.table[key]

    def job_log_path(self, key: JobKey) -> Path | None:
        self.job(key)
        return self.logs.get(key)

    async def wait_job_finished(self, key: JobKey) -> None:
        self.job(key)
        await self._finished[key].wait()

    def submit_nowait(self, event: JobEvent) -> None:
        self.submitted.append(event)  # admits nothing: no test here runs executor jobs

    def cordon(self) -> DaemonStatus:
        self.cordoned = True
        self.cordoned_event.set()
        return self.status()

    def uncordon(self) -> DaemonStatus:
        self.cordoned = False
        return self.status()

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[trio.MemoryReceiveChannel[list[JobChange]]]:
        send, receive = trio.open_memory_channel[list[JobChange]](math.inf)
        send.send_nowait([JobChange(job=v) for v in self.table.values()])
        self._subscribers.add(send)
        self.watch_opened += 1
        self._note_watchers(+1)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            self._note_watchers(-1)
            send.close()


async def _serve(socket_path: Path, jobs: int) -> None:
    from ephemerd.control import open_control_server, pid_file

    target = FakeTarget(socket_path.parent)
    for n in range(jobs):
        target.add("github", str(100 + n), log=f"log of job {100 + n}\n".encode())
    with (
        trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals,
        pid_file(socket_path.parent / "ephemerd.pid"),
    ):
        async with open_control_server(target, socket_path=socket_path):
            print("ready", flush=True)
            async for _ in signals:
                target.draining = True
                return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    trio.run(_serve, args.socket, args.jobs)
    sys.exit(0)


if __name__ == "__main__":
    main()
