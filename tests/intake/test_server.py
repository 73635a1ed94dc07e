"""/healthz, /metrics, the listeners, and stopping: real servers on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from functools import partial

import httpx
import pytest
import trio

from ephemerd._errors import ConfigError
from ephemerd.intake import parse_listen, serve_intake, serve_metrics
from ephemerd.metrics import Metrics

from .conftest import HookProvider, Intake, sign, start_intake
from .expo import parse, value


async def test_healthz_reports_state_as_json(intake: Intake, client: httpx.AsyncClient) -> None:
    r = await client.get(f"{intake.url}/healthz")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    health = r.json()
    assert set(health) == {"status", "active_jobs", "max_concurrent", "draining", "uptime"}
    assert health["status"] == "ok"
    assert (health["active_jobs"], health["max_concurrent"], health["draining"]) == (3, 8, False)
    assert 100.0 <= health["uptime"] < 200.0
    assert "connection" not in r.headers  # kept alive for the next probe
    assert (await client.head(f"{intake.url}/healthz")).status_code == 200


async def test_healthz_is_503_while_draining(intake: Intake, client: httpx.AsyncClient) -> None:
    intake.draining = True
    r = await client.get(f"{intake.url}/healthz")
    assert r.status_code == 503
    assert r.json()["status"] == "draining"
    assert r.json()["draining"] is True


async def test_other_paths_and_methods(intake: Intake, client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{intake.url}/")).status_code == 404
    assert (await client.get(f"{intake.url}/healthz/x")).status_code == 404
    r = await client.post(f"{intake.url}/healthz")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD")
    assert (await client.post(f"{intake.url}/metrics")).status_code == 405


async def test_metrics_endpoint_counts_deliveries_and_mirrors_status(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    body = json.dumps({"jobs": ["5"]}).encode()
    await client.post(
        f"{intake.url}/webhook/hooked", content=body, headers={"X-Hub-Signature-256": sign(body)}
    )
    await client.post(f"{intake.url}/webhook/hooked", content=b"x" * 10_000)
    r = await client.get(f"{intake.url}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    types, samples = parse(r.text)
    assert types["ephemerd_webhook_deliveries_total"] == "counter"
    deliveries = "ephemerd_webhook_deliveries_total"
    assert value(samples, deliveries, instance="hooked", status="200") == 1
    assert value(samples, deliveries, instance="hooked", status="413") == 1
    assert value(samples, "ephemerd_jobs_active") == 3
    assert value(samples, "ephemerd_jobs_parked") == 2
    assert value(samples, "ephemerd_capacity") == 8
    assert value(samples, "ephemerd_uptime_seconds") >= 100


async def test_metrics_can_live_on_their_own_listener(
    nursery: trio.Nursery, client: httpx.AsyncClient
) -> None:
    intake = await start_intake(nursery, serve_metrics=False)
    assert (await client.get(f"{intake.url}/metrics")).status_code == 404
    address = await nursery.start(
        partial(serve_metrics, listen="127.0.0.1:0", metrics=intake.metrics, status=intake.status)
    )
    assert address != intake.address
    r = await client.get(f"http://{address}/metrics")
    assert r.status_code == 200
    _, samples = parse(r.text)
    assert value(samples, "ephemerd_capacity") == 8
    assert (await client.get(f"http://{address}/healthz")).status_code == 404
    assert (await client.post(f"http://{address}/webhook/hooked")).status_code == 404


async def test_metrics_disabled(nursery: trio.Nursery, client: httpx.AsyncClient) -> None:
    intake = Intake(hook=HookProvider("hooked"), metrics=Metrics())
    address = await nursery.start(
        partial(
            serve_intake,
            listen="127.0.0.1:0",
            providers=[intake.hook],
            submit=intake.submit,
            status=intake.status,
            metrics=None,
        )
    )
    assert (await client.get(f"http://{address}/metrics")).status_code == 404
    r = await client.post(f"http://{address}/webhook/hooked", content=b"{}")
    assert r.status_code == 403  # still served, just not counted


async def test_ipv6_loopback(nursery: trio.Nursery, client: httpx.AsyncClient) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        address = await nursery.start(partial(serve_metrics, listen="[::1]:0", metrics=Metrics()))
    except ConfigError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    assert address.startswith("[::1]:")
    assert (await client.get(f"http://{address}/metrics")).status_code == 200


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":9090", ("0.0.0.0", 9090)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["", "8080", "host:", "host:http", "h:70000", "::1:80", "a:-1"])
def test_parse_listen_rejects(listen: str) -> None:
    with pytest.raises(ConfigError, match="listen address"):
        parse_listen(listen)


async def test_port_in_use_is_one_clear_error(nursery: trio.Nursery) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot listen on 127.0.0.1:{port}: .*in use"):
            await nursery.start(
                partial(serve_metrics, listen=f"127.0.0.1:{port}", metrics=Metrics())
            )


async def test_bad_options_are_config_errors(nursery: trio.Nursery) -> None:
    intake = Intake(hook=HookProvider("hooked"), metrics=Metrics())
    common = {
        "listen": "127.0.0.1:0",
        "submit": intake.submit,
        "status": intake.status,
        "metrics": None,
    }
    with pytest.raises(ConfigError, match="two webhook providers are named 'hooked'"):
        await nursery.start(
            partial(serve_intake, providers=[intake.hook, HookProvider("hooked")], **common)
        )
    with pytest.raises(ConfigError, match="max_body must be positive"):
        await nursery.start(partial(serve_intake, providers=[], max_body=0, **common))


async def test_cancellation_lets_requests_in_flight_finish(client: httpx.AsyncClient) -> None:
    """Cancelled mid-delivery: the listener closes, the delivery still gets its answer."""
    async with trio.open_nursery() as outer:
        server_scope = trio.CancelScope()
        ready: list[Intake] = []

        async def run_server(task_status: trio.TaskStatus[None]) -> None:
            with server_scope:
                async with trio.open_nursery() as inner:
                    ready.append(await start_intake(inner))
                    task_status.started()
            stopped.set()

        stopped = trio.Event()
        await outer.start(run_server)
        intake = ready[0]
        intake.hook.mode = "gate"
        body = json.dumps({"jobs": ["9"]}).encode()
        responses: list[httpx.Response] = []

        async def deliver() -> None:
            responses.append(
                await client.post(
                    f"{intake.url}/webhook/hooked",
                    content=body,
                    headers={"X-Hub-Signature-256": sign(body)},
                )
            )

        outer.start_soon(deliver)
        await intake.hook.entered.wait()
        server_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as fresh:
                await fresh.get(f"{intake.url}/healthz")
        assert not stopped.is_set()
        intake.hook.release.set()
        await stopped.wait()
    assert [r.status_code for r in responses] == [200]
    assert [e.job_id for e in intake.submitted] == ["9"]


async def test_graceful_stop_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    """A handler that never returns cannot hold the server past graceful_timeout."""
    started = trio.current_time()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            intake = await start_intake(nursery, graceful_timeout=2.0, handler_timeout=600.0)
            intake.hook.mode = "hang"

            async def deliver() -> None:
                async with httpx.AsyncClient(timeout=1000) as c:
                    await c.post(f"{intake.url}/webhook/hooked", content=b"{}")

            nursery.start_soon(deliver)
            await intake.hook.entered.wait()
            started = trio.current_time()
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught
    assert trio.current_time() - started <= 3.5


async def test_status_failure_is_a_500_not_a_crash(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    intake.status_fails = True
    assert (await client.get(f"{intake.url}/healthz")).status_code == 500
    assert (await client.get(f"{intake.url}/metrics")).status_code == 500
    intake.status_fails = False
    assert (await client.get(f"{intake.url}/healthz")).status_code == 200
