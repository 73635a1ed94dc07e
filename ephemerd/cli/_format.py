"""Plain-text and JSON renderings of the daemon's views, for the one-shot commands.

Pure functions of their arguments (``now`` is passed in), so tests compare strings.
``ephemerd status`` renders through here too, and it must start fast: nothing below
imports msgspec or ``ephemerd.capabilities`` unless it is handed a Struct to convert.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ephemerd.capabilities import JobView
    from ephemerd.control import StatusReply

__all__ = [
    "format_age",
    "job_line",
    "job_text",
    "jobs_table",
    "state_words",
    "status_text",
    "to_json",
]


def format_age(seconds: float) -> str:
    """A short human duration: ``45s``, ``3m20s``, ``2h05m``, ``3d4h``."""
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class _Admission(Protocol):
    """What ``state_words`` reads: a ``DaemonStatus`` or a ``StatusReply``."""

    @property
    def cordoned(self) -> bool: ...
    @property
    def draining(self) -> bool: ...


def state_words(status: _Admission) -> str:
    """What the daemon does with new jobs, in the operator's words."""
    if status.draining:
        return "draining (no new jobs; exits when running jobs finish)"
    if status.cordoned:
        return "cordoned (no new jobs)"
    return "accepting jobs"


def status_text(status: StatusReply, *, now: float | None = None) -> str:
    """The human ``ephemerd status``; ``StatusReply.of`` converts a ``DaemonStatus``."""
    now = time.time() if now is None else now
    lines = [
        f"ephemerd {status.version} (pid {status.pid}), up {format_age(now - status.started_at)}",
        f"jobs:      {status.active_jobs} active / {status.max_concurrent} max,"
        f" {status.parked_jobs} parked",
        f"state:     {state_words(status)}",
    ]
    if status.providers:
        lines.append("providers:")
        width = max(len(p.instance) for p in status.providers)
        for p in status.providers:
            hook = " webhook" if p.webhook else ""
            error = f"  ({p.last_error})" if p.last_error else ""
            lines.append(
                f"  {p.instance:<{width}}  {p.kind:<10} {p.state}{hook},"
                f" {p.active_jobs} active{error}"
            )
    else:
        lines.append("providers: none")
    return "\n".join(lines)


def _elapsed(job: JobView, now: float) -> str:
    start = job.started_at or job.queued_at
    if not start:
        return "-"
    end = job.finished_at or now
    return format_age(end - start)


def jobs_table(jobs: Sequence[JobView], *, now: float | None = None) -> str:
    if not jobs:
        return "No jobs."
    now = time.time() if now is None else now
    header = ("JOB", "STATE", "REPO", "NAME", "RUNNER", "AGE")
    rows = [
        (str(j.key), j.state.value, j.repo, j.job_name, j.runner_name or "-", _elapsed(j, now))
        for j in sorted(jobs, key=lambda j: j.key)
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def job_text(job: JobView, *, now: float | None = None) -> str:
    now = time.time() if now is None else now
    fields = [
        ("job", str(job.key)),
        ("kind", job.kind),
        ("state", job.state.value),
        ("repo", job.repo),
        ("name", job.job_name),
        ("run", job.run_id),
        ("runner", job.runner_name),
        ("sandbox", job.sandbox),
        ("image", job.image),
        ("labels", ", ".join(job.labels)),
        ("elapsed", _elapsed(job, now)),
        ("exit code", "" if job.exit_code is None else str(job.exit_code)),
        ("detail", job.detail),
    ]
    return "\n".join(f"{name + ':':<11}{value}" for name, value in fields if value)


def job_line(job: JobView, *, removed: bool = False) -> str:
    """One line per change, for ``jobs --watch`` when stdout is not a terminal."""
    state = "removed" if removed else job.state.value
    parts = [str(job.key), state, job.repo or "-", job.job_name or "-"]
    if job.runner_name:
        parts.append(f"runner={job.runner_name}")
    if job.exit_code is not None:
        parts.append(f"exit={job.exit_code}")
    return " ".join(parts)


def to_json(value: object, **extra: object) -> str:
    """Indented JSON with sorted keys; *extra* keys are added to a top-level object.

    *value* is JSON-ready builtins, msgspec Structs and enums, or containers of them;
    msgspec is imported only to convert the latter. Non-finite floats become ``null``,
    as msgspec writes them.
    """
    import json

    data = _plain(value)
    if extra and isinstance(data, dict):
        data = {**cast("dict[str, object]", data), **{k: _plain(v) for k, v in extra.items()}}
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)


def _plain(value: object) -> object:
    """*value* as JSON-ready builtins: dicts with string keys, lists, scalars."""
    if value is None or isinstance(value, str | int):  # bool is an int
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in cast("dict[object, object]", value).items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in cast("Sequence[object]", value)]
    import msgspec

    return _plain(msgspec.to_builtins(value))
