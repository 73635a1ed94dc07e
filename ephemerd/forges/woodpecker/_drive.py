"""Running one Woodpecker workflow inside its sandbox and reporting it to the server.

The order an agent follows: ``Init``; then stage after stage (the steps of a stage side by
side), each step ``exec``'d in the sandbox with an ``Update`` when it starts and one when
it ends, its output shipped as ``Log`` batches; finally ``Done`` with the workflow state.
``Wait`` runs alongside: when the server cancels the workflow, the running execs are
cancelled (which kills their processes) and ``Done`` reports ``canceled``.

Step failure follows the payload: once a step has failed, only steps with ``on_failure``
run; before that, only steps with ``on_success`` (a server sets it on every ordinary step).
A step with ``failure: ignore`` never fails the workflow. Lease extension is not done
here: the provider extends every workflow it holds, from ``Next`` to ``Done``.

Every report retries while the server is unreachable, so a server that goes away and
comes back still receives the result; ``Done`` is sent shielded, even when the job is
cancelled from the ephemerd side.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import msgspec
import trio

from ephemerd._errors import ForgeError, ForgeUnavailable, SandboxError
from ephemerd._proto import proto as pb
from ephemerd._retry import Backoff
from ephemerd.capabilities import SandboxHandle

from ._client import AgentClient
from ._logs import LogShipper, StepLog
from ._options import WoodpeckerOptions
from ._payload import FAILURE_IGNORE, Step, WorkflowConfig, step_command

__all__ = ["CANCELED", "WorkflowResult", "drive_workflow"]

log = logging.getLogger("ephemerd.forges.woodpecker")

CANCELED = "canceled"
_DEFAULT_TIMEOUT_MINUTES = 60


class WorkflowResult(msgspec.Struct, frozen=True, kw_only=True):
    """How a workflow ended, as reported in ``Done``.

    Attributes:
        error: the workflow's error ("" on success).
        canceled: the server (or ephemerd) cancelled it.
        exit_code: the first failing step's exit code (0 on success).
        reported: ``Done`` reached the server.
    """

    error: str = ""
    canceled: bool = False
    exit_code: int = 0
    reported: bool = False


class _Run:
    """The mutable state of one workflow run."""

    def __init__(self, client: AgentClient, options: WoodpeckerOptions, workflow_id: str) -> None:
        self.client = client
        self.options = options
        self.id = workflow_id
        self.error = ""
        self.exit_code = 0
        self.canceled_by_server = False
        self.running: dict[str, pb.StepState] = {}  # step uuid -> its started state
        self.started = int(time.time())

    async def report(self, method_name: str, request: pb.UpdateRequest | pb.InitRequest) -> None:
        stub = self.client.stub
        method = stub.update if method_name == "Update" else stub.init
        await self.client.call_retrying(
            method,
            request,
            rpc_timeout=self.options.rpc_timeout,
            give_up_after=self.options.report_timeout,
            what=method_name,
        )

    async def update(self, state: pb.StepState) -> None:
        try:
            await self.report("Update", pb.UpdateRequest(id=self.id, state=state))
        except ForgeError as exc:  # a lost step update must not stop the workflow
            log.warning("workflow %s: step update not delivered: %s", self.id, exc)


def _extra_env(options: WoodpeckerOptions, started: int) -> dict[str, str]:
    return {
        "CI_MACHINE": options.hostname,
        "CI_PIPELINE_STARTED": str(started),
        "CI_STEP_STARTED": str(started),
        "CI_SYSTEM_PLATFORM": options.platform,
    }


def _skipped(step: Step, failed: bool) -> bool:
    return (failed and not step.on_failure) or (not failed and not step.on_success)


async def _run_step(
    run: _Run,
    step: Step,
    sandbox: SandboxHandle,
    shipper: LogShipper,
    *,
    failed: bool,
    background: trio.Nursery,
) -> None:
    if _skipped(step, failed):
        await run.update(pb.StepState(step_uuid=step.uuid, skipped=True))
        return
    started = int(time.time())
    begun = pb.StepState(step_uuid=step.uuid, started=started)
    run.running[step.uuid] = begun
    await run.update(begun)
    steplog = StepLog(shipper, step.uuid)
    error, code = "", 0
    try:
        command = step_command(step, extra_env=_extra_env(run.options, run.started))
        if step.detach:  # a service: it runs until the workflow ends
            background.start_soon(_run_detached, sandbox, command.argv, command.env, steplog)
            return
        code = await sandbox.exec(
            command.argv, env=command.env, workdir=command.workdir, output=steplog.write
        )
    except (ForgeError, SandboxError) as exc:
        error, code = str(exc), 1
    finally:
        steplog.close()
    run.running.pop(step.uuid, None)
    await shipper.flush()
    await run.update(
        pb.StepState(
            step_uuid=step.uuid,
            started=started,
            finished=int(time.time()),
            exited=True,
            exit_code=code,
            error=error,
        )
    )
    if code != 0 and step.failure != FAILURE_IGNORE and not run.error:
        run.error = error or f"step {step.name!r} failed with exit code {code}"
        run.exit_code = code


async def _run_detached(
    sandbox: SandboxHandle, argv: tuple[str, ...], env: dict[str, str], steplog: StepLog
) -> None:
    try:
        await sandbox.exec(argv, env=env, output=steplog.write)
    except SandboxError as exc:
        log.info("detached step ended: %s", exc)
    finally:
        steplog.close()


async def _run_stages(
    run: _Run, config: WorkflowConfig, sandbox: SandboxHandle, shipper: LogShipper
) -> None:
    async with trio.open_nursery() as background:
        for stage in config.pipeline:
            failed = bool(run.error)
            async with trio.open_nursery() as nursery:
                for step in stage.steps:
                    nursery.start_soon(
                        functools.partial(
                            _run_step,
                            run,
                            step,
                            sandbox,
                            shipper,
                            failed=failed,
                            background=background,
                        )
                    )
        background.cancel_scope.cancel()


async def _watch_cancel(run: _Run, cancel: Callable[[], None]) -> None:
    """Block in ``Wait``; on a cancel from the server, cancel the run."""
    backoff = Backoff(run.options.retry)
    while True:
        try:
            reply = await run.client.call(
                run.client.stub.wait, pb.WaitRequest(id=run.id), what="Wait"
            )
        except ForgeUnavailable as exc:
            delay = backoff.next_delay(trio.current_time()) or run.options.retry.schedule[-1]
            log.debug("workflow %s: %s; waiting again in %.2fs", run.id, exc, delay)
            await trio.sleep(delay)
            continue
        except ForgeError as exc:  # as the agent does: a failed Wait cancels the workflow
            log.warning("workflow %s: Wait failed, cancelling: %s", run.id, exc)
            reply = pb.WaitResponse(canceled=True)
        if reply.canceled:
            log.info("workflow %s: cancelled by the server", run.id)
            run.canceled_by_server = True
            cancel()
        return


async def drive_workflow(
    client: AgentClient,
    options: WoodpeckerOptions,
    *,
    workflow_id: str,
    config: WorkflowConfig,
    timeout_minutes: int,
    sandbox: SandboxHandle,
) -> WorkflowResult:
    """Run the workflow's steps in *sandbox* and report everything to the server.

    Raises:
        ForgeError: ``Init`` could not be delivered (nothing ran).
    Cancellation: running steps are cancelled, ``Done`` reports ``canceled`` (shielded,
        within ``options.report_timeout``), then the cancellation goes on.
    """
    run = _Run(client, options, workflow_id)
    await run.report(
        "Init", pb.InitRequest(id=workflow_id, state=pb.WorkflowState(started=run.started))
    )

    async def send_logs(batch: list[pb.LogEntry]) -> None:
        try:
            await client.call_retrying(
                client.stub.log,
                pb.LogRequest(log_entries=batch),
                rpc_timeout=options.rpc_timeout,
                give_up_after=options.report_timeout,
                what="Log",
            )
        except ForgeError as exc:
            log.warning("workflow %s: %d log lines lost: %s", workflow_id, len(batch), exc)

    shipper = LogShipper(
        send_logs,
        flush_interval=options.log_flush_interval,
        batch_lines=options.log_batch_lines,
        masked=config.masked_values(),
    )
    minutes = timeout_minutes if timeout_minutes > 0 else _DEFAULT_TIMEOUT_MINUTES
    result: WorkflowResult | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(shipper.run)
            with trio.CancelScope() as steps:
                nursery.start_soon(_watch_cancel, run, steps.cancel)
                with trio.move_on_after(minutes * 60) as timer:
                    await _run_stages(run, config, sandbox, shipper)
                if timer.cancelled_caught:
                    run.error = run.error or f"workflow timed out after {minutes} minutes"
                    run.exit_code = run.exit_code or 1
            nursery.cancel_scope.cancel()
        canceled = run.canceled_by_server
        result = WorkflowResult(
            error=CANCELED if canceled else run.error,
            canceled=canceled,
            exit_code=run.exit_code or (1 if run.error or canceled else 0),
        )
    finally:
        final = result or WorkflowResult(error=CANCELED, canceled=True, exit_code=1)
        with trio.move_on_after(options.report_timeout, shield=True):
            reported = await _finish(run, shipper, final)
            result = msgspec.structs.replace(final, reported=reported)
    assert result is not None
    return result


async def _finish(run: _Run, shipper: LogShipper, result: WorkflowResult) -> bool:
    """Flush logs, close steps cut short, send ``Done``; whether ``Done`` arrived."""
    await shipper.flush()
    now = int(time.time())
    for state in list(run.running.values()):
        state.finished, state.exited, state.canceled = now, True, True
        state.error = CANCELED
        await run.update(state)
    run.running.clear()
    done = pb.DoneRequest(
        id=run.id,
        state=pb.WorkflowState(
            started=run.started, finished=now, error=result.error, canceled=result.canceled
        ),
    )
    try:
        await run.client.call_retrying(
            run.client.stub.done,
            done,
            rpc_timeout=run.options.rpc_timeout,
            give_up_after=run.options.report_timeout,
            what="Done",
        )
    except ForgeError as exc:
        log.error("workflow %s: Done not delivered: %s", run.id, exc)
        return False
    return True
