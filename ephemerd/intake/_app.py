"""The intake's ASGI application: webhook deliveries, ``/healthz`` and ``/metrics``.

Routes:

- ``POST /webhook/<instance>``: one per provider that implements ``Webhook``. The raw body
  (at most ``max_body`` bytes, else 413 without reading the rest) goes to the provider,
  which authenticates and parses it; the events it returns go to ``submit``, and the
  provider's reply goes back to the forge. Unknown instance: 404; another method: 405.
- ``GET /healthz``: liveness and load as JSON; 503 while draining, so a load balancer or a
  tunnel stops sending work.
- ``GET /metrics``: the Prometheus exposition, when metrics are enabled.

Nothing a client sends can crash the server: every handler failure becomes a 500 and one
log line.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import msgspec
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from ephemerd.capabilities import DaemonStatus, JobEvent, Webhook, WebhookReply, WebhookRequest
from ephemerd.metrics import CONTENT_TYPE, Metrics

from ._asgi import ClientGone, Exchange, serve_lifespan

__all__ = ["DEFAULT_MAX_BODY", "IntakeApp", "Submit"]

_log = logging.getLogger("ephemerd.intake")

DEFAULT_MAX_BODY = 1 << 20

Submit = Callable[[JobEvent], Awaitable[None]]

_WEBHOOK_PREFIX = "/webhook/"
_INTERNAL_ERROR = WebhookReply(status=500, body=b"internal error\n")


class _Health(msgspec.Struct, frozen=True):
    status: str
    active_jobs: int
    max_concurrent: int
    draining: bool
    uptime: float


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class IntakeApp:
    """The ASGI callable; hypercorn serves one instance per listener.

    Args:
        webhooks: webhook-capable providers by instance name.
        submit: the scheduler's intake; awaited once per event a delivery carried.
        status: the daemon's state, for ``/healthz`` and the state gauges.
        metrics: where deliveries are counted and ``/metrics`` is read from.
        serve_healthz: mount ``/healthz`` here (needs *status*).
        serve_metrics: mount ``/metrics`` here (needs *metrics*).
        max_body: largest webhook body accepted, in bytes.
        read_timeout: seconds allowed for reading a whole body (slow senders get 408).
        handler_timeout: seconds allowed for a provider's ``handle_webhook``.
        clock: Unix time, for the uptime.
    """

    def __init__(
        self,
        *,
        webhooks: Mapping[str, Webhook],
        submit: Submit | None,
        status: Callable[[], DaemonStatus] | None,
        metrics: Metrics | None,
        serve_healthz: bool,
        serve_metrics: bool,
        max_body: int = DEFAULT_MAX_BODY,
        read_timeout: float = 30.0,
        handler_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._webhooks = dict(webhooks)
        self._submit = submit
        self._status = status
        self._serve_healthz = serve_healthz and status is not None
        self._metrics = metrics
        self._serve_metrics = serve_metrics and metrics is not None
        self._max_body = max_body
        self._read_timeout = read_timeout
        self._handler_timeout = handler_timeout
        self._clock = clock

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets: the server refuses the upgrade
        exchange = Exchange(scope, receive, send)
        try:
            await self._route(exchange)
        except ClientGone:
            pass
        except Exception as error:
            _log.error("%s %s failed: %s", exchange.method, exchange.path, _one_line(error))
            if not exchange.started:
                with contextlib.suppress(ClientGone):
                    await exchange.respond(_INTERNAL_ERROR.status, _INTERNAL_ERROR.body)

    async def _route(self, exchange: Exchange) -> None:
        path = exchange.path
        if path.startswith(_WEBHOOK_PREFIX) and self._submit is not None:
            await self._webhook(exchange, path[len(_WEBHOOK_PREFIX) :], self._submit)
        elif path == "/healthz" and self._serve_healthz and self._status is not None:
            if _allowed(exchange, "GET", "HEAD"):
                await self._healthz(exchange, self._status)
            else:
                await _not_allowed(exchange, "GET, HEAD")
        elif path == "/metrics" and self._serve_metrics and self._metrics is not None:
            if _allowed(exchange, "GET", "HEAD"):
                await self._metrics_page(exchange, self._metrics)
            else:
                await _not_allowed(exchange, "GET, HEAD")
        else:
            await exchange.respond(404, b"not found\n")

    async def _webhook(self, exchange: Exchange, instance: str, submit: Submit) -> None:
        provider = self._webhooks.get(instance)
        if provider is None:
            # The path is client-chosen: never a label value.
            return await self._answer(exchange, "", 404, b"no such webhook\n")
        if exchange.method != "POST":
            self._count(instance, 405)
            return await _not_allowed(exchange, "POST")
        body = await self._read_body(exchange, instance)
        if body is None:
            return
        request = WebhookRequest(method=exchange.method, headers=exchange.headers, body=body)
        reply = await self._handle(provider, instance, request)
        for event in reply.events:
            if event.instance != instance:
                _log.warning(
                    "webhook %s: dropped an event for instance %r", instance, event.instance
                )
                continue
            try:
                await submit(event)
            except Exception as error:
                _log.error(
                    "webhook %s: submitting job %s failed: %s",
                    instance,
                    event.job_id,
                    _one_line(error),
                )
                reply = _INTERNAL_ERROR
                break
        await self._answer(exchange, instance, reply.status, reply.body)

    async def _read_body(self, exchange: Exchange, instance: str) -> bytes | None:
        """The delivery's body, or ``None`` once the answer (413, 408) was sent."""
        declared = exchange.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            await self._answer(exchange, instance, 413, b"body too large\n")
            return None
        body: bytes | None = None
        with trio.move_on_after(self._read_timeout) as read:
            body = await exchange.read_body(limit=self._max_body)
        if read.cancelled_caught:
            await self._answer(exchange, instance, 408, b"body too slow\n")
        elif body is None:
            await self._answer(exchange, instance, 413, b"body too large\n")
        return body

    async def _handle(
        self, provider: Webhook, instance: str, request: WebhookRequest
    ) -> WebhookReply:
        """The provider's reply; a failure (logged here) becomes a 500 or 503 with no events."""
        try:
            with trio.fail_after(self._handler_timeout):
                reply = await provider.handle_webhook(request)
        except trio.TooSlowError:
            _log.error("webhook %s: handler took over %gs", instance, self._handler_timeout)
            return WebhookReply(status=503, body=b"try again later\n")
        except Exception as error:
            _log.error("webhook %s: handler raised %s", instance, _one_line(error))
            return _INTERNAL_ERROR
        if not _valid_reply(reply):
            _log.error("webhook %s: handler returned an invalid reply", instance)
            return _INTERNAL_ERROR
        return reply

    async def _answer(self, exchange: Exchange, instance: str, status: int, body: bytes) -> None:
        self._count(instance, status)
        await exchange.respond(status, body)

    def _count(self, instance: str, status: int) -> None:
        if self._metrics is not None:
            self._metrics.webhook_delivery(instance, status)

    async def _healthz(self, exchange: Exchange, status: Callable[[], DaemonStatus]) -> None:
        current = status()
        health = _Health(
            status="draining" if current.draining else "ok",
            active_jobs=current.active_jobs,
            max_concurrent=current.max_concurrent,
            draining=current.draining,
            uptime=max(0.0, self._clock() - current.started_at),
        )
        await exchange.respond(
            503 if current.draining else 200,
            msgspec.json.encode(health),
            content_type="application/json",
        )

    async def _metrics_page(self, exchange: Exchange, metrics: Metrics) -> None:
        if self._status is not None:
            metrics.observe_status(self._status())
        await exchange.respond(200, metrics.render().encode(), content_type=CONTENT_TYPE)


def _valid_reply(reply: object) -> bool:
    """Whether a provider's reply is usable; providers are other people's code."""
    return isinstance(reply, WebhookReply) and 200 <= reply.status <= 599


def _allowed(exchange: Exchange, *methods: str) -> bool:
    return exchange.method in methods


async def _not_allowed(exchange: Exchange, allow: str) -> None:
    await exchange.respond(405, b"method not allowed\n", headers=[("allow", allow)])
