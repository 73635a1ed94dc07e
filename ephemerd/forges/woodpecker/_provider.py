"""The Woodpecker provider: ephemerd is an agent whose every workflow runs in a fresh sandbox.

Lifecycle (as a Woodpecker agent): ``Auth`` → ``Version`` (protocol 16 or refuse) →
``RegisterAgent`` (capacity = ``max_concurrent``) → ``ReportHealth`` every 10 s → ``Next``
long polls → per workflow ``Init``/``Update``/``Log``/``Extend``/``Done`` with ``Wait``
alongside. The agent id is kept in the data dir, so restarts reuse the server's record;
for the same reason the agent is not unregistered at stop (the server would delete the
record) unless the id could not be kept, as Woodpecker's own agent does.

Slots: the server assigns a workflow the moment ``Next`` returns, so a ``Next`` must only
run when ephemerd will run what it gets. The provider holds ``max_concurrent`` tokens; a
poll worker takes one before ``Next`` and the token stays with the workflow until it is
``Done`` (or given up), so ``Next`` calls plus unfinished workflows never exceed the
capacity. The scheduler's own slots are shared with other providers, so the scheduler
also tells the provider how many are free (``FollowsCapacity``): ``Next`` calls under way
plus workflows not yet claimed stay below that count, and when other forges' jobs take
the slots, the newest ``Next`` calls are withdrawn, so the server gives the work to an
agent that can run it now. A workflow that still ends up waiting in the scheduler keeps
its lease extended; one the scheduler does not claim within ``claim_timeout`` is let go:
its lease is no longer extended and the server requeues it; that worker then pauses as
long before its next ``Next``. A cordon or drain withdraws every ``Next`` at once
(``FollowsCordon``) and lets go of unclaimed workflows.

The agent secret or token stays in this process: claims carry no files and no
environment, and steps get only the payload's environment.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import asynccontextmanager

import msgspec
import trio

from ephemerd._aio import open_aio_loop
from ephemerd._errors import ForgeError, ForgeNotFound, ForgeProtocolError, ForgeUnavailable
from ephemerd._proto import proto as pb
from ephemerd.capabilities import (
    Claim,
    ExitReason,
    JobAction,
    JobEvent,
    PollConfig,
    SandboxExit,
    SandboxHandle,
)

from ._agent import Agent
from ._client import AgentClient
from ._drive import CANCELED, drive_workflow
from ._options import WoodpeckerOptions
from ._payload import WorkflowConfig, decode_config, workflow_image

__all__ = ["WoodpeckerProvider", "open_woodpecker_provider"]

log = logging.getLogger("ephemerd.forges.woodpecker")

_EMPTY_NEXT_PAUSE = 1.0


class _Held(msgspec.Struct, kw_only=True):
    """A workflow assigned to this agent and not yet finished."""

    id: str
    config: WorkflowConfig
    timeout: int
    claimed: bool = False
    driving: bool = False
    deadline: float = math.inf  # Trio time by which a claim must come
    done: trio.Event = msgspec.field(default_factory=trio.Event)
    given_up: bool = False


class WoodpeckerProvider:
    """One Woodpecker server, spoken to as an agent. Make it with ``open_woodpecker_provider``.

    Satisfies ``Provider``, ``Poll``, ``DrivesJob``, ``FollowsCordon`` and
    ``FollowsCapacity``.
    """

    kind = "woodpecker"

    def __init__(
        self, options: WoodpeckerOptions, client: AgentClient, background: trio.Nursery
    ) -> None:
        self._options = options
        self._client = client
        self._background = background
        self._tokens = trio.Semaphore(options.max_concurrent)
        self._held: dict[str, _Held] = {}
        self._agent = Agent(options, client)
        self._events: trio.MemorySendChannel[JobEvent] | None = None
        self._accepting = trio.Event()
        self._accepting.set()
        self._next_calls: dict[trio.CancelScope, None] = {}  # oldest first
        self._free_slots: float = math.inf  # until the scheduler says
        self._room_changed = trio.Event()

    def __repr__(self) -> str:
        return f"WoodpeckerProvider({self._options.name!r}, server={self._options.server!r})"

    @property
    def name(self) -> str:
        return self._options.name

    @property
    def default_images(self) -> Mapping[str, str]:
        return {"linux": self._options.default_image}

    @property
    def agent(self) -> Agent:
        """The agent's lifecycle: registration, health, token refresh."""
        return self._agent

    @property
    def agent_id(self) -> int:
        return self._client.agent_id

    def statistics(self) -> dict[str, int]:
        """Held workflows and free ``Next`` tokens, for tests and views."""
        held = list(self._held.values())
        return {
            "held": len(held),
            "claimed": sum(1 for h in held if h.claimed),
            "free_tokens": self._tokens.value,
        }

    # -- Poll ----------------------------------------------------------------------------

    async def poll(self, config: PollConfig, events: trio.MemorySendChannel[JobEvent]) -> None:
        """Register, then run one ``Next`` long poll per free token until cancelled.

        Raises:
            ForgeProtocolError: the server speaks another protocol version.
            ForgeError: registration failed; the scheduler restarts the poll with backoff.
        """
        del config  # labels are the agent's own (key=value), matched by the server
        async with events:
            if not self._agent.registered.is_set():
                await self._agent.register()
            self._events = events
            async with trio.open_nursery() as nursery:
                for _ in range(self._options.max_concurrent):
                    nursery.start_soon(self._next_worker, events)

    async def _next_worker(self, events: trio.MemorySendChannel[JobEvent]) -> None:
        client, options = self._client, self._options
        request = pb.NextRequest(filter=pb.Filter(labels=self._agent.labels()))
        while True:
            await self._accepting.wait()
            await self._tokens.acquire()
            handed = False
            reply: pb.NextResponse | None = None
            try:
                await self._wait_for_room()
                with trio.CancelScope() as call:
                    self._next_calls[call] = None
                    if not self._accepting.is_set():
                        call.cancel()
                    try:
                        reply = await client.call_retrying(client.stub.next, request, what="Next")
                    finally:
                        del self._next_calls[call]
                        self._wake()
                if reply is None:  # withdrawn: cordoned, or the slots were taken
                    continue
                workflow = reply.workflow
                if not workflow.id:
                    await trio.sleep(_EMPTY_NEXT_PAUSE)
                    continue
                held = self._hold(workflow)
                if held is None:
                    continue
                handed = True
            finally:
                if not handed:
                    self._tokens.release()
            self._background.start_soon(self._keep_lease, held)
            try:
                events.send_nowait(self._event(held))
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                held.deadline = trio.current_time()  # not handed over: let it go now
            await held.done.wait()
            if held.given_up:
                log.info("%s: pausing Next for %.0fs", self.name, options.claim_timeout)
                await trio.sleep(options.claim_timeout)

    async def _wait_for_room(self) -> None:
        """Until one more ``Next`` fits in the scheduler's free slots."""
        while True:
            unclaimed = sum(1 for held in self._held.values() if not held.claimed)
            if len(self._next_calls) + unclaimed < self._free_slots:
                return
            await self._room_changed.wait()

    def _wake(self) -> None:
        """Let waiting workers look at the free slots again."""
        self._room_changed.set()
        self._room_changed = trio.Event()

    def _hold(self, workflow: pb.Workflow) -> _Held | None:
        try:
            config = decode_config(workflow.payload)
        except ForgeProtocolError as exc:
            log.error("%s: workflow %s: %s", self.name, workflow.id, exc)
            self._background.start_soon(self._refuse, workflow.id, str(exc))
            return None
        held = _Held(id=workflow.id, config=config, timeout=workflow.timeout)
        held.deadline = trio.current_time() + self._options.claim_timeout
        self._held[workflow.id] = held
        log.info("%s: workflow %s of %s assigned", self.name, workflow.id, config.repo or "?")
        return held

    async def _refuse(self, workflow_id: str, error: str) -> None:
        """Report a workflow ephemerd cannot run as failed, so it does not hang."""
        state = pb.WorkflowState(error=error)
        try:
            await self._client.call(
                self._client.stub.init,
                pb.InitRequest(id=workflow_id, state=state),
                rpc_timeout=self._options.rpc_timeout,
            )
            await self._client.call(
                self._client.stub.done,
                pb.DoneRequest(id=workflow_id, state=state),
                rpc_timeout=self._options.rpc_timeout,
            )
        except ForgeError as exc:
            log.warning("%s: cannot fail workflow %s: %s", self.name, workflow_id, exc)

    def _event(self, held: _Held) -> JobEvent:
        return JobEvent(
            instance=self.name,
            action=JobAction.QUEUED,
            job_id=held.id,
            run_id=held.config.pipeline_number,
            repo=held.config.repo,
            job_name=f"workflow {held.id}",
            raw=msgspec.json.encode(held.config),
        )

    async def _keep_lease(self, held: _Held) -> None:
        """Extend *held*'s lease until it is done; give it up if no claim comes in time."""
        client, options = self._client, self._options
        try:
            while not held.done.is_set():
                with trio.move_on_after(options.extend_interval):
                    await held.done.wait()
                if held.done.is_set():
                    break
                if not held.claimed and trio.current_time() >= held.deadline:
                    log.warning(
                        "%s: workflow %s was not taken by the scheduler in time; "
                        "leaving it to the server to requeue",
                        self.name,
                        held.id,
                    )
                    held.given_up = True
                    break
                try:
                    await client.call(
                        client.stub.extend,
                        pb.ExtendRequest(id=held.id),
                        rpc_timeout=options.rpc_timeout,
                        what="Extend",
                    )
                except ForgeUnavailable as exc:
                    log.info("%s: workflow %s: %s", self.name, held.id, exc)
                except ForgeError as exc:
                    log.warning("%s: workflow %s: extend refused: %s", self.name, held.id, exc)
        finally:
            self._held.pop(held.id, None)
            held.done.set()
            self._tokens.release()
            self._wake()

    # -- FollowsCordon -------------------------------------------------------------------

    def set_cordoned(self, cordoned: bool) -> None:
        """Stop (or resume) asking the server for workflows along with the daemon's claiming.

        A ``Next`` under way is cancelled: the server assigns a workflow the moment it
        answers, and a cordoned daemon would not run it. Workflows held but not claimed
        are let go at their next lease extension instead of after ``claim_timeout``.
        """
        if not cordoned:
            self._accepting.set()
            return
        if self._accepting.is_set():
            self._accepting = trio.Event()
        for call in self._next_calls:
            call.cancel()
        now = trio.current_time()
        for held in self._held.values():
            if not held.claimed:
                held.deadline = min(held.deadline, now)

    # -- FollowsCapacity -----------------------------------------------------------------

    def set_free_slots(self, free: int) -> None:
        """Keep ``Next`` calls within the scheduler's *free* slots.

        Withdrawn ``Next`` calls (the newest first) are asked again once slots free up.
        """
        self._free_slots = free
        excess = len(self._next_calls) - free
        for call in reversed(list(self._next_calls)):
            if excess <= 0:
                break
            call.cancel()
            excess -= 1
        self._wake()

    # -- Provider ------------------------------------------------------------------------

    async def claim_job(self, event: JobEvent, *, runner_name: str, labels: Sequence[str]) -> Claim:
        """Take the workflow the server assigned for *event*.

        Raises:
            ForgeNotFound: this agent no longer holds the workflow (given up or finished).
        """
        del labels
        await trio.lowlevel.checkpoint()
        held = self._held.get(event.job_id)
        if held is None or held.done.is_set() or held.driving:
            raise ForgeNotFound(f"woodpecker workflow {event.job_id} is not held by this agent")
        held.claimed = True
        self._wake()
        return Claim(runner_id=held.id, runner_name=runner_name, repo=held.config.repo)

    async def release_job(self, claim: Claim) -> None:
        """A claim that never ran goes back to waiting for the scheduler's next try."""
        await trio.lowlevel.checkpoint()
        held = self._held.get(claim.runner_id)
        if held is not None and not held.driving and not held.done.is_set():
            held.claimed = False
            held.deadline = trio.current_time() + self._options.claim_timeout
            self._wake()

    async def fetch_job_image(self, event: JobEvent) -> str | None:
        await trio.lowlevel.checkpoint()
        held = self._held.get(event.job_id)
        if held is None:
            return None
        return workflow_image(held.config) or None

    async def drive_job(self, claim: Claim, sandbox: SandboxHandle) -> SandboxExit:
        """Run the workflow in *sandbox* and report it; see ``_drive``.

        A workflow whose ``Init`` cannot be delivered within ``report_timeout`` ends with
        exit code 1 and is left to the server, which requeues it when its lease expires; so
        does a workflow this agent no longer holds. Never raises but ``Cancelled``.

        Cancellation: ``Done`` reports it cancelled, then it re-raises.
        """
        held = self._held.get(claim.runner_id)
        if held is None or held.done.is_set() or held.driving:
            log.error("%s: workflow %s is not held by this agent", self.name, claim.runner_id)
            return SandboxExit(reason=ExitReason.EXITED, exit_code=1)
        held.driving = True
        try:
            result = await drive_workflow(
                self._client,
                self._options,
                workflow_id=held.id,
                config=held.config,
                timeout_minutes=held.timeout,
                sandbox=sandbox,
            )
        except ForgeError as exc:  # Init never arrived: nothing ran; the server requeues it
            log.error("%s: workflow %s could not start: %s", self.name, held.id, exc)
            return SandboxExit(reason=ExitReason.EXITED, exit_code=1)
        finally:
            held.done.set()
        log.info("%s: workflow %s finished: %s", self.name, held.id, result.error or "success")
        if result.canceled:
            await self._report_cancelled(held.id)
            return SandboxExit(reason=ExitReason.KILLED, exit_code=137)
        return SandboxExit(reason=ExitReason.EXITED, exit_code=result.exit_code)

    async def _report_cancelled(self, workflow_id: str) -> None:
        """Tell the scheduler the forge cancelled the job, then wait to be cancelled.

        The scheduler answers a completed event by cancelling the job's attempt and
        records it as cancelled; if it does not within a moment, the exit code says it.
        """
        events = self._events
        if events is None:
            return
        event = JobEvent(
            instance=self.name, action=JobAction.COMPLETED, job_id=workflow_id, conclusion=CANCELED
        )
        try:
            events.send_nowait(event)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return
        await trio.sleep(1.0)

    async def stop(self) -> None:
        """Unregister the agent, unless its id is kept for the next start."""
        await self._agent.unregister()


@asynccontextmanager
async def open_woodpecker_provider(
    options: WoodpeckerOptions,
) -> AsyncGenerator[WoodpeckerProvider]:
    """A provider for *options*; its connection and background tasks end with the block.

    Nothing is sent before the first ``poll`` (which registers the agent), so a server
    that is down at start delays only this provider.

    Raises:
        ConfigError: the options are inconsistent (before anything is opened).
    Cancellation: safe; ``stop`` runs shielded for at most ``rpc_timeout`` seconds.
    """
    options.validate()
    async with open_aio_loop():
        client = await AgentClient.connect(options)
        try:
            async with trio.open_nursery() as background:
                provider = WoodpeckerProvider(options, client, background)
                background.start_soon(provider.agent.report_health)
                background.start_soon(provider.agent.refresh_auth)
                try:
                    yield provider
                finally:
                    with trio.move_on_after(options.rpc_timeout, shield=True):
                        await provider.stop()
                    background.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()
