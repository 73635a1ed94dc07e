"""Serving the intake app with hypercorn under Trio, with a graceful stop on cancellation.

The listening socket is bound here, before hypercorn starts, and handed to it by file
descriptor: a bad address or a port in use then fails as one clear ``ConfigError`` instead of
an exception group from inside the server (which would also leak the half-made socket).

Cancelling ``serve_intake`` stops it gracefully: the listener closes at once, requests in
flight get ``graceful_timeout`` seconds to finish, then whatever remains is cancelled.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Callable, Iterable

import hypercorn.trio
import trio
from hypercorn.config import Config

from ephemerd._errors import ConfigError
from ephemerd.capabilities import DaemonStatus, Provider, Webhook
from ephemerd.metrics import Metrics

from ._app import DEFAULT_MAX_BODY, IntakeApp, Submit

__all__ = ["parse_listen", "serve_intake", "serve_metrics"]

_log = logging.getLogger("ephemerd.intake")


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``host:port``, ``[v6addr]:port`` or ``:port`` (all IPv4 interfaces).

    Raises:
        ConfigError: the address has no port, or the port is not 0-65535.
    """
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"listen address {listen!r} must be host:port with a port 0-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"listen address {listen!r}: write IPv6 addresses as [addr]:port")
    return host or "0.0.0.0", int(port_text)


def _bind(listen: str) -> socket.socket:
    host, port = parse_listen(listen)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        reason = error.strerror or str(error)
        raise ConfigError(f"cannot listen on {listen}: {reason}") from None
    return sock


def _config(sock: socket.socket, *, graceful_timeout: float, idle_read_timeout: float) -> Config:
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("ephemerd.intake.http")
    config.include_server_header = False
    config.graceful_timeout = graceful_timeout
    config.read_timeout = math.ceil(idle_read_timeout)
    # Few queued body chunks: little is held for a request that will get a 413.
    config.max_app_queue_size = 4
    return config


async def _run_server(
    app: IntakeApp,
    config: Config,
    shutdown: trio.Event,
    shield: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    with shield:
        # hypercorn's WSGI half of the app type is untyped; the ASGI half is what we pass.
        await hypercorn.trio.serve(  # pyright: ignore[reportUnknownMemberType]
            app, config, shutdown_trigger=shutdown.wait, task_status=task_status, mode="asgi"
        )


async def _serve_app(
    app: IntakeApp,
    *,
    listen: str,
    graceful_timeout: float,
    request_timeout: float,
    task_status: trio.TaskStatus[str],
) -> None:
    # The server's own read timeout is only a backstop: the app's body and handler
    # deadlines must fire first so that the client gets its 408 or 503.
    config = _config(
        _bind(listen), graceful_timeout=graceful_timeout, idle_read_timeout=request_timeout + 1.0
    )
    shutdown = trio.Event()
    # The server runs shielded so that cancelling us starts a graceful stop rather than
    # cutting requests short; the deadline set on the way out bounds that stop.
    shield = trio.CancelScope(shield=True)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(_run_server, app, config, shutdown, shield)
        address = binds[0].partition("://")[2]
        _log.info("listening on http://%s", address)
        task_status.started(address)
        try:
            await trio.sleep_forever()
        finally:
            shutdown.set()
            shield.deadline = trio.current_time() + graceful_timeout + 1.0


async def serve_intake(
    *,
    listen: str,
    providers: Iterable[Provider],
    submit: Submit,
    status: Callable[[], DaemonStatus],
    metrics: Metrics | None,
    max_body: int = DEFAULT_MAX_BODY,
    serve_metrics: bool = True,
    read_timeout: float = 30.0,
    handler_timeout: float = 10.0,
    graceful_timeout: float = 5.0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve webhooks, ``/healthz`` and (optionally) ``/metrics`` on *listen* until cancelled.

    Use as ``address = await nursery.start(partial(serve_intake, ...))``; *address* is the
    bound ``host:port`` (``[addr]:port`` for IPv6), with the real port when *listen* asked
    for port 0.

    Args:
        listen: ``host:port`` to bind; ``:port`` binds every IPv4 interface.
        providers: every configured provider; those implementing ``Webhook`` get a
            ``POST /webhook/<name>`` route.
        submit: the scheduler's intake, awaited for each event a genuine delivery carried.
        status: the daemon's state, for ``/healthz`` and the state gauges.
        metrics: counts deliveries; ``None`` disables metrics entirely.
        max_body: largest webhook body accepted (bytes); larger ones get 413 unread.
        serve_metrics: also serve ``GET /metrics`` here (false when ``serve_metrics`` runs
            on its own listener).
        read_timeout: seconds to receive a whole request body.
        handler_timeout: seconds a provider may take to handle one delivery.
        graceful_timeout: seconds requests in flight get to finish after cancellation.

    Raises:
        ConfigError: *listen* is malformed or cannot be bound, *max_body* is not positive,
            or two webhook providers share a name.

    Cancellation:
        Stops accepting at once; requests in flight finish within *graceful_timeout*.
    """
    if max_body <= 0:
        raise ConfigError(f"webhook max_body must be positive, not {max_body}")
    webhooks: dict[str, Webhook] = {}
    for provider in providers:
        if isinstance(provider, Webhook):
            if provider.name in webhooks:
                raise ConfigError(f"two webhook providers are named {provider.name!r}")
            webhooks[provider.name] = provider
    app = IntakeApp(
        webhooks=webhooks,
        submit=submit,
        status=status,
        metrics=metrics,
        serve_healthz=True,
        serve_metrics=serve_metrics,
        max_body=max_body,
        read_timeout=read_timeout,
        handler_timeout=handler_timeout,
    )
    if webhooks:
        _log.info("webhooks mounted for %s", ", ".join(sorted(webhooks)))
    await _serve_app(
        app,
        listen=listen,
        graceful_timeout=graceful_timeout,
        request_timeout=read_timeout + handler_timeout,
        task_status=task_status,
    )


async def serve_metrics(
    *,
    listen: str,
    metrics: Metrics,
    status: Callable[[], DaemonStatus] | None = None,
    graceful_timeout: float = 5.0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve only ``GET /metrics`` on *listen* (the ``[metrics] listen`` address).

    *status*, when given, refreshes the state gauges on every scrape. Returns through
    *task_status* and stops like ``serve_intake``.

    Raises:
        ConfigError: *listen* is malformed or cannot be bound.
    """
    app = IntakeApp(
        webhooks={},
        submit=None,
        status=status,
        metrics=metrics,
        serve_healthz=False,
        serve_metrics=True,
    )
    await _serve_app(
        app,
        listen=listen,
        graceful_timeout=graceful_timeout,
        request_timeout=30.0,
        task_status=task_status,
    )
