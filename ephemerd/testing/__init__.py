"""Public test doubles (like ``trio.testing``): an in-memory sandbox backend and forge.

Used by the test suite, the benchmarks in ``bench/`` and a test-only daemon
configuration. They implement the ``ephemerd.capabilities`` Protocols for real, on
Trio time, so the scheduler runs against them unchanged.
"""

from ._provider import MemoryDrivingProvider, MemoryJob, MemoryProvider
from ._sandbox import ExecCall, MemorySandbox, MemorySandboxHandle

__all__ = [
    "ExecCall",
    "MemoryDrivingProvider",
    "MemoryJob",
    "MemoryProvider",
    "MemorySandbox",
    "MemorySandboxHandle",
]
