"""Options every command shares, and where they lead (data dir, socket, PID file).

``GlobalOptions`` is a NamedTuple rather than a msgspec Struct because ``ephemerd
status`` builds one, and that command must not pay for importing msgspec.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["DEFAULT_DATA_DIR", "GlobalOptions", "resolve_data_dir", "run_trio"]

DEFAULT_DATA_DIR = Path("/var/lib/ephemerd")

T = TypeVar("T")


def resolve_data_dir(flag: Path | None, env: dict[str, str] | None = None) -> Path:
    """``--data-dir`` > ``$EPHEMERD_DATA_DIR`` > ``/var/lib/ephemerd``."""
    if flag is not None:
        return flag.expanduser()
    value = (os.environ if env is None else env).get("EPHEMERD_DATA_DIR", "")
    return Path(value).expanduser() if value else DEFAULT_DATA_DIR


class GlobalOptions(NamedTuple):
    """What ``--data-dir`` and ``--config`` resolved to."""

    data_dir: Path
    config: Path | None = None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "ephemerd.sock"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "ephemerd.pid"


def run_trio(fn: Callable[..., Awaitable[T]], *args: object) -> T:
    """Run *fn* under Trio; Ctrl-C cancels it cleanly and raises ``KeyboardInterrupt``.

    SIGINT is received as a message rather than raised wherever the interpreter happens
    to be: raised inside an asyncio callback of the trio-asyncio bridge, it would be lost
    and leave the command hanging. trio is imported only by the commands that need it.
    """
    import signal

    import trio

    interrupted = False
    results: list[T] = []
    errors: list[Exception] = []

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def on_sigint() -> None:
                    nonlocal interrupted
                    async for _ in signals:
                        interrupted = True
                        nursery.cancel_scope.cancel()

                nursery.start_soon(on_sigint)
                try:
                    results.append(await fn(*args))
                except Exception as error:  # kept out of the nursery's ExceptionGroup
                    errors.append(error)
                finally:
                    nursery.cancel_scope.cancel()

    trio.run(main)
    if interrupted:
        raise KeyboardInterrupt
    if errors:
        raise errors[0]
    return results[0]
