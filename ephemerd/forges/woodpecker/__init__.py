"""Woodpecker CI: ephemerd is an agent on the server's gRPC port; each workflow runs in a
fresh sandbox, its steps driven by the provider (``DrivesJob``).

Build one instance with ``open_woodpecker_provider(WoodpeckerOptions(...))``; the provider
speaks only ``ephemerd.capabilities`` to the scheduler.
"""

from ._from_config import options_from_config
from ._options import DEFAULT_IMAGE, PROTOCOL_VERSION, WoodpeckerOptions
from ._provider import HEALTH_STATUS, WoodpeckerProvider, open_woodpecker_provider

__all__ = [
    "DEFAULT_IMAGE",
    "HEALTH_STATUS",
    "PROTOCOL_VERSION",
    "WoodpeckerOptions",
    "WoodpeckerProvider",
    "open_woodpecker_provider",
    "options_from_config",
]
