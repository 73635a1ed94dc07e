"""Start-up sweep: destroy the sandboxes and release the runners a previous run left.

Whatever the journal holds was created by a process that did not finish tearing it
down (a crash, ``kill -9``, a teardown that timed out). Sandboxes the backend lists as
its own that no live job owns are destroyed too, journal or not.
"""

from __future__ import annotations

import logging

import msgspec
import trio

from ephemerd._errors import EphemerdError

from ._core import Core
from ._teardown import destroy_sandbox, release_runner

__all__ = ["SweepReport", "sweep_leftovers"]

log = logging.getLogger("ephemerd.scheduler")


class SweepReport(msgspec.Struct, frozen=True, kw_only=True):
    """What the sweep did; ``left`` counts what must wait for the next start."""

    sandboxes_destroyed: int = 0
    runners_released: int = 0
    left: int = 0


async def sweep_leftovers(core: Core) -> SweepReport:
    """Destroy leftover sandboxes first (so no old runner still runs), then release runners.

    Never raises for a failed step: it is logged and stays in the journal.
    """
    timeout = core.options.teardown_timeout
    destroyed = released = left = 0
    owned = {r.sandbox_name for r in core.table.live_records() if r.sandbox_name}
    names = [s.name for s in core.journal.sandboxes()]
    try:
        with trio.fail_after(timeout):
            names += await core.backend.list_own()
    except (EphemerdError, trio.TooSlowError) as exc:
        log.warning("sweep: cannot list the sandbox backend's sandboxes: %s", exc)
    for name in dict.fromkeys(names):
        if name in owned:
            continue
        with trio.move_on_after(timeout):
            if await destroy_sandbox(core.backend, core.journal, name, None):
                destroyed += 1
                log.warning("sweep: destroyed leftover sandbox %s", name)
                continue
        left += 1
    for runner in core.journal.runners():
        provider = core.providers.get(runner.instance)
        if provider is None:
            log.warning(
                "sweep: runner %s belongs to unknown provider %r; kept in the journal",
                runner.runner_name,
                runner.instance,
            )
            left += 1
            continue
        with trio.move_on_after(timeout):
            if await release_runner(provider, core.journal, runner.release_claim()):
                released += 1
                log.warning("sweep: released leftover runner %s", runner.runner_name)
                continue
        left += 1
    return SweepReport(sandboxes_destroyed=destroyed, runners_released=released, left=left)
