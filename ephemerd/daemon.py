"""The composition root: the one module that wires concrete parts together.

``run_daemon`` loads the config, then builds, inside one nursery tree::

    sandbox backend (embedded containerd + images + job network, or in memory)
    └── providers (one per configured forge instance)
        └── scheduler (sweeps leftovers, polls, admits, runs jobs)
            ├── control server on <data-dir>/ephemerd.sock
            ├── HTTP intake (webhooks, /healthz, /metrics)
            └── signal handler: SIGTERM/SIGINT drain; a second one stops now

Shutdown unwinds the same tree from the top: the scheduler drains and tears every job
down, the providers stop, the sandbox backend (and its containerd) stops last.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import signal
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

import trio

from ephemerd import __version__
from ephemerd._errors import ConfigError
from ephemerd._lock import hold_data_dir
from ephemerd.capabilities import CustomExecutor, PollConfig, Provider, SandboxBackend, Webhook
from ephemerd.config import (
    Config,
    ForgejoConfig,
    GiteaConfig,
    GitLabConfig,
    ProviderConfig,
    load_config,
)
from ephemerd.control import (
    SOCKET_NAME,
    open_control_server,
    pid_file,
)
from ephemerd.metrics import Metrics
from ephemerd.scheduler import HostLabels, Journal, Scheduler, SchedulerOptions

__all__ = ["run_daemon", "serve"]

log = logging.getLogger("ephemerd.daemon")

_LOG_PRUNE_INTERVAL = 3600.0


def run_daemon(
    config_path: Path | None,
    data_dir: Path,
    log_format: str | None = None,
    log_level: str | None = None,
) -> int:
    """Run ``ephemerd serve`` in the foreground until drained; return the exit code.

    *log_format* and *log_level* override the config's ``[log]`` when given.

    Raises:
        ConfigError: the configuration is invalid or names no provider.
        DaemonAlreadyRunning: another daemon owns *data_dir*.
    """
    from ephemerd._logging import setup_logging

    config = load_config(config_path, data_dir=data_dir)
    setup_logging(level=log_level or config.log.level, fmt=log_format or config.log.format)
    if not config.providers:
        raise ConfigError(
            "no providers configured: add a [github], [forgejo], [gitea], [gitlab] or "
            "[woodpecker] section to the config (see 'ephemerd config check')"
        )
    # Until serve() listens for it, SIGTERM would kill the process outright and leave the
    # embedded containerd (in its own session) running: make it a Ctrl-C instead, which
    # Trio raises as KeyboardInterrupt at a safe point, unwinding what was started.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        trio.run(serve, config)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    del signum, frame
    os.kill(os.getpid(), signal.SIGINT)


async def serve(
    config: Config, *, task_status: trio.TaskStatus[Scheduler] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until a drain completes. ``task_status`` gets the running scheduler."""
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with hold_data_dir(data_dir):
        async with AsyncExitStack() as stack:
            sandbox = await stack.enter_async_context(_open_sandbox(config))
            providers = [
                await stack.enter_async_context(_open_provider(p, config)) for p in config.providers
            ]
            journal = stack.enter_context(Journal(data_dir / "journal.sqlite"))
            metrics = Metrics()
            scheduler = Scheduler(
                providers=providers,
                sandbox=sandbox,
                journal=journal,
                options=_scheduler_options(config),
                poll_configs=_poll_configs(config),
                observer=metrics,
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(_run_scheduler, scheduler, nursery.cancel_scope)
                socket_path = data_dir / SOCKET_NAME
                executors = {p.name: p for p in providers if isinstance(p, CustomExecutor)}
                async with open_control_server(
                    scheduler, socket_path=socket_path, executors=executors
                ):
                    with pid_file(data_dir / "ephemerd.pid"):
                        await _start_http(nursery, config, providers, scheduler, metrics)
                        nursery.start_soon(_handle_signals, scheduler, nursery)
                        log.info(
                            "ephemerd %s serving %d provider(s), max_concurrent=%d, socket %s",
                            _version(),
                            len(providers),
                            config.runner.max_concurrent,
                            socket_path,
                        )
                        task_status.started(scheduler)
                        await trio.sleep_forever()
    log.info("all jobs finished cleanly; ephemerd stopped")


async def _run_scheduler(
    scheduler: Scheduler,
    everything: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the scheduler; once it returns (drained), stop the rest of the daemon."""
    try:
        await scheduler.run(task_status=task_status)
    finally:
        everything.cancel()


async def _handle_signals(scheduler: Scheduler, nursery: trio.Nursery) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        draining = False
        async for signum in signals:
            name = signal.Signals(signum).name
            if not draining:
                draining = True
                log.info("%s: draining; no new jobs are claimed (send it again to stop now)", name)
                nursery.start_soon(scheduler.drain)
            else:
                log.warning("%s again: cancelling running jobs now", name)
                scheduler.stop_now()


async def _start_http(
    nursery: trio.Nursery,
    config: Config,
    providers: list[Provider],
    scheduler: Scheduler,
    metrics: Metrics,
) -> None:
    from ephemerd.intake import serve_intake, serve_metrics

    webhooks = [p for p in providers if isinstance(p, Webhook)]
    webhook_listen = str(config.webhook.listen)
    metrics_listen = str(config.metrics.listen)
    same_listener = config.metrics.enabled and metrics_listen == webhook_listen
    if webhooks or same_listener:
        bound = await nursery.start(
            partial(
                serve_intake,
                listen=webhook_listen,
                providers=providers,
                submit=scheduler.submit,
                status=scheduler.status,
                metrics=metrics,
                max_body=int(config.webhook.max_body),
                serve_metrics=same_listener,
            )
        )
        log.info("webhooks and /healthz on http://%s", bound)
    if config.metrics.enabled and not same_listener:
        bound = await nursery.start(
            partial(serve_metrics, listen=metrics_listen, metrics=metrics, status=scheduler.status)
        )
        log.info("metrics on http://%s/metrics", bound)


def _scheduler_options(config: Config) -> SchedulerOptions:
    runner = config.runner
    return SchedulerOptions(
        max_concurrent=runner.max_concurrent,
        labels=HostLabels(extra=runner.labels),
        instance_labels=_instance_labels(config),
        job_timeout=runner.job_timeout if runner.job_timeout is not None else math.inf,
        shutdown_timeout=float(runner.shutdown_timeout),
        teardown_timeout=float(runner.teardown_timeout),
        claim_retry=runner.retry.policy,
        default_image=runner.default_image,
        limits=runner.resource_limits,
        network=config.sandbox.network,
    )


def _instance_labels(config: Config) -> dict[str, tuple[str, ...]]:
    """Forgejo/Gitea runner labels (``name:docker://image``) offered to their instance only."""
    extra: dict[str, tuple[str, ...]] = {}
    for provider in config.providers:
        if isinstance(provider, ForgejoConfig | GiteaConfig) and provider.labels:
            extra[provider.name] = tuple(label.split(":", 1)[0] for label in provider.labels)
        elif isinstance(provider, GitLabConfig) and provider.tags:
            extra[provider.name] = tuple(provider.tags)  # a GitLab job carries its runner's tags
    return extra


def _poll_configs(config: Config) -> dict[str, PollConfig]:
    labels = HostLabels(extra=config.runner.labels).runner_labels()
    configs: dict[str, PollConfig] = {}
    for provider in config.providers:
        interval = getattr(provider, "poll_interval", None)
        configs[provider.name] = PollConfig(
            interval=float(interval) if interval else 30.0, labels=labels
        )
    return configs


@asynccontextmanager
async def _open_sandbox(config: Config) -> AsyncGenerator[SandboxBackend]:
    if config.sandbox.backend == "memory":
        from ephemerd.testing import MemorySandbox

        log.warning("sandbox backend 'memory': jobs do not really run (a test double)")
        yield MemorySandbox(log_dir=config.data_dir / config.sandbox.log_dir)
        return
    from ephemerd.sandbox import open_sandbox_stack

    async with open_sandbox_stack(
        data_dir=config.data_dir,
        containerd_address=config.sandbox.containerd_address or None,
        network=config.sandbox.network,
        network_name=config.sandbox.network_name,
        subnet=config.sandbox.subnet,
        allow=config.sandbox.allow,
        log_retention=config.log.retention,
        log_dir=config.data_dir / config.sandbox.log_dir,
        runtime=config.sandbox.runtime,
    ) as stack:
        yield stack.backend


@asynccontextmanager
async def _open_provider(provider: ProviderConfig, config: Config) -> AsyncGenerator[Provider]:
    match provider.kind:
        case "memory":
            from ephemerd.testing import MemoryProvider

            yield MemoryProvider(
                provider.name, webhook_secret=provider.secret.reveal() if provider.secret else ""
            )
        case "github":
            from ephemerd.forges.github import open_github_provider, options_from_config

            options = options_from_config(provider, runner_labels=config.runner.labels)
            async with open_github_provider(options) as github:
                yield github
        case "forgejo":
            from ephemerd.forges.forgejo import open_forgejo_provider
            from ephemerd.forges.forgejo import options_from_config as forgejo_options

            options = forgejo_options(provider, runner_labels=config.runner.labels)
            async with open_forgejo_provider(options) as forgejo:
                yield forgejo
        case "gitea":
            from ephemerd.forges.gitea import open_gitea_provider
            from ephemerd.forges.gitea import options_from_config as gitea_options

            options = gitea_options(provider, runner_labels=config.runner.labels)
            async with open_gitea_provider(options) as gitea:
                yield gitea
        case "woodpecker":
            from ephemerd.forges.woodpecker import open_woodpecker_provider
            from ephemerd.forges.woodpecker import options_from_config as woodpecker_options

            options = woodpecker_options(
                provider,
                runner_labels=config.runner.labels,
                data_dir=config.data_dir,
                max_concurrent=config.runner.max_concurrent,
            )
            async with open_woodpecker_provider(options) as woodpecker:
                yield woodpecker
        case "gitlab":
            from ephemerd.forges.gitlab import open_gitlab_provider
            from ephemerd.forges.gitlab import options_from_config as gitlab_options

            options = gitlab_options(
                provider,
                runner_labels=config.runner.labels,
                data_dir=config.data_dir,
                config_file=config.source,
                max_concurrent=config.runner.max_concurrent,
            )
            async with open_gitlab_provider(options) as gitlab:
                yield gitlab
        case _:  # every kind the config knows is handled above
            raise ConfigError(f"{provider.name}: this provider kind is not available")


def _version() -> str:
    return f"{__version__} on {platform.machine()}"
