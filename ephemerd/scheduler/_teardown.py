"""Destroying a job's sandbox and releasing its runner, whatever got cancelled.

Teardown runs in a shielded cancel scope with its own deadline: a kill, a drain, a job
timeout or a cancelled daemon all still destroy the sandbox and deregister the runner.
What teardown could not finish stays in the journal for the next start to sweep.
"""

from __future__ import annotations

import logging

import trio

from ephemerd._errors import EphemerdError
from ephemerd._retry import Backoff, RetryPolicy
from ephemerd.capabilities import Claim, Provider, SandboxBackend, SandboxHandle

from ._journal import Journal

__all__ = ["RELEASE_RETRY", "destroy_sandbox", "release_runner", "teardown"]

log = logging.getLogger("ephemerd.scheduler")

RELEASE_RETRY = RetryPolicy(schedule=(0.5, 1.0, 2.0, 4.0), max_age=None, max_attempts=4)
"""Tries after a failed release that may pass: four more, about 7.5 s in all."""


async def destroy_sandbox(
    backend: SandboxBackend, journal: Journal, name: str, handle: SandboxHandle | None
) -> bool:
    """Destroy sandbox *name* (through *handle* if there is one); ``True`` once it is gone."""
    try:
        if handle is not None:
            await handle.destroy()
        else:
            await backend.destroy(name)
        journal.forget_sandbox(name)
    except EphemerdError as exc:
        log.warning("sandbox %s: destroy failed, left for the next sweep: %s", name, exc)
        return False
    return True


async def release_runner(provider: Provider, journal: Journal, claim: Claim) -> bool:
    """Deregister *claim*'s runner on its forge; ``True`` once it is released.

    A failure that may pass (a dropped connection, a 5xx, a rate limit) is tried again a
    few times first: a runner left registered stays on the forge until the next start.
    """
    backoff = Backoff(RELEASE_RETRY)
    while True:
        try:
            await provider.release_job(claim)
        except EphemerdError as exc:
            delay = backoff.next_delay(trio.current_time()) if exc.retryable else None
            if delay is None:
                log.warning(
                    "runner %s on %s: release failed, left for the next sweep: %s",
                    claim.runner_name,
                    provider.name,
                    exc,
                )
                return False
            log.info(
                "runner %s on %s: release failed, trying again in %.1fs: %s",
                claim.runner_name,
                provider.name,
                delay,
                exc,
            )
            await trio.sleep(delay)
            continue
        journal.forget_runner(provider.name, claim.runner_name)
        return True


async def teardown(
    *,
    provider: Provider,
    backend: SandboxBackend,
    journal: Journal,
    claim: Claim | None,
    sandbox_name: str,
    handle: SandboxHandle | None,
    budget: float,
) -> bool:
    """Destroy the sandbox (if one was recorded) then release the runner (if claimed).

    Returns ``True`` when both are done. The sandbox goes first, so a runner is never
    deregistered while its process could still talk to the forge.

    Cancellation: shielded; returns after at most *budget* seconds.
    """
    done = True
    with trio.move_on_after(budget, shield=True) as scope:
        if sandbox_name:
            done = await destroy_sandbox(backend, journal, sandbox_name, handle) and done
        if claim is not None:
            done = await release_runner(provider, journal, claim) and done
    if scope.cancelled_caught:
        log.warning(
            "teardown of %s timed out after %.0fs; left for the next sweep",
            sandbox_name or (claim.runner_name if claim else "?"),
            budget,
        )
        return False
    return done
