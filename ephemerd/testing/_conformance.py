"""Static checks (pyright) that the doubles and the scheduler satisfy their Protocols.

Nothing here runs: ``pyright ephemerd`` fails if a Protocol and its implementation drift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ephemerd.capabilities import (
        DrivesJob,
        Poll,
        Provider,
        RateLimitReporter,
        RunnerNameReporter,
        SandboxBackend,
        SandboxHandle,
        Webhook,
    )
    from ephemerd.control import ControlTarget
    from ephemerd.metrics import Metrics
    from ephemerd.scheduler import Scheduler, SchedulerObserver

    from ._provider import MemoryDrivingProvider, MemoryProvider
    from ._sandbox import MemorySandbox, MemorySandboxHandle

    def check_conformance(
        *,
        scheduler: Scheduler,
        provider: MemoryProvider,
        driving: MemoryDrivingProvider,
        backend: MemorySandbox,
        handle: MemorySandboxHandle,
        metrics: Metrics,
    ) -> tuple[object, ...]:
        target: ControlTarget = scheduler
        observer: SchedulerObserver = metrics
        as_provider: Provider = provider
        as_poll: Poll = provider
        as_webhook: Webhook = provider
        as_reporter: RunnerNameReporter = provider
        as_rate: RateLimitReporter = provider
        as_driver: DrivesJob = driving
        as_backend: SandboxBackend = backend
        as_handle: SandboxHandle = handle
        return (
            target,
            observer,
            as_provider,
            as_poll,
            as_webhook,
            as_reporter,
            as_rate,
            as_driver,
            as_backend,
            as_handle,
        )
