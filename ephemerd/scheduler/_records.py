"""One ``JobRecord`` per job, and the table that holds them.

The original kept seven parallel maps keyed by job; here everything known about a job
lives on its record, and the table indexes records by key and by runner name. Pending
records (jobs the forge has waiting that this daemon only shows) sit apart from the live
ones: they hold no slot, count as no work, and an admission of the same key replaces them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import trio

from ephemerd.capabilities import (
    Claim,
    JobEvent,
    JobKey,
    JobState,
    JobView,
    SandboxHandle,
)

__all__ = ["JobRecord", "JobTable"]

# States in which a record's runner exists and may pick up a job.
_RUNNER_UP = (JobState.STARTING, JobState.RUNNING)


class JobRecord:
    """Everything the scheduler knows about one job it admitted.

    A record is dispatched for its own job (its "intent"); the forge may hand the runner
    another job of the same labels, which ``bound_job`` then names.
    """

    def __init__(self, event: JobEvent, *, kind: str, queued_at: float, now: float) -> None:
        self.key = event.key
        self.event = event
        self.kind = kind
        self.state = JobState.PARKED
        self.detail = ""
        self.queued_at = queued_at
        self.admitted_at = now  # Trio time, for the dedup window and ordering
        self.started_at = 0.0
        self.finished_at = 0.0
        self.runner_up_at = 0.0  # Trio time the runner came up, to keep the newest spares
        self.exit_code: int | None = None
        self.runner_name = ""
        self.claim: Claim | None = None
        self.sandbox_name = ""
        self.image = ""
        self.handle: SandboxHandle | None = None
        self.bound_job: JobKey | None = None  # the job the forge says this runner runs
        self.observed_started = False  # the forge reported the job picked up (anywhere)
        self.started_on = ""  # the runner the forge named for this job, if it named one
        self.conclusion = ""  # the forge's verdict, once it reported the job completed
        self.ended_by_forge = ""  # conclusion of the job whose completion ended this runner
        self.retired = False  # a spare runner, torn down because its job ran elsewhere
        self.readmit = False  # abandoned by a cordon: forget the dedup stamp
        self.scope = trio.CancelScope()  # the whole job: kill_job, drain
        self.park_scope: trio.CancelScope | None = None  # waiting for a slot or a retry
        self.attempt_scope: trio.CancelScope | None = None  # one claim-and-run attempt
        self.finished = trio.Event()
        self.seen_at = now  # Trio time of the last event that kept a pending record

    @classmethod
    def pending(cls, event: JobEvent, *, kind: str, queued_at: float, now: float) -> JobRecord:
        """A display-only record of a job the forge has waiting, not claimed here."""
        record = cls(event, kind=kind, queued_at=queued_at, now=now)
        record.state = JobState.PENDING
        return record

    @property
    def live(self) -> bool:
        return not self.state.finished

    @property
    def runner_up(self) -> bool:
        return self.state in _RUNNER_UP and self.claim is not None

    @property
    def log_path(self) -> Path | None:
        return self.handle.log_path if self.handle is not None else None

    @property
    def _elsewhere_runner(self) -> str:
        return self.started_on if self.state is JobState.ELSEWHERE else ""

    def view(self, runner_of: Callable[[JobKey], str]) -> JobView:
        """The operator's view; the runner shown is the one really running the job."""
        event = self.event
        return JobView(
            key=self.key,
            kind=self.kind,
            state=self.state,
            repo=event.repo,
            job_name=event.job_name,
            run_id=event.run_id,
            runner_name=runner_of(self.key) or self._elsewhere_runner,
            sandbox=self.sandbox_name,
            image=self.image,
            labels=event.labels,
            queued_at=self.queued_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            exit_code=self.exit_code,
            detail=self.detail,
        )


class JobTable:
    """Live and recently finished records, by key and by (instance, runner name)."""

    def __init__(self) -> None:
        self._live: dict[JobKey, JobRecord] = {}
        self._finished: dict[JobKey, JobRecord] = {}
        self._pending: dict[JobKey, JobRecord] = {}  # shown only; never in _live
        self._runners: dict[tuple[str, str], JobRecord] = {}
        self._bound: dict[JobKey, JobRecord] = {}  # job -> our record whose runner runs it
        self.maybe_spares: set[JobRecord] = set()  # runners whose job another runner took
        # unstarted jobs whose own runner ran another job: still queued on the forge, so
        # demand that keeps a spare runner (until the job is seen started or admitted again)
        self.stranded: set[JobKey] = set()

    def __len__(self) -> int:
        return len(self._live)

    @property
    def finished_count(self) -> int:
        return len(self._finished)

    def live(self, key: JobKey) -> JobRecord | None:
        return self._live.get(key)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def get(self, key: JobKey) -> JobRecord | None:
        return self._live.get(key) or self._pending.get(key) or self._finished.get(key)

    def add(self, record: JobRecord) -> None:
        """Track an admitted record; it replaces a pending or finished one of its key."""
        self._live[record.key] = record
        self._pending.pop(record.key, None)
        self._finished.pop(record.key, None)

    def pending(self, key: JobKey) -> JobRecord | None:
        return self._pending.get(key)

    def add_pending(self, record: JobRecord) -> None:
        self._pending[record.key] = record

    def end_pending(self, record: JobRecord) -> None:
        """Move a pending record, now finished, to the finished ones."""
        if self._pending.get(record.key) is record:
            del self._pending[record.key]
            self._finished[record.key] = record

    def expire_pending(self, *, seen_before: float, keep: int) -> list[JobRecord]:
        """Forget pending records not seen since *seen_before* (Trio time), and the oldest
        beyond *keep*; return them (for watchers)."""
        ordered = sorted(self._pending.values(), key=lambda r: r.seen_at)
        surplus = max(0, len(ordered) - keep)
        gone = [r for i, r in enumerate(ordered) if i < surplus or r.seen_at < seen_before]
        for record in gone:
            del self._pending[record.key]
        return gone

    def bind_runner(self, record: JobRecord, runner_name: str) -> None:
        if record.runner_name:
            self._runners.pop((record.key.instance, record.runner_name), None)
        record.runner_name = runner_name
        self._runners[(record.key.instance, runner_name)] = record

    def by_runner(self, instance: str, runner_name: str) -> JobRecord | None:
        return self._runners.get((instance, runner_name))

    def bind_job(self, record: JobRecord, key: JobKey) -> None:
        """Note that the forge says *record*'s runner runs job *key*."""
        if record.bound_job is not None and self._bound.get(record.bound_job) is record:
            del self._bound[record.bound_job]
        record.bound_job = key
        self._bound[key] = record

    def runner_of(self, key: JobKey) -> str:
        """The name of our runner the forge says runs *key*, or ``""``."""
        bound = self._bound.get(key)
        if bound is not None and bound.live:
            return bound.runner_name
        own = self._live.get(key) or self._finished.get(key)
        if own is not None and own.bound_job in (None, key):
            return own.runner_name
        return ""

    def retire(self, record: JobRecord) -> None:
        """Move a finished record out of the live set; its runner name is forgotten."""
        if self._live.get(record.key) is record:
            del self._live[record.key]
        if self._runners.get((record.key.instance, record.runner_name)) is record:
            del self._runners[(record.key.instance, record.runner_name)]
        if record.bound_job is not None and self._bound.get(record.bound_job) is record:
            del self._bound[record.bound_job]
        self.maybe_spares.discard(record)
        self._finished[record.key] = record

    def live_records(self, instance: str | None = None) -> Iterator[JobRecord]:
        for record in list(self._live.values()):
            if instance is None or record.key.instance == instance:
                yield record

    def all_records(self) -> list[JobRecord]:
        return [*self._finished.values(), *self._pending.values(), *self._live.values()]

    def prune_finished(self, *, older_than: float, keep: int) -> list[JobRecord]:
        """Forget finished records past the retention; return them (for watchers)."""
        gone = [r for r in self._finished.values() if r.finished_at < older_than]
        ordered = sorted(self._finished.values(), key=lambda r: r.finished_at)
        surplus = len(ordered) - keep
        if surplus > 0:
            gone.extend(r for r in ordered[:surplus] if r not in gone)
        for record in gone:
            del self._finished[record.key]
        return gone
