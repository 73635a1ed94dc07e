"""Woodpecker CI: ephemerd is an agent on the server's gRPC port; each workflow runs in a
fresh sandbox, its steps driven by the provider (``DrivesJob``).

Build one instance with ``open_woodpecker_provider(WoodpeckerOptions(...))``; the provider
speaks only ``ephemerd.capabilities`` to the scheduler.
"""

from ._agent import HEALTH_STATUS, Agent
from ._from_config import options_from_config
from ._options import DEFAULT_IMAGE, PROTOCOL_VERSION, WoodpeckerOptions
from ._provider import WoodpeckerProvider, open_woodpecker_provider

__all__ = [
    "DEFAULT_IMAGE",
    "HEALTH_STATUS",
    "PROTOCOL_VERSION",
    "Agent",
    "WoodpeckerOptions",
    "WoodpeckerProvider",
    "open_woodpecker_provider",
    "options_from_config",
]
