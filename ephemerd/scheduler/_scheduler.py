"""The public ``Scheduler``: intake, the job tasks, drain, and the control-plane view.

Nursery tree under ``Scheduler.run``::

    run
    └── jobs nursery            one task per admitted job (park, claim, run, teardown)
        └── intake nursery      one supervisor per polling provider, the event
                                consumer, housekeeping; cancelled first by a drain
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path

import trio

from ephemerd import __version__
from ephemerd._errors import Cordoned, JobNotFound, SchedulerError
from ephemerd.capabilities import (
    DaemonStatus,
    JobChange,
    JobEvent,
    JobKey,
    JobState,
    JobView,
    Poll,
    PollConfig,
    Provider,
    ProviderView,
    SandboxBackend,
)

from ._core import Core
from ._job import run_job
from ._journal import Journal
from ._metrics import SchedulerStatistics
from ._observer import EventSource, SchedulerObserver
from ._options import SchedulerOptions
from ._pending import expire_pending
from ._records import JobRecord
from ._routing import route_event
from ._supervise import supervise_poll
from ._sweep import SweepReport, sweep_leftovers

__all__ = ["Scheduler"]

log = logging.getLogger("ephemerd.scheduler")

_ACTIVE = (JobState.CLAIMING, JobState.STARTING, JobState.RUNNING, JobState.STOPPING)
_HOUSEKEEPING_INTERVAL = 30.0
_INTAKE_BUFFER = 1024


class Scheduler:
    """Turns forge events into sandboxed jobs, for any providers and any sandbox backend.

    Usage (the daemon)::

        scheduler = Scheduler(providers=[...], sandbox=backend, journal=Journal(path),
                              options=SchedulerOptions(max_concurrent=4))
        await nursery.start(scheduler.run)   # sweeps leftovers, then starts intake
        ...
        await scheduler.drain()              # on SIGTERM; again means "stop now"

    Webhook deliveries go in through ``submit`` (or ``submit_nowait``). The scheduler satisfies
    ``ephemerd.control.ControlTarget``.

    Args:
        providers: the provider instances; names must be unique.
        sandbox: the backend that creates sandboxes.
        journal: where created runners and sandboxes are recorded until torn down.
        options: admission, concurrency, timeouts and retry ladders.
        poll_configs: per-instance ``PollConfig``; default: ``options.poll_interval`` and
            this host's runner labels.
        wall_clock: Unix time source (rate-limit resets, views); tests may fix it.
        rng: randomness of retry jitter, for reproducible tests.
        observer: receives countable moments (``ephemerd.metrics.Metrics`` fits).

    Raises:
        SchedulerError: two providers share a name.
    """

    def __init__(
        self,
        *,
        providers: Sequence[Provider],
        sandbox: SandboxBackend,
        journal: Journal,
        options: SchedulerOptions | None = None,
        poll_configs: Mapping[str, PollConfig] | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        observer: SchedulerObserver | None = None,
    ) -> None:
        options = options or SchedulerOptions()
        self._core = Core(
            providers=providers,
            sandbox=sandbox,
            journal=journal,
            options=options,
            wall_clock=wall_clock,
            rng=rng,
            observer=observer,
        )
        labels = options.labels.runner_labels()
        self._poll_configs = {
            name: (poll_configs or {}).get(name)
            or PollConfig(interval=options.poll_interval, labels=labels)
            for name in self._core.providers
        }
        self._started_at = 0.0
        self._ran = False
        self._intake: trio.CancelScope | None = None
        self._stopped = trio.Event()
        self.last_sweep: SweepReport | None = None

    @property
    def options(self) -> SchedulerOptions:
        return self._core.options

    # -- running ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sweep leftovers of a previous run, then take jobs until drained.

        ``task_status.started()`` is called once the sweep is done and intake runs.
        Returns after a drain once every job is torn down. Each provider's ``stop`` is
        called on the way out.

        Raises:
            SchedulerError: ``run`` was called before.
        Cancellation: every job is cancelled and torn down (shielded), then it re-raises.
        """
        if self._ran:
            raise SchedulerError("Scheduler.run may be called only once")
        self._ran = True
        core = self._core
        self._started_at = core.wall_clock()
        try:
            self.last_sweep = await sweep_leftovers(core)
            send, receive = trio.open_memory_channel[JobEvent](_INTAKE_BUFFER)
            async with trio.open_nursery() as jobs:
                core.jobs_nursery = jobs
                async with trio.open_nursery() as intake:
                    self._intake = intake.cancel_scope
                    if core.draining:
                        intake.cancel_scope.cancel()
                    intake.start_soon(self._consume, receive)
                    intake.start_soon(self._housekeeping)
                    async with send:
                        for name, provider in core.providers.items():
                            tracker = core.trackers[name]
                            if not isinstance(provider, Poll):
                                tracker.ok(core.wall_clock())
                                continue
                            intake.start_soon(
                                partial(
                                    supervise_poll,
                                    provider,
                                    tracker,
                                    self._poll_configs[name],
                                    send.clone(),
                                    policy=core.options.poll_restart,
                                    wall_clock=core.wall_clock,
                                    on_error=core.observer.poll_error,
                                ),
                                name=f"poll {name}",
                            )
                    task_status.started()
                log.info("intake stopped; waiting for %d job(s)", len(core.table))
        finally:
            core.jobs_nursery = None
            await self._stop_providers()
            self._stopped.set()

    async def _consume(self, receive: trio.MemoryReceiveChannel[JobEvent]) -> None:
        async with receive:
            async for event in receive:
                try:
                    self.submit_nowait(event, source="poll")
                except Exception:  # one bad event must not stop intake
                    log.exception("cannot handle an event for job %s", event.key)

    async def _housekeeping(self) -> None:
        core = self._core
        while True:
            await trio.sleep(_HOUSEKEEPING_INTERVAL)
            core.admission.prune(trio.current_time())
            expire_pending(core)
            self._prune_finished()

    def _prune_finished(self) -> None:
        core = self._core
        older_than = core.wall_clock() - core.options.finished_retention
        for record in core.table.prune_finished(
            older_than=older_than, keep=core.options.finished_keep
        ):
            core.hub.publish(JobChange(job=core.view(record), removed=True))

    async def _stop_providers(self) -> None:
        with trio.move_on_after(self._core.options.teardown_timeout, shield=True):
            for provider in self._core.providers.values():
                try:
                    await provider.stop()
                except Exception as exc:  # one provider's failure must not skip the others
                    log.warning("%s: stop failed: %s", provider.name, exc)

    def _spawn(self, record: JobRecord) -> None:
        nursery = self._core.jobs_nursery
        if nursery is None:
            raise SchedulerError("the scheduler is not running")
        nursery.start_soon(run_job, self._core, record, name=f"job {record.key}")

    def submit_nowait(self, event: JobEvent, *, source: EventSource = "webhook") -> None:
        """Apply one event now (a webhook delivery, a test). Never blocks.

        Raises:
            SchedulerError: the scheduler is not running.
        """
        if self._core.jobs_nursery is None:
            raise SchedulerError("the scheduler is not running")
        route_event(self._core, event, self._spawn, source)
        if self._core.table.finished_count > self._core.options.finished_keep * 2:
            self._prune_finished()

    async def submit(self, event: JobEvent, *, source: EventSource = "webhook") -> None:
        """``submit_nowait`` as an awaitable, the shape the webhook intake calls.

        Raises:
            SchedulerError: the scheduler is not running.
        """
        self.submit_nowait(event, source=source)
        await trio.lowlevel.checkpoint()

    async def drain(self, grace: float | None = None) -> None:
        """Stop claiming at once, let running jobs finish, then cancel what is left.

        A second call (a second SIGTERM) cancels every job now. Returns once ``run`` has
        ended (or at once if it never started).

        Args:
            grace: seconds to let jobs finish; ``options.shutdown_timeout`` by default.
        Cancellation: safe; jobs keep running (the caller's nursery decides their fate).
        """
        core = self._core
        if core.draining:
            self.stop_now()
        else:
            core.draining = True
            core.set_cordoned(True)
            core.wake_parked()
            if self._intake is not None:
                self._intake.cancel()
            wait = core.options.shutdown_timeout if grace is None else grace
            log.info("waiting for running jobs to finish (up to %.0fs)", wait)
            with trio.move_on_after(wait):
                await core.idle.wait()
            if len(core.table):
                log.warning("shutdown timeout reached, force-killing remaining jobs")
                self.stop_now()
            else:
                log.info("all jobs finished cleanly")
        if self._ran:
            await self._stopped.wait()

    def stop_now(self) -> None:
        """Cancel every job now (teardown still runs) and stop intake."""
        core = self._core
        core.draining = True
        core.set_cordoned(True)
        if self._intake is not None:
            self._intake.cancel()
        for record in core.table.live_records():
            record.detail = record.detail or "stopped at shutdown"
            record.scope.cancel()

    # -- views -----------------------------------------------------------------------

    def statistics(self) -> SchedulerStatistics:
        """Counters and gauges, frozen, for ``/metrics``."""
        core = self._core
        return core.counters.snapshot(
            active=core.count(*_ACTIVE),
            parked=core.count(JobState.PARKED),
            retrying=core.count(JobState.RETRYING),
            max_concurrent=core.options.max_concurrent,
            cordoned=core.cordoned,
            draining=core.draining,
        )

    def providers(self) -> tuple[ProviderView, ...]:
        core = self._core
        return tuple(
            tracker.view(
                active_jobs=sum(1 for r in core.table.live_records(name) if r.state in _ACTIVE)
            )
            for name, tracker in core.trackers.items()
        )

    def status(self) -> DaemonStatus:
        core = self._core
        return DaemonStatus(
            pid=os.getpid(),
            version=__version__,
            started_at=self._started_at,
            active_jobs=core.count(*_ACTIVE),
            parked_jobs=core.count(JobState.PARKED),
            max_concurrent=core.options.max_concurrent,
            cordoned=core.cordoned,
            draining=core.draining,
            providers=self.providers(),
        )

    def jobs(self) -> list[JobView]:
        """Every tracked job, pending, parked, running and recently finished, oldest first."""
        records = sorted(self._core.table.all_records(), key=lambda r: r.admitted_at)
        return [self._core.view(r) for r in records]

    def _record(self, key: JobKey) -> JobRecord:
        record = self._core.table.get(key)
        if record is None:
            raise JobNotFound(f"no job {key} is known to this daemon")
        return record

    def job(self, key: JobKey) -> JobView:
        return self._core.view(self._record(key))

    async def kill_job(self, key: JobKey) -> JobView:
        """Cancel the job and wait for its teardown.

        Raises:
            JobNotFound: no such job, or it is only pending on the forge (nothing runs here).
        """
        record = self._pending_refused(self._record(key))
        if record.live:
            record.detail = "killed by the operator"
            record.scope.cancel()
            await record.finished.wait()
        return self._core.view(record)

    def job_log_path(self, key: JobKey) -> Path | None:
        return self._record(key).log_path

    async def wait_job_finished(self, key: JobKey) -> None:
        """Raises: JobNotFound: no such job, or it is only pending on the forge."""
        await self._pending_refused(self._record(key)).finished.wait()

    @staticmethod
    def _pending_refused(record: JobRecord) -> JobRecord:
        if record.state is JobState.PENDING:
            raise JobNotFound(f"job {record.key} is only pending on the forge; nothing runs here")
        return record

    def cordon(self) -> DaemonStatus:
        """Stop claiming now; parked and retrying jobs are abandoned, running ones go on."""
        core = self._core
        if not core.cordoned:
            log.info("cordoned: claiming no new jobs")
        core.set_cordoned(True)
        core.wake_parked()
        return self.status()

    def uncordon(self) -> DaemonStatus:
        """Claim again; jobs refused meanwhile are admitted on their next event.

        Raises:
            Cordoned: the daemon is draining.
        """
        core = self._core
        if core.draining:
            raise Cordoned("the daemon is draining; it cannot be uncordoned")
        if core.cordoned:
            log.info("uncordoned: claiming jobs again")
        core.set_cordoned(False)
        return self.status()

    def watch(self) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[list[JobChange]]]:
        """A snapshot of every job, then coalesced batches of changes."""
        return self._core.hub.watch()
