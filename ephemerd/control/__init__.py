"""The gRPC control plane on a unix socket; the CLI and the TUI are its clients."""

from ._target import ControlTarget

__all__ = ["ControlTarget"]
