"""The daemon-wide sections: ``[runner]``, ``[webhook]``, ``[metrics]``, ``[log]``, ``[sandbox]``.

Each is a frozen Struct handed only to the component that uses it. Durations are float
seconds and sizes int bytes (``Duration``/``Size`` subclass them); a limit written as ``0``
means "none" and becomes ``None``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path, PurePosixPath
from typing import Literal

import msgspec

from ephemerd._retry import RetryPolicy
from ephemerd.capabilities import ResourceLimits

from ._checks import Address, Section, check_items, check_range, check_url, invalid
from ._units import Duration, Size, format_size

__all__ = [
    "LogConfig",
    "MetricsConfig",
    "RetryConfig",
    "RunnerConfig",
    "SandboxConfig",
    "WebhookConfig",
]

_DAY = 86400.0
_NETWORK_NAME = re.compile(r"[a-z][a-z0-9]{0,13}")
DEFAULT_NETWORK_NAME = "ephemerd"
DEFAULT_SUBNET = "10.88.0.0/16"
_DEFAULT_SCHEDULE = tuple(Duration(s) for s in (30, 60, 120, 300, 600))


def _zero_is_none(section: Section, key: str) -> None:
    if getattr(section, key) == 0:
        msgspec.structs.force_setattr(section, key, None)


class RetryConfig(Section, frozen=True, kw_only=True):
    """The claim retry ladder (``[runner.retry]``), as written; ``policy`` is what runs it.

    Attributes:
        schedule: waits before each retry; the last one repeats.
        jitter: fraction of each wait randomised, 0..1.
        max_age: give up on a job this long after it was first seen; ``None`` = never
            (``"0s"``).
    """

    schedule: tuple[Duration, ...] = _DEFAULT_SCHEDULE
    jitter: float = 0.2
    max_age: Duration | None = Duration(5400)

    def __post_init__(self) -> None:
        if not self.schedule:
            raise invalid("schedule", "must list at least one wait")
        for index, wait in enumerate(self.schedule):
            check_range(f"schedule[{index}]", wait, 0.001, _DAY)
        check_range("jitter", self.jitter, 0.0, 1.0)
        _zero_is_none(self, "max_age")
        if self.max_age is not None:
            check_range("max_age", self.max_age, 1.0, 30 * _DAY)

    @property
    def policy(self) -> RetryPolicy:
        """The ladder for ``ephemerd._retry.Backoff``."""
        schedule = tuple(float(wait) for wait in self.schedule)
        max_age = None if self.max_age is None else float(self.max_age)
        return RetryPolicy(schedule=schedule, jitter=self.jitter, max_age=max_age)


class RunnerConfig(Section, frozen=True, kw_only=True):
    """How many jobs run at once, and what each one gets.

    Attributes:
        max_concurrent: jobs running at once on this host; excess jobs are parked.
        labels: extra labels of this host, on top of self-hosted/OS/arch.
        default_image: runner image when neither the job nor the provider names one.
        job_timeout: a job is cancelled after this long; ``None`` = no limit (``"0s"``).
        shutdown_timeout: on SIGTERM, how long running jobs may take to finish.
        teardown_timeout: deadline of one job's teardown (sandbox destroy + runner release).
        memory / cpus / pids: cgroup limits per job; ``None`` = unlimited (``0``).
        retry: the claim retry ladder (``retry.policy`` for ``Backoff``).
    """

    max_concurrent: int = 4
    labels: tuple[str, ...] = ()
    default_image: str = ""
    job_timeout: Duration | None = Duration(7200)
    shutdown_timeout: Duration = Duration(300)
    teardown_timeout: Duration = Duration(30)
    memory: Size | None = Size(4 << 30)
    cpus: float | None = 2.0
    pids: int | None = 4096
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)

    def __post_init__(self) -> None:
        check_range("max_concurrent", self.max_concurrent, 1, 1024)
        check_items("labels", self.labels)
        _zero_is_none(self, "job_timeout")
        check_range("shutdown_timeout", self.shutdown_timeout, 0.0, 7 * _DAY)
        check_range("teardown_timeout", self.teardown_timeout, 1.0, _DAY)
        for key in ("memory", "cpus", "pids"):
            _zero_is_none(self, key)
        if self.memory is not None and self.memory < 16 << 20:
            raise invalid(
                "memory", f"must be at least 16MiB, or 0 for no limit (got {self.memory})"
            )
        if self.cpus is not None:
            check_range("cpus", self.cpus, 0.01, 1024.0)
        if self.pids is not None:
            check_range("pids", self.pids, 16, 4194304)

    @property
    def resource_limits(self) -> ResourceLimits:
        """The cgroup limits every job's sandbox gets (plain ints: the OCI spec is JSON)."""
        memory = int(self.memory) if self.memory is not None else None
        return ResourceLimits(memory_bytes=memory, cpus=self.cpus, pids=self.pids)


class WebhookConfig(Section, frozen=True, kw_only=True):
    """The receiver of forge deliveries (``/webhook/<instance>``).

    Secrets live in each provider's section (``webhook_secret``); the route of an instance
    is mounted only when it has one.

    Attributes:
        listen: where the receiver binds.
        public_url: the URL the forges reach it at, for registering hooks ("" = don't).
        max_body: deliveries larger than this are refused.
    """

    listen: Address = Address("127.0.0.1", 8080)
    public_url: str = ""
    max_body: Size = Size(1 << 20)

    def __post_init__(self) -> None:
        if self.public_url:
            url = check_url("public_url", self.public_url)
            msgspec.structs.force_setattr(self, "public_url", url)
        check_range("max_body", self.max_body, 1 << 10, 1 << 30, show=lambda n: format_size(int(n)))


class MetricsConfig(Section, frozen=True, kw_only=True):
    """The Prometheus endpoint; off unless enabled."""

    enabled: bool = False
    listen: Address = Address("127.0.0.1", 9090)


class LogConfig(Section, frozen=True, kw_only=True):
    """Daemon logging and per-job log files.

    Attributes:
        level: least severe level written.
        format: ``text`` for people, ``json`` for collectors.
        retention: job log files older than this are deleted; ``None`` = keep (``"0s"``).
    """

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    retention: Duration | None = Duration(7 * _DAY)

    def __post_init__(self) -> None:
        _zero_is_none(self, "retention")


class SandboxConfig(Section, frozen=True, kw_only=True):
    """Where and how jobs run.

    Attributes:
        backend: ``containerd``, or ``memory`` (the in-process double, for tests and demos).
        containerd_address: socket of an existing containerd; "" = start an embedded one.
        containerd_binary: the containerd executable for the embedded one.
        runtime: the OCI runtime binary sandboxes run under (runc or one with its command line).
        network: ``default`` (internet yes, private ranges no) or ``none``.
        network_name: names the job bridge (``<name>0``), the nft table ``inet <name>``
            and the namespaces ``<name>-<job>``; each ephemerd on a host needs its own.
        subnet: the IPv4 job subnet (first address = the bridge); must not overlap
            another ephemerd's on the same host.
        allow: CIDRs or ``host:port`` reachable despite the private-range deny.
        log_dir: per-job log files; relative paths are under the data dir.
    """

    backend: Literal["containerd", "memory"] = "containerd"
    containerd_address: str = ""
    containerd_binary: str = "containerd"
    runtime: str = "runc"
    network: Literal["default", "none"] = "default"
    network_name: str = DEFAULT_NETWORK_NAME
    subnet: str = DEFAULT_SUBNET
    allow: tuple[str, ...] = ()
    log_dir: Path = Path("logs")

    def __post_init__(self) -> None:
        address = self.containerd_address
        if address and not PurePosixPath(address.removeprefix("unix://")).is_absolute():
            raise invalid(
                "containerd_address", f"must be an absolute socket path (got {address!r})"
            )
        if not self.containerd_binary:
            raise invalid("containerd_binary", "must not be empty")
        if not self.runtime or any(c.isspace() or c == "/" for c in self.runtime):
            raise invalid("runtime", f"must be a runtime name such as runc (got {self.runtime!r})")
        if not _NETWORK_NAME.fullmatch(self.network_name):
            raise invalid(
                "network_name",
                "must be 1-14 lowercase letters and digits, starting with a letter (the bridge"
                f" <name>0 must fit 15 characters; got {self.network_name!r})",
            )
        msgspec.structs.force_setattr(self, "subnet", _job_subnet(self.subnet))
        rules = tuple(_allow_rule(f"allow[{i}]", rule) for i, rule in enumerate(self.allow))
        msgspec.structs.force_setattr(self, "allow", rules)

    @property
    def allow_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The CIDR entries of ``allow``."""
        return tuple(ipaddress.ip_network(r) for r in self.allow if "/" in r)

    @property
    def allow_endpoints(self) -> tuple[Address, ...]:
        """The ``host:port`` entries of ``allow``."""
        return tuple(Address.parse(r) for r in self.allow if "/" not in r)


def _job_subnet(subnet: str) -> str:
    """Check ``subnet`` as the sandbox layer will: IPv4, /8 to /28, an ordinary range."""
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as exc:
        raise invalid("subnet", f"must be an IPv4 network such as 10.88.0.0/16 ({exc})") from None
    if not isinstance(net, ipaddress.IPv4Network) or not 8 <= net.prefixlen <= 28:
        raise invalid("subnet", f"must be an IPv4 network from /8 to /28 (got {subnet!r})")
    if net.is_loopback or net.is_link_local or net.is_multicast:
        raise invalid("subnet", f"must not be a loopback, link-local or multicast range ({net})")
    return str(net)


def _allow_rule(key: str, rule: str) -> str:
    """Normalise one ``allow`` entry: a network (``10.1.0.0/16``) or a ``host:port``."""
    try:
        return str(ipaddress.ip_network(rule, strict=False))
    except ValueError:
        pass
    try:
        endpoint = Address.parse(rule)
    except ValueError:
        endpoint = None
    if endpoint is None or endpoint.port == 0:
        raise invalid(key, f"must be a CIDR such as 10.1.0.0/16 or a host:port (got {rule!r})")
    return str(endpoint)


class Settings(Section, frozen=True, kw_only=True):
    """The daemon-wide part of the file: every top-level key except the provider sections."""

    runner: RunnerConfig = msgspec.field(default_factory=RunnerConfig)
    webhook: WebhookConfig = msgspec.field(default_factory=WebhookConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    sandbox: SandboxConfig = msgspec.field(default_factory=SandboxConfig)
    compat_single_provider: bool = False
