"""The fake Woodpecker server's state and RPC bodies, on the Trio side.

Faithful to the server's agent-facing behaviour (reference section 4 and 5.4): Auth with
the shared secret (agent id -1 creates a system agent) or an individual agent token;
``Next`` blocks until a queued workflow matches the agent's filter (``filter.go``
semantics) and locks it to the agent; a lease the agent does not ``Extend`` expires and
the workflow goes back to the queue; ``Wait`` returns ``canceled`` on ``cancel``;
``ReportHealth`` demands the exact string; everything an agent reports is recorded.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import grpclib.const
import grpclib.exceptions
import msgspec
import trio

from ephemerd._proto import proto as pb

__all__ = [
    "FakeAgent",
    "FakeWorkflow",
    "WoodpeckerState",
    "labels_match",
]

HEALTH = "I am alive!"
INTERNAL_PREFIX = "woodpecker-ci.org/"


def _error(status: grpclib.const.Status, message: str) -> grpclib.exceptions.GRPCError:
    return grpclib.exceptions.GRPCError(status, message)


def labels_match(task: Mapping[str, str], agent: Mapping[str, str]) -> bool:
    """Whether a task with labels *task* may run on an agent filtering with *agent*."""
    for key, value in agent.items():
        if key.startswith("!") and task.get(key[1:]) != value:
            return False
    for key, value in task.items():
        if not value or key.startswith(INTERNAL_PREFIX):
            continue
        have = agent.get(key, agent.get("!" + key))
        if have is None or (have != value and have != "*"):
            return False
    return True


class FakeWorkflow(msgspec.Struct, kw_only=True):
    id: str
    payload: bytes
    labels: dict[str, str] = msgspec.field(default_factory=dict[str, str])
    timeout: int = 60


class FakeAgent(msgspec.Struct, kw_only=True):
    id: int
    system: bool
    token: str = ""  # the individual agent token, if any
    info: pb.AgentInfo | None = None
    health_reports: int = 0
    unregistered: bool = False


class _Assignment:
    def __init__(self, workflow: FakeWorkflow, agent_id: int, deadline: float) -> None:
        self.workflow = workflow
        self.agent_id = agent_id
        self.deadline = deadline
        self.canceled = False
        self.ended = trio.Event()  # done or canceled: Wait returns


class WoodpeckerState:
    """Everything the fake server knows; tests read and drive it directly.

    Attributes:
        lease: seconds a workflow stays with its agent without ``Extend``.
        grpc_version: what ``Version`` answers (16 for a compatible server).
        agents: every agent by id.
        queue: workflows waiting for an agent, in order.
        inits, updates, dones: ``(workflow id, state)`` as received.
        logs: every log entry received, in order.
        calls: ``(method, agent id)`` of every authenticated call, in order.
        requeued: workflow ids whose lease expired, in order.
    """

    def __init__(self, *, agent_secret: str = "", lease: float = 60.0) -> None:
        self.agent_secret = agent_secret
        self.lease = lease
        self.grpc_version = 16
        self.server_version = "3.17.0-fake"
        self.agents: dict[int, FakeAgent] = {}
        self.queue: list[FakeWorkflow] = []
        self.inits: list[tuple[str, pb.WorkflowState]] = []
        self.updates: list[tuple[str, pb.StepState]] = []
        self.dones: list[tuple[str, pb.WorkflowState]] = []
        self.logs: list[pb.LogEntry] = []
        self.calls: list[tuple[str, int]] = []
        self.requeued: list[str] = []
        self.health_statuses: list[str] = []
        self.polling = 0  # Next calls blocked right now
        self.failures: dict[str, list[grpclib.const.Status]] = {}
        self._access: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._token_ids = itertools.count(1)
        self._running: dict[str, _Assignment] = {}
        self._done_events: dict[str, trio.Event] = {}
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None

    # -- test controls -------------------------------------------------------------------

    def bind(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def add_agent_token(self, token: str) -> FakeAgent:
        """An individual agent created by an admin, authenticating with *token*."""
        agent = FakeAgent(id=next(self._ids), system=False, token=token)
        self.agents[agent.id] = agent
        return agent

    def enqueue(
        self,
        workflow_id: str,
        payload: bytes,
        *,
        labels: Mapping[str, str] | None = None,
        timeout: int = 60,
    ) -> FakeWorkflow:
        workflow = FakeWorkflow(
            id=workflow_id, payload=payload, labels=dict(labels or {}), timeout=timeout
        )
        self.queue.append(workflow)
        self._done_events.setdefault(workflow_id, trio.Event())
        self._notify()
        return workflow

    def cancel(self, workflow_id: str) -> None:
        """Cancel a workflow: queued ones leave the queue, running ones see it in ``Wait``."""
        self.queue = [w for w in self.queue if w.id != workflow_id]
        assignment = self._running.get(workflow_id)
        if assignment is not None:
            assignment.canceled = True
            assignment.ended.set()

    def fail(self, method: str, status: grpclib.const.Status, times: int = 1) -> None:
        """Answer the next *times* calls of *method* with *status*."""
        self.failures.setdefault(method, []).extend([status] * times)

    def revoke_tokens(self) -> None:
        """Forget every access token (a server restarted with a new secret)."""
        self._access.clear()

    def running(self, workflow_id: str) -> int | None:
        """The agent holding *workflow_id*, or ``None``."""
        assignment = self._running.get(workflow_id)
        return assignment.agent_id if assignment is not None else None

    async def wait_done(self, workflow_id: str) -> pb.WorkflowState:
        """Wait until ``Done`` arrives for *workflow_id*; its state."""
        await self._done_events.setdefault(workflow_id, trio.Event()).wait()
        return next(state for wid, state in reversed(self.dones) if wid == workflow_id)

    async def wait_assigned(self, workflow_id: str) -> int:
        while workflow_id not in self._running:
            await self._changed_wait()
        return self._running[workflow_id].agent_id

    async def wait_requeued(self, workflow_id: str) -> None:
        while workflow_id not in self.requeued:
            await self._changed_wait()

    async def wait_health(self, count: int = 1) -> None:
        while len(self.health_statuses) < count:
            await self._changed_wait()

    async def wait_step_started(self, step_uuid: str) -> None:
        """Wait until an agent reports *step_uuid* started."""
        while not any(s.step_uuid == step_uuid and s.started for _, s in self.updates):
            await self._changed_wait()

    def step_logs(self, step_uuid: str) -> list[pb.LogEntry]:
        return [entry for entry in self.logs if entry.step_uuid == step_uuid]

    # -- plumbing ------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _changed_wait(self) -> None:
        await self._changed.wait()

    def take_failure(self, method: str) -> grpclib.const.Status | None:
        pending = self.failures.get(method)
        return pending.pop(0) if pending else None

    def authenticate(self, token: str | None) -> int:
        """The agent id of an access token. Raises: GRPCError UNAUTHENTICATED."""
        if not token:
            raise _error(grpclib.const.Status.UNAUTHENTICATED, "token is missing")
        agent_id = self._access.get(token)
        if agent_id is None or agent_id not in self.agents:
            raise _error(grpclib.const.Status.UNAUTHENTICATED, "invalid token")
        return agent_id

    def _owned(self, workflow_id: str, agent_id: int) -> _Assignment:
        assignment = self._running.get(workflow_id)
        if assignment is None:
            raise _error(grpclib.const.Status.NOT_FOUND, f"workflow {workflow_id} is not running")
        if assignment.agent_id != agent_id:
            raise _error(grpclib.const.Status.UNKNOWN, "agent does not match")
        return assignment

    async def _lease(self, assignment: _Assignment) -> None:
        while True:
            with trio.move_on_at(assignment.deadline):
                await assignment.ended.wait()
            if assignment.ended.is_set() and not assignment.canceled:
                return
            if assignment.canceled:
                return  # the agent still reports Done
            if trio.current_time() >= assignment.deadline:
                workflow = assignment.workflow
                if self._running.get(workflow.id) is assignment:
                    del self._running[workflow.id]
                    self.requeued.append(workflow.id)
                    self.queue.insert(0, workflow)
                    self._notify()
                return

    # -- RPC bodies ----------------------------------------------------------------------

    async def auth(self, request: pb.AuthRequest) -> pb.AuthResponse:
        await trio.lowlevel.checkpoint()
        token = request.agent_token
        if self.agent_secret and token == self.agent_secret:
            if request.agent_id == -1:
                agent = FakeAgent(id=next(self._ids), system=True)
                self.agents[agent.id] = agent
            else:
                found = self.agents.get(request.agent_id)
                if found is None or not found.system:
                    raise _error(
                        grpclib.const.Status.UNKNOWN,
                        "agent could not auth: AgentID not found in database",
                    )
                agent = found
        else:
            matches = [a for a in self.agents.values() if a.token and a.token == token]
            if not matches:
                raise _error(grpclib.const.Status.UNKNOWN, "agent could not auth: invalid token")
            agent = matches[0]
        access = f"access-{next(self._token_ids)}"
        self._access[access] = agent.id
        return pb.AuthResponse(status="ok", agent_id=agent.id, access_token=access)

    async def version(self, agent_id: int, _: pb.Empty) -> pb.VersionResponse:
        await trio.lowlevel.checkpoint()
        return pb.VersionResponse(
            grpc_version=self.grpc_version, server_version=self.server_version
        )

    async def register_agent(
        self, agent_id: int, request: pb.RegisterAgentRequest
    ) -> pb.RegisterAgentResponse:
        await trio.lowlevel.checkpoint()
        agent = self.agents[agent_id]
        agent.info = request.info
        agent.unregistered = False
        return pb.RegisterAgentResponse(agent_id=agent_id)

    async def unregister_agent(self, agent_id: int, _: pb.Empty) -> pb.Empty:
        await trio.lowlevel.checkpoint()
        agent = self.agents[agent_id]
        agent.unregistered = True
        if agent.system:
            del self.agents[agent_id]
        return pb.Empty()

    async def report_health(self, agent_id: int, request: pb.ReportHealthRequest) -> pb.Empty:
        await trio.lowlevel.checkpoint()
        self.health_statuses.append(request.status)
        self._notify()
        if request.status != HEALTH:
            raise _error(grpclib.const.Status.UNKNOWN, "Are you alive?")
        self.agents[agent_id].health_reports += 1
        return pb.Empty()

    async def wait_polling(self, count: int) -> None:
        """Wait until exactly *count* ``Next`` calls are blocked in the server."""
        while self.polling != count:
            await self._changed_wait()

    async def next(self, agent_id: int, request: pb.NextRequest) -> pb.NextResponse:
        self.polling += 1
        self._notify()
        try:
            return await self._next(agent_id, dict(request.filter.labels))
        finally:
            self.polling -= 1
            self._notify()

    async def _next(self, agent_id: int, filter_labels: dict[str, str]) -> pb.NextResponse:
        while True:
            for workflow in self.queue:
                if labels_match(workflow.labels, filter_labels):
                    self.queue.remove(workflow)
                    deadline = trio.current_time() + self.lease
                    assignment = _Assignment(workflow, agent_id, deadline)
                    self._running[workflow.id] = assignment
                    if self._nursery is not None:
                        self._nursery.start_soon(self._lease, assignment)
                    self._notify()
                    return pb.NextResponse(
                        workflow=pb.Workflow(
                            id=workflow.id, timeout=workflow.timeout, payload=workflow.payload
                        )
                    )
            await self._changed_wait()

    async def init(self, agent_id: int, request: pb.InitRequest) -> pb.Empty:
        await trio.lowlevel.checkpoint()
        self._owned(request.id, agent_id)
        self.inits.append((request.id, request.state))
        self._notify()
        return pb.Empty()

    async def wait(self, agent_id: int, request: pb.WaitRequest) -> pb.WaitResponse:
        assignment = self._running.get(request.id)
        if assignment is None:
            await trio.lowlevel.checkpoint()
            return pb.WaitResponse(canceled=False)
        await assignment.ended.wait()
        return pb.WaitResponse(canceled=assignment.canceled)

    async def extend(self, agent_id: int, request: pb.ExtendRequest) -> pb.Empty:
        await trio.lowlevel.checkpoint()
        assignment = self._owned(request.id, agent_id)
        assignment.deadline = trio.current_time() + self.lease
        return pb.Empty()

    async def update(self, agent_id: int, request: pb.UpdateRequest) -> pb.Empty:
        await trio.lowlevel.checkpoint()
        self._owned(request.id, agent_id)
        self.updates.append((request.id, request.state))
        self._notify()
        return pb.Empty()

    async def log(self, agent_id: int, request: pb.LogRequest) -> pb.Empty:
        await trio.lowlevel.checkpoint()
        self.logs.extend(request.log_entries)
        self._notify()
        return pb.Empty()

    async def done(self, agent_id: int, request: pb.DoneRequest) -> pb.Empty:
        await trio.lowlevel.checkpoint()
        assignment = self._owned(request.id, agent_id)
        del self._running[request.id]
        assignment.ended.set()
        self.dones.append((request.id, request.state))
        self._done_events.setdefault(request.id, trio.Event()).set()
        self._notify()
        return pb.Empty()
