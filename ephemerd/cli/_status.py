"""``ephemerd status``: kept free of trio, cyclopts and msgspec, since scripts poll it."""

from __future__ import annotations

import time

from ._format import status_text, to_json
from ._options import GlobalOptions

__all__ = ["show_status"]


def show_status(opts: GlobalOptions, *, as_json: bool) -> int:
    from ephemerd.control import fetch_status  # lazy: imports the quick client alone

    current = fetch_status(opts.socket_path)
    now = time.time()
    if as_json:
        uptime = round(now - current.started_at, 3)
        print(to_json(current.to_builtins(), uptime_seconds=uptime))
    else:
        print(status_text(current, now=now))
    return 0
