"""One job's life: park for a slot, claim a runner, run the sandbox, tear down, retry.

Each admitted job gets one task in the scheduler's jobs nursery running ``run_job``.
The runner is registered on the forge only after a concurrency slot is taken; whatever
ends the job (exit, timeout, kill, drain, the forge reporting it completed), teardown
runs shielded. A failed claim or start waits on its own retry ladder without a slot.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import trio

from ephemerd._errors import (
    EphemerdError,
    ForgeConflict,
    ForgeError,
    ForgeRateLimited,
    SandboxError,
)
from ephemerd._retry import Backoff
from ephemerd.capabilities import (
    Claim,
    ExitReason,
    JobState,
    Provider,
    SandboxExit,
    SandboxSpec,
)

from ._core import Core
from ._ladder import retry_delay
from ._names import runner_name, sanitize_id
from ._observer import ClaimOutcome, JobResult
from ._records import JobRecord
from ._spares import retire_spares
from ._teardown import release_runner, teardown

__all__ = ["conclusion_state", "run_job"]

log = logging.getLogger("ephemerd.scheduler")

_GOOD_CONCLUSIONS = frozenset({"success", "succeeded", "neutral", "skipped"})
_CANCELLED_CONCLUSIONS = frozenset({"cancelled", "canceled"})


def conclusion_state(conclusion: str) -> JobState:
    """The state a forge's conclusion word maps to."""
    word = conclusion.strip().lower()
    if word in _GOOD_CONCLUSIONS:
        return JobState.SUCCEEDED
    if word in _CANCELLED_CONCLUSIONS:
        return JobState.CANCELLED
    return JobState.FAILED


def _claim_outcome(error: ForgeError) -> ClaimOutcome:
    if isinstance(error, ForgeRateLimited):
        return "rate_limited"
    return "error" if error.retryable else "rejected"


def _exit_outcome(exit_: SandboxExit) -> tuple[JobState, str]:
    if exit_.succeeded:
        return JobState.SUCCEEDED, ""
    if exit_.reason is ExitReason.OOM:
        return JobState.FAILED, "killed: out of memory"
    if exit_.reason is ExitReason.KILLED:
        return JobState.FAILED, f"killed by a signal (exit code {exit_.exit_code})"
    if exit_.reason is ExitReason.LOST:
        return JobState.FAILED, "the sandbox was lost"
    if exit_.reason is ExitReason.CANCELLED:
        return JobState.CANCELLED, "cancelled on the forge's side"
    return JobState.FAILED, f"exit code {exit_.exit_code}"


async def run_job(core: Core, record: JobRecord) -> None:
    """Drive *record* to a finished state. Never raises except ``Cancelled``.

    Cancellation: ``record.scope`` (kill, drain) or the jobs nursery; teardown still runs.
    """
    provider = core.providers[record.key.instance]
    try:
        with record.scope:
            await _lifecycle(core, provider, record)
    except Exception as exc:  # a bug in one job must not take the daemon down
        record.detail = f"internal error: {exc}"
        log.exception("job %s (%s): crashed", record.key, record.event.repo)
        record.state = JobState.FAILED
    finally:
        _finish(core, record)


def _finish(core: Core, record: JobRecord) -> None:
    if not record.state.finished:
        record.state = JobState.CANCELLED
        record.detail = record.detail or "cancelled"
    record.finished_at = core.wall_clock()
    # Durations on the monotonic clock: the wall clock may jump.
    duration = trio.current_time() - record.runner_up_at if record.started_at else None
    if duration is not None:
        core.counters.observe_duration(duration)
    core.counters.jobs_finished[record.state.value] += 1
    result: JobResult = (
        "succeeded"
        if record.state is JobState.SUCCEEDED
        else "failed"
        if record.state is JobState.FAILED
        else "cancelled"
    )
    core.observer.job_finished(record.key.instance, result, duration=duration)
    if record.bound_job not in (None, record.key) and not record.observed_started:
        # Our runner ran another job; this one still waits on the forge: its next
        # queued event may dispatch it again, and until then it keeps a spare.
        record.readmit = True
        core.table.stranded.add(record.key)
    if record.readmit:
        core.admission.unstamp(record.key)
    core.retire(record)
    core.changed(record)
    record.finished.set()
    detail = f" {record.detail}" if record.detail else ""
    core.log_job(logging.INFO, record, "%s%s", record.state.value, detail)
    retire_spares(core, record.key.instance)


def _abandon(core: Core, record: JobRecord, why: str, *, readmit: bool) -> None:
    record.readmit = readmit
    core.set_state(record, JobState.CANCELLED, f"abandoned: {why}")
    core.log_job(logging.INFO, record, "abandoning dispatch: %s", why)


def _gate(core: Core, record: JobRecord) -> str:
    """Why a job may not go on to claim a runner now, or ``""``."""
    if core.draining:
        return "the daemon is draining"
    if core.cordoned:
        return "the daemon is cordoned"
    if record.observed_started:
        return "the job was picked up by another runner"
    return ""


async def _lifecycle(core: Core, provider: Provider, record: JobRecord) -> None:
    backoffs = {
        "claim": Backoff(core.options.claim_retry, rng=core.rng),
        "start": Backoff(core.options.start_retry, rng=core.rng),
    }
    while True:
        core.set_state(record, JobState.PARKED)
        with trio.CancelScope() as park:
            record.park_scope = park
            await core.slots.acquire(record)
        record.park_scope = None
        if park.cancelled_caught or _gate(core, record):
            core.slots.release(record)
            why = _gate(core, record) or "cancelled while parked"
            _abandon(core, record, why, readmit=not record.observed_started)
            return
        try:
            failure = await _attempt(core, provider, record, backoffs)
        finally:
            core.slots.release(record)
        if failure is None:
            return
        error, backoff, what = failure.error, failure.backoff, failure.what
        delay = retry_delay(
            backoff,
            error,
            provider,
            now=trio.current_time(),
            wall_now=core.wall_clock(),
            margin=core.options.rate_limit_margin,
            jitter=core.options.rate_limit_jitter,
            hint_max_age=core.options.rate_hint_max_age,
            rng=core.rng,
        )
        if delay is None:
            detail = f"giving up after {backoff.failures} failed {what}s: {error}"
            core.set_state(record, JobState.FAILED, detail)
            return
        if _gate(core, record):
            _abandon(core, record, _gate(core, record), readmit=not record.observed_started)
            return
        core.counters.retries += 1
        core.set_state(record, JobState.RETRYING, f"{what} failed: {error}; retry in {delay:.0f}s")
        core.log_job(logging.INFO, record, "scheduled retry in %.1fs: %s", delay, error)
        with trio.CancelScope() as wait:
            record.park_scope = wait
            await trio.sleep(delay)
        record.park_scope = None
        if wait.cancelled_caught or _gate(core, record):
            why = _gate(core, record) or "retry dropped"
            _abandon(core, record, why, readmit=not record.observed_started)
            return


async def _claim(core: Core, provider: Provider, record: JobRecord) -> Claim:
    """Register a runner for *record*, with fresh names while the name is taken.

    Raises:
        ForgeError: the last refusal.
    Cancellation: a runner the forge may have registered is released by name first.
    """
    instance, job_id = record.key.instance, record.key.job_id
    labels = core.options.runner_labels(instance)
    tries = core.options.conflict_tries
    for attempt in range(1, tries + 1):
        name = runner_name(instance, record.event.repo)
        core.table.bind_runner(record, name)
        core.journal.record_runner(instance, job_id, name)
        core.counters.claims += 1
        try:
            claim = await provider.claim_job(record.event, runner_name=name, labels=labels)
        except ForgeConflict as exc:
            core.observer.claim(instance, "conflict")
            core.journal.forget_runner(instance, name)
            if attempt == tries:
                raise
            core.log_job(logging.INFO, record, "runner name %s taken (%s); new name", name, exc)
            continue
        except ForgeError as exc:
            core.observer.claim(instance, _claim_outcome(exc))
            core.journal.forget_runner(instance, name)
            raise
        except BaseException:
            core.observer.claim(instance, "error")
            with trio.move_on_after(core.options.teardown_timeout, shield=True):
                await release_runner(provider, core.journal, Claim(runner_id="", runner_name=name))
            raise
        if claim.runner_name != name:
            core.journal.forget_runner(instance, name)
            core.journal.record_runner(instance, job_id, claim.runner_name)
            core.table.bind_runner(record, claim.runner_name)
        core.journal.record_claim(instance, claim)
        core.observer.claim(instance, "claimed")
        return claim
    raise AssertionError("unreachable")  # pragma: no cover


async def _claim_with_image(core: Core, provider: Provider, record: JobRecord) -> str:
    """Claim a runner (into ``record.claim``) and return the image its sandbox runs.

    The job's own image is read from the forge while the runner is being registered: both
    need only the event, and one after the other they would put two forge round trips in
    a row on every pickup. A claim that names its image makes the lookup moot.

    Raises:
        ForgeError: the claim's last refusal; a failed lookup only loses the job's image.
    """
    found: list[str | None] = []
    refusal: ForgeError | None = None

    async def look_up() -> None:
        try:
            found.append(await provider.fetch_job_image(record.event))
        except ForgeError as exc:
            core.log_job(logging.WARNING, record, "cannot read the job's image: %s", exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(look_up)
        try:
            # no checkpoint between the claim and ``record.claim``: teardown must see it
            record.claim = await _claim(core, provider, record)
        except ForgeError as exc:
            refusal = exc
            nursery.cancel_scope.cancel()
        else:
            if record.claim.image:
                nursery.cancel_scope.cancel()
    if refusal is not None:
        raise refusal
    assert record.claim is not None
    image = record.claim.image or (found[0] if found else None)
    return image or provider.default_images.get("linux", "") or core.options.default_image


def _spec(core: Core, record: JobRecord, claim: Claim, *, image: str, drives: bool) -> SandboxSpec:
    options = core.options
    name = sanitize_id(claim.runner_name) or record.runner_name
    return SandboxSpec(
        name=name,
        image=image,
        argv=options.keepalive_argv if drives else claim.entrypoint,
        env=dict(claim.env),
        files=claim.files,
        image_mounts=claim.image_mounts,
        workdir=claim.workdir,
        hostname=name[:63].rstrip("._-"),
        limits=options.limits,
        network=options.network,
        labels={
            "ephemerd.instance": record.key.instance,
            "ephemerd.job-id": record.key.job_id,
            "ephemerd.runner": claim.runner_name,
            "ephemerd.repo": record.event.repo,
        },
    )


class _Retry(NamedTuple):
    error: EphemerdError
    backoff: Backoff
    what: str


class _Outcome(NamedTuple):
    state: JobState
    detail: str = ""


async def _attempt(
    core: Core, provider: Provider, record: JobRecord, backoffs: dict[str, Backoff]
) -> _Retry | None:
    """One claim-and-run with a slot held; what to retry, or ``None`` when done.

    Cancellation: teardown runs shielded before the cancellation goes on.
    """
    record.claim = record.handle = None
    record.sandbox_name = ""
    result: _Retry | _Outcome = _Outcome(JobState.CANCELLED, "cancelled")
    with trio.CancelScope() as attempt:
        record.attempt_scope = attempt
        try:
            result = await _claim_and_run(core, provider, record, backoffs)
        finally:
            record.attempt_scope = None
            if record.sandbox_name or record.claim is not None:
                core.set_state(record, JobState.STOPPING, record.detail)
                await teardown(
                    provider=provider,
                    backend=core.backend,
                    journal=core.journal,
                    claim=record.claim,
                    sandbox_name=record.sandbox_name,
                    handle=record.handle,
                    budget=core.options.teardown_timeout,
                )
    if attempt.cancelled_caught:
        if record.retired:
            result = _Outcome(JobState.CANCELLED, "spare runner retired: its job ran elsewhere")
        elif record.ended_by_forge:
            bound = record.bound_job
            ran = f" (ran {bound})" if bound is not None and bound != record.key else ""
            state = conclusion_state(record.ended_by_forge)
            result = _Outcome(state, f"forge: {record.ended_by_forge}{ran}")
    if isinstance(result, _Retry):
        return result
    core.set_state(record, result.state, result.detail)
    return None


async def _claim_and_run(
    core: Core, provider: Provider, record: JobRecord, backoffs: dict[str, Backoff]
) -> _Retry | _Outcome:
    core.set_state(record, JobState.CLAIMING)
    claim_began = trio.current_time()
    try:
        image = await _claim_with_image(core, provider, record)
    except ForgeError as exc:
        core.counters.claim_failures += 1
        if not exc.retryable:
            core.log_job(logging.ERROR, record, "claim refused, dropping the job: %s", exc)
            return _Outcome(JobState.FAILED, f"claim refused: {exc}")
        core.log_job(logging.WARNING, record, "claim failed: %s", exc)
        return _Retry(exc, backoffs["claim"], "claim")
    claim = record.claim
    assert claim is not None
    backoffs["claim"].reset()
    core.set_state(record, JobState.STARTING)
    if not image:
        return _Outcome(JobState.FAILED, "no image: neither the job, provider nor config names one")
    driver = core.drivers.get(record.key.instance)
    spec = _spec(core, record, claim, image=image, drives=driver is not None)
    record.image, record.sandbox_name = image, spec.name
    core.journal.record_sandbox(spec.name, record.key.instance, record.key.job_id)
    try:
        record.handle = handle = await core.backend.create(spec)
        await handle.start()
    except SandboxError as exc:
        core.counters.start_failures += 1
        core.log_job(logging.WARNING, record, "sandbox start failed: %s", exc)
        return _Retry(exc, backoffs["start"], "sandbox start")
    backoffs["start"].reset()
    record.runner_up_at = trio.current_time()
    record.started_at = core.wall_clock()
    core.observer.job_started(record.key.instance, startup=record.runner_up_at - claim_began)
    core.set_state(record, JobState.RUNNING)
    with trio.move_on_after(core.options.job_timeout):
        if driver is not None:
            exit_ = await driver.drive_job(claim, handle)
        else:
            exit_ = await handle.wait()
        record.exit_code = exit_.exit_code
        if record.conclusion:
            return _Outcome(conclusion_state(record.conclusion), f"forge: {record.conclusion}")
        return _Outcome(*_exit_outcome(exit_))
    core.log_job(logging.WARNING, record, "job timeout, killing it")
    return _Outcome(JobState.FAILED, f"job timeout after {core.options.job_timeout:.0f}s")
