"""``ephemerd images``: the images sandboxes start from, in ephemerd's containerd.

With a daemon running on the data dir, the commands talk to its containerd; without
one, they start a private containerd for the command's duration.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ephemerd._errors import DaemonAlreadyRunning
from ephemerd._lock import hold_data_dir

from ._options import GlobalOptions, run_trio

if TYPE_CHECKING:
    from ephemerd.sandbox import ImageStore

__all__ = ["images_import", "images_list", "images_pull", "images_remove"]


def images_pull(opts: GlobalOptions, reference: str) -> int:
    async def pull(images: ImageStore) -> None:
        info = await images.ensure(reference)
        print(f"{info.reference} {info.manifest}")

    return _with_images(opts, pull)


def images_import(opts: GlobalOptions, archive: Path, name: str | None) -> int:
    async def load(images: ImageStore) -> None:
        info = await images.import_oci_archive(archive, name=name)
        print(f"{info.reference} {info.manifest}")

    return _with_images(opts, load)


def images_list(opts: GlobalOptions) -> int:
    async def show(images: ImageStore) -> None:
        for name in await images.list():
            print(name)

    return _with_images(opts, show)


def images_remove(opts: GlobalOptions, references: list[str]) -> int:
    async def remove(images: ImageStore) -> None:
        for reference in references:
            await images.remove(reference)
            print(f"removed {images.normalize(reference)}")

    return _with_images(opts, remove)


def _with_images(opts: GlobalOptions, action: Callable[[ImageStore], Awaitable[None]]) -> int:
    opts.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with ExitStack() as stack:
        try:
            stack.enter_context(hold_data_dir(opts.data_dir))
            daemon_running = False
        except DaemonAlreadyRunning:
            daemon_running = True
        run_trio(_run, opts, action, daemon_running)
    return 0


async def _run(
    opts: GlobalOptions, action: Callable[[ImageStore], Awaitable[None]], daemon_running: bool
) -> None:
    async with _open_images(opts.data_dir, daemon_running=daemon_running) as images:
        await action(images)


@asynccontextmanager
async def _open_images(data_dir: Path, *, daemon_running: bool) -> AsyncGenerator[ImageStore]:
    from ephemerd.sandbox import (
        ImageStore,
        embedded_socket,
        open_containerd,
        open_registry_client,
        parse_reference,
    )

    # A running daemon owns the embedded containerd: talk to it rather than start another.
    address = str(embedded_socket(data_dir)) if daemon_running else None
    async with (
        open_containerd(data_dir=data_dir, address=address) as client,
        open_registry_client() as registry,
    ):
        yield ImageStore(client, source=registry, normalize=lambda r: str(parse_reference(r)))
