"""The agent's own lifecycle on a Woodpecker server: register, stay healthy, leave.

``register`` authenticates, refuses a server on another protocol version and registers
the agent with its capacity, backend and labels. ``report_health`` and ``refresh_auth``
run for the provider's lifetime. ``unregister`` runs at stop only when the agent id could
not be kept: the server deletes a system agent on ``UnregisterAgent``, so an agent whose
id is kept stays registered and the next start reuses it (as Woodpecker's agent does).
"""

from __future__ import annotations

import logging

import trio

from ephemerd._errors import ForgeError, ForgeProtocolError
from ephemerd._proto import proto as pb

from ._client import AgentClient
from ._options import PROTOCOL_VERSION, WoodpeckerOptions

__all__ = ["BACKEND", "HEALTH_STATUS", "Agent"]

log = logging.getLogger("ephemerd.forges.woodpecker")

HEALTH_STATUS = "I am alive!"
"""The exact ``ReportHealth`` status a Woodpecker server accepts."""

BACKEND = "ephemerd"


class Agent:
    """This host as one agent of one server.

    Attributes:
        registered: set once ``RegisterAgent`` succeeded.
    """

    def __init__(self, options: WoodpeckerOptions, client: AgentClient) -> None:
        self._options = options
        self._client = client
        self.registered = trio.Event()
        self._left = False
        self._registered_as = -1

    def labels(self) -> dict[str, str]:
        """The agent's filter labels: defaults, overridden by configured ones."""
        defaults = {
            "hostname": self._options.hostname,
            "platform": self._options.platform,
            "backend": BACKEND,
            "repo": "*",
        }
        return {**defaults, **self._options.labels}

    async def register(self) -> None:
        """Authenticate, check the protocol version and register this agent.

        Raises:
            ForgeProtocolError: the server speaks another protocol version.
            ForgeAuthError: the credential was refused.
            ForgeUnavailable: the server cannot be reached.
        """
        client, options = self._client, self._options
        await client.authenticate()
        version = await client.call(
            client.stub.version, pb.Empty(), rpc_timeout=options.rpc_timeout, what="Version"
        )
        if version.grpc_version != PROTOCOL_VERSION:
            raise ForgeProtocolError(
                f"woodpecker server {options.server} speaks agent protocol "
                f"{version.grpc_version} (server {version.server_version or 'unknown'}); "
                f"ephemerd speaks {PROTOCOL_VERSION}"
            )
        info = pb.AgentInfo(
            platform=options.platform,
            capacity=options.max_concurrent,
            backend=BACKEND,
            version=options.version,
            custom_labels=dict(options.labels),
        )
        reply = await client.call(
            client.stub.register_agent,
            pb.RegisterAgentRequest(info=info),
            rpc_timeout=options.rpc_timeout,
            what="RegisterAgent",
        )
        log.info(
            "%s: registered as agent %d on %s (server %s)",
            options.name,
            reply.agent_id,
            options.server,
            version.server_version,
        )
        self._registered_as = self._client.agent_id
        self.registered.set()

    async def report_health(self) -> None:
        """Tell the server every ``health_interval`` that this agent is alive; never raises.

        An agent the server had forgotten comes back under a new id (see ``authenticate``);
        it is registered again here, so the new record carries capacity and labels.
        """
        await self.registered.wait()
        while True:
            if self._client.agent_id != self._registered_as:
                try:
                    await self.register()
                except ForgeError as exc:
                    log.warning("%s: registering again failed: %s", self._options.name, exc)
            try:
                await self._client.call(
                    self._client.stub.report_health,
                    pb.ReportHealthRequest(status=HEALTH_STATUS),
                    rpc_timeout=self._options.rpc_timeout,
                    what="ReportHealth",
                )
            except ForgeError as exc:
                log.warning("%s: health report failed: %s", self._options.name, exc)
            await trio.sleep(self._options.health_interval)

    async def refresh_auth(self) -> None:
        """Renew the access token before it expires; never raises."""
        while True:
            await trio.sleep(self._options.auth_refresh)
            try:
                await self._client.authenticate()
            except ForgeError as exc:
                log.warning("%s: token refresh failed: %s", self._options.name, exc)

    async def unregister(self) -> None:
        """``UnregisterAgent`` once, unless the agent id is kept; never raises."""
        if self._left or not self.registered.is_set():
            return
        self._left = True
        if self._client.persisted:
            return
        try:
            await self._client.call(
                self._client.stub.unregister_agent,
                pb.Empty(),
                rpc_timeout=self._options.rpc_timeout,
                what="UnregisterAgent",
            )
        except ForgeError as exc:
            log.warning("%s: unregister failed: %s", self._options.name, exc)
