"""The options of one Woodpecker provider instance, as the composition root fills them in.

The agent secret and agent token are plain fields (msgspec Structs cannot hide them), so
``__repr__`` redacts them: a logged options object never shows a credential.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from ephemerd._errors import ConfigError
from ephemerd._retry import RetryPolicy

__all__ = ["DEFAULT_IMAGE", "PROTOCOL_VERSION", "WoodpeckerOptions"]

PROTOCOL_VERSION = 16
"""The Woodpecker agent protocol version ephemerd speaks; another server version is refused."""

DEFAULT_IMAGE = "docker.io/library/alpine:3"


def _redacted(value: str) -> str:
    return "<redacted>" if value else "''"


class WoodpeckerOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one Woodpecker provider instance needs.

    Attributes:
        name: the instance name, unique in the daemon.
        server: the server's gRPC ``host:port``.
        agent_secret: the server-wide shared agent secret; exclusive with ``agent_token``.
        agent_token: an individual agent's token.
        state_dir: where the agent id is kept across restarts (the data dir).
        max_concurrent: workflows this host runs at once; the agent's capacity and the
            most ``Next`` long polls (and unfinished workflows) at any time.
        tls: dial the server with TLS.
        ca_file: a PEM file of CA certificates trusted for the server's TLS certificate
            instead of the system's (a private CA); ``None`` trusts the system's.
        labels: agent labels sent in ``Next`` filters and at registration; they override
            the defaults (``hostname``, ``platform``, ``backend``, ``repo=*``).
        hostname: the agent's host name, sent as ``hostname`` metadata.
        platform: ``os/arch`` reported to the server.
        default_image: the sandbox image when no step names one.
        version: the agent version reported at registration.
        health_interval: seconds between ``ReportHealth`` calls.
        extend_interval: seconds between ``Extend`` calls per held workflow.
        auth_refresh: seconds between access-token refreshes (tokens live one hour).
        claim_timeout: seconds a workflow handed to the scheduler may stay unclaimed
            before the provider stops extending it (the server then requeues it).
        rpc_timeout: seconds before a unary call (other than ``Next``/``Wait``) gives up.
        report_timeout: seconds ``Init``/``Update``/``Log``/``Done`` keep retrying while the
            server is unreachable.
        log_flush_interval: seconds between log batches.
        log_batch_lines: a batch is sent early once it has this many lines.
        retry: backoff between retries of a failed call.
    """

    name: str
    server: str
    agent_secret: str = ""
    agent_token: str = ""
    state_dir: Path
    max_concurrent: int = 1
    tls: bool = False
    ca_file: Path | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict[str, str])
    hostname: str = ""
    platform: str = "linux/amd64"
    default_image: str = DEFAULT_IMAGE
    version: str = ""
    health_interval: float = 10.0
    extend_interval: float = 20.0
    auth_refresh: float = 1800.0
    claim_timeout: float = 120.0
    rpc_timeout: float = 30.0
    report_timeout: float = 600.0
    log_flush_interval: float = 1.0
    log_batch_lines: int = 500
    retry: RetryPolicy = RetryPolicy.exponential(first=0.05, cap=10.0)

    def __repr__(self) -> str:
        return (
            f"WoodpeckerOptions(name={self.name!r}, server={self.server!r}, "
            f"agent_secret={_redacted(self.agent_secret)}, "
            f"agent_token={_redacted(self.agent_token)}, max_concurrent={self.max_concurrent})"
        )

    @property
    def host(self) -> str:
        return self.server.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.server.rpartition(":")[2])

    @property
    def credential(self) -> str:
        return self.agent_secret or self.agent_token

    @property
    def agent_id_path(self) -> Path:
        """The file keeping this instance's agent id, ``{"agent_id": N}`` as the agent does."""
        return self.state_dir / f"woodpecker-{self.name}.agent.json"

    def validate(self) -> None:
        """Check what a constructor cannot express.

        Raises:
            ConfigError: a bad address, both or neither credentials, a CA file without
                TLS, impossible numbers.
        """
        where = f"woodpecker instance {self.name!r}"
        host, sep, port = self.server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{where}: server must be host:port (got {self.server!r})")
        if bool(self.agent_secret) == bool(self.agent_token):
            raise ConfigError(f"{where}: exactly one of agent_secret or agent_token is required")
        if self.ca_file is not None and not self.tls:
            raise ConfigError(f"{where}: ca_file needs tls = true")
        if self.max_concurrent < 1:
            raise ConfigError(f"{where}: max_concurrent must be at least 1")
        for key in ("health_interval", "extend_interval", "auth_refresh", "claim_timeout"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{where}: {key} must be positive")
        if self.log_batch_lines < 1:
            raise ConfigError(f"{where}: log_batch_lines must be at least 1")
