"""A faithful fake Woodpecker server (agent gRPC protocol 16) on 127.0.0.1."""

from ._server import FakeWoodpecker, open_fake_woodpecker
from ._state import FakeAgent, FakeWorkflow, WoodpeckerState, labels_match

__all__ = [
    "FakeAgent",
    "FakeWoodpecker",
    "FakeWorkflow",
    "WoodpeckerState",
    "labels_match",
    "open_fake_woodpecker",
]
