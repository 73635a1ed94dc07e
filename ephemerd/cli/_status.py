"""``ephemerd status``: kept free of trio and cyclopts, since it is polled by scripts."""

from __future__ import annotations

import time

from ._format import status_text, to_json
from ._options import GlobalOptions

__all__ = ["show_status"]


def show_status(opts: GlobalOptions, *, as_json: bool) -> int:
    from ephemerd.control._quick import fetch_status  # direct, so -X importtime lists it

    current = fetch_status(opts.socket_path)
    now = time.time()
    if as_json:
        print(to_json(current, uptime_seconds=round(now - current.started_at, 3)))
    else:
        print(status_text(current, now=now))
    return 0
