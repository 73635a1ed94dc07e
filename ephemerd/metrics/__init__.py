"""Metrics for Prometheus: a small non-global registry and ephemerd's named metrics."""

from ._metrics import ClaimOutcome, EventSource, JobResult, Metrics
from ._registry import CONTENT_TYPE, Counter, Gauge, Histogram, Registry

__all__ = [
    "CONTENT_TYPE",
    "ClaimOutcome",
    "Counter",
    "EventSource",
    "Gauge",
    "Histogram",
    "JobResult",
    "Metrics",
    "Registry",
]
