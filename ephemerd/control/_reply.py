"""The daemon's status as plain tuples, for clients that must start fast.

``DaemonStatus`` is a msgspec Struct, and importing msgspec (with typing_extensions and
inspect behind it) costs about half of what ``ephemerd status`` may spend above the
interpreter's own start. ``StatusReply`` holds the same fields with nothing but the
standard library; ``fetch_status`` decodes into it, ``StatusReply.of`` converts a
``DaemonStatus`` from the Trio client, and the CLI renders only this form, so there is
one formatter whichever client asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ephemerd.capabilities import DaemonStatus, ProviderView

__all__ = ["ProviderReply", "StatusReply"]


class ProviderReply(NamedTuple):
    """One provider instance; ``state`` is a ``ProviderState`` value (``"ok"``, ...)."""

    instance: str
    kind: str
    state: str
    webhook: bool = False
    last_error: str = ""
    last_ok_at: float = 0.0
    active_jobs: int = 0

    @classmethod
    def of(cls, view: ProviderView) -> ProviderReply:
        return cls(
            instance=view.instance,
            kind=view.kind,
            state=view.state.value,
            webhook=view.webhook,
            last_error=view.last_error,
            last_ok_at=view.last_ok_at,
            active_jobs=view.active_jobs,
        )


class StatusReply(NamedTuple):
    """``DaemonStatus`` field for field; times are Unix seconds."""

    pid: int
    version: str
    started_at: float
    active_jobs: int
    parked_jobs: int
    max_concurrent: int
    cordoned: bool
    draining: bool
    providers: tuple[ProviderReply, ...] = ()

    @classmethod
    def of(cls, status: DaemonStatus) -> StatusReply:
        return cls(
            pid=status.pid,
            version=status.version,
            started_at=status.started_at,
            active_jobs=status.active_jobs,
            parked_jobs=status.parked_jobs,
            max_concurrent=status.max_concurrent,
            cordoned=status.cordoned,
            draining=status.draining,
            providers=tuple(ProviderReply.of(p) for p in status.providers),
        )

    def to_builtins(self) -> dict[str, object]:
        """The JSON object ``msgspec.to_builtins`` makes of the matching ``DaemonStatus``."""
        data: dict[str, object] = self._asdict()
        data["providers"] = [p._asdict() for p in self.providers]
        return data
