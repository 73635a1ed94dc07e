"""The daemon's HTTP receiver: forge webhooks, ``/healthz`` and ``/metrics``.

``serve_intake`` is one long-running task, started with ``await nursery.start(...)``; it
mounts ``POST /webhook/<instance>`` for every provider implementing
``capabilities.Webhook`` and hands the events of genuine deliveries to the scheduler.
``serve_metrics`` serves the metrics alone on a second listener.
"""

from ._app import DEFAULT_MAX_BODY, IntakeApp, Submit
from ._serve import parse_listen, serve_intake, serve_metrics

__all__ = [
    "DEFAULT_MAX_BODY",
    "IntakeApp",
    "Submit",
    "parse_listen",
    "serve_intake",
    "serve_metrics",
]
