"""ephemerd: one Linux host as a pool of ephemeral, isolated CI runners for several forges.

The package is layered so data flows one way, forge -> scheduler -> sandbox:

- ``ephemerd.capabilities``: the Protocols and shared types every layer speaks (no I/O);
- ``ephemerd.forges``: one sub-package per forge, each a ``Provider``;
- ``ephemerd.scheduler``: provider- and sandbox-agnostic admission, dedup, retry, drain, journal;
- ``ephemerd.sandbox``: containers on an embedded containerd, images, networking, logs;
- ``ephemerd.control``: the gRPC control plane on a unix socket; the CLI and TUI are its clients;
- ``ephemerd.daemon``: the composition root, the only module that wires concrete parts together.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
