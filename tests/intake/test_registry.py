"""The metrics registry and its text exposition."""

from __future__ import annotations

import logging
import math

import pytest

from ephemerd.capabilities import DaemonStatus, JobAction, JobEvent
from ephemerd.metrics import Metrics, Registry

from .expo import parse, value

NAMES = {
    "ephemerd_jobs_total": "counter",
    "ephemerd_jobs_active": "gauge",
    "ephemerd_jobs_parked": "gauge",
    "ephemerd_events_total": "counter",
    "ephemerd_claims_total": "counter",
    "ephemerd_job_duration_seconds": "histogram",
    "ephemerd_job_startup_seconds": "histogram",
    "ephemerd_webhook_deliveries_total": "counter",
    "ephemerd_poll_errors_total": "counter",
    "ephemerd_capacity": "gauge",
    "ephemerd_cordoned": "gauge",
    "ephemerd_uptime_seconds": "gauge",
}


def test_every_named_metric_is_exposed_with_its_type() -> None:
    types, samples = parse(Metrics().render())
    assert types == NAMES
    for gauge in ("ephemerd_jobs_active", "ephemerd_capacity", "ephemerd_cordoned"):
        assert value(samples, gauge) == 0


def test_label_values_are_escaped() -> None:
    registry = Registry()
    gauge = registry.gauge("weird", "help with \\ and\nnewline", ("who",))
    nasty = 'a"b\\c\nd'
    gauge.set(1.5, who=nasty)
    text = registry.render()
    assert 'weird{who="a\\"b\\\\c\\nd"} 1.5\n' in text
    assert "# HELP weird help with \\\\ and\\nnewline\n" in text
    _, samples = parse(text)
    assert value(samples, "weird", who=nasty) == 1.5


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count() -> None:
    registry = Registry()
    hist = registry.histogram("lat_seconds", "latency", ("instance",), buckets=(1, 0.1, 10))
    for v in (0.05, 0.1, 0.5, 5.0, 1000.0, math.nan):
        hist.observe(v, instance="a")
    hist.observe(2.0, instance="b")
    types, samples = parse(registry.render())
    assert types == {"lat_seconds": "histogram"}
    buckets = [
        (dict(ls)["le"], v)
        for n, ls, v in samples
        if n == "lat_seconds_bucket" and dict(ls)["instance"] == "a"
    ]
    assert buckets == [("0.1", 2), ("1", 3), ("10", 4), ("+Inf", 5)]
    assert value(samples, "lat_seconds_count", instance="a") == 5
    assert abs(value(samples, "lat_seconds_sum", instance="a") - 1005.65) < 1e-9
    assert value(samples, "lat_seconds_bucket", instance="b", le="1") == 0
    assert value(samples, "lat_seconds_bucket", instance="b", le="10") == 1
    assert value(samples, "lat_seconds_bucket", instance="b", le="+Inf") == 1


def test_counters_only_go_up_and_labels_must_match() -> None:
    registry = Registry()
    counter = registry.counter("things_total", "things", ("kind",))
    counter.inc(kind="x")
    counter.inc(2, kind="x")
    assert counter.get(kind="x") == 3
    with pytest.raises(ValueError, match="cannot decrease"):
        counter.inc(-1, kind="x")
    with pytest.raises(ValueError, match=r"takes labels \(kind\)"):
        counter.inc(other="y")
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc()
    with pytest.raises(ValueError, match="registered twice"):
        registry.counter("things_total", "again")
    with pytest.raises(ValueError, match="invalid metric"):
        registry.gauge("bad-name", "x")
    with pytest.raises(ValueError, match="reserved"):
        registry.histogram("h", "x", ("le",), buckets=(1,))


def test_series_are_capped(caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry(max_series=2)
    counter = registry.counter("capped_total", "x", ("repo",))
    with caplog.at_level(logging.WARNING):
        for name in ("a", "b", "c", "d"):
            counter.inc(repo=name)
        counter.inc(repo="a")
    _, samples = parse(registry.render())
    assert sorted(dict(ls)["repo"] for _, ls, _ in samples) == ["a", "b"]
    assert counter.get(repo="a") == 2
    assert len([r for r in caplog.records if "capped_total" in r.getMessage()]) == 1


def test_metrics_methods_and_status_gauges() -> None:
    now = [1000.0]
    metrics = Metrics(clock=lambda: now[0])
    metrics.job_finished("gh", "succeeded", duration=42.0)
    metrics.job_finished("gh", "cancelled", duration=None)
    metrics.job_started("gh", startup=0.3)
    metrics.event_seen(JobEvent(instance="gh", action=JobAction.QUEUED, job_id="1"), "webhook")
    metrics.claim("gh", "conflict")
    metrics.webhook_delivery("gh", 200)
    metrics.poll_error("fj")
    metrics.observe_status(
        DaemonStatus(
            pid=1,
            version="t",
            started_at=900.0,
            active_jobs=2,
            parked_jobs=5,
            max_concurrent=4,
            cordoned=True,
            draining=False,
        )
    )
    now[0] = 1234.5
    _, samples = parse(metrics.render())
    assert value(samples, "ephemerd_jobs_total", instance="gh", result="succeeded") == 1
    assert value(samples, "ephemerd_jobs_total", instance="gh", result="cancelled") == 1
    assert value(samples, "ephemerd_job_duration_seconds_count", instance="gh") == 1
    assert value(samples, "ephemerd_job_startup_seconds_bucket", instance="gh", le="0.5") == 1
    assert (
        value(samples, "ephemerd_events_total", instance="gh", action="queued", source="webhook")
        == 1
    )
    assert value(samples, "ephemerd_claims_total", instance="gh", outcome="conflict") == 1
    assert value(samples, "ephemerd_webhook_deliveries_total", instance="gh", status="200") == 1
    assert value(samples, "ephemerd_poll_errors_total", instance="fj") == 1
    assert value(samples, "ephemerd_jobs_active") == 2
    assert value(samples, "ephemerd_jobs_parked") == 5
    assert value(samples, "ephemerd_capacity") == 4
    assert value(samples, "ephemerd_cordoned") == 1
    assert value(samples, "ephemerd_uptime_seconds") == 334.5


def test_two_metrics_objects_share_nothing() -> None:
    a, b = Metrics(), Metrics()
    a.poll_error("x")
    assert b.poll_errors_total.get(instance="x") == 0
