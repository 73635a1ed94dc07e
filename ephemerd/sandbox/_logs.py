"""Per-job log files and their retention.

The main process of sandbox ``name`` writes its stdout and stderr (through a pipe
ephemerd pumps) to ``<data-dir>/logs/<name>.log``. The
files outlive the sandbox so operators can read a finished job's output; the daemon
calls ``prune_logs`` hourly to drop those older than the retention.
"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["log_path", "prune_logs"]


def log_path(log_dir: Path, name: str) -> Path:
    """The log file of sandbox *name*."""
    return log_dir / f"{name}.log"


def prune_logs(log_dir: Path, *, max_age_days: float, now: float | None = None) -> list[Path]:
    """Delete ``*.log`` files in *log_dir* last written more than *max_age_days* ago.

    Returns the deleted paths. A missing directory is not an error.
    """
    cutoff = (time.time() if now is None else now) - max_age_days * 86400
    removed: list[Path] = []
    try:
        candidates = list(log_dir.glob("*.log"))
    except OSError:
        return removed
    for path in candidates:
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed
