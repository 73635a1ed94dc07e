# ruff: noqa: F811  (pytest fixtures imported from the fixture modules shadow their names)
"""End to end: a real registry's image pulled into a real containerd, and an archive
imported into it, unpacked by the image store."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from ephemerd._retry import RetryPolicy
from ephemerd.sandbox import ContainerdClient, ImageStore
from ephemerd.sandbox._content import MEDIA_TYPE_OCI_MANIFEST
from ephemerd.sandbox._oci_archive import import_archive
from ephemerd.sandbox._registry import open_registry_client
from tests.fakes.oci_images import build_image, oci_layout_tar
from tests.fakes.registry import RealRegistry, push_image
from tests.sandbox.containerd_fixture import (  # noqa: F401  (fixtures)
    cd_client,
    containerd_session,
    needs_containerd,
)
from tests.sandbox.registry_fixture import real_registry  # noqa: F401  (fixture)

pytestmark = [needs_containerd, pytest.mark.containerd]

FAST = RetryPolicy(schedule=(0.0,), jitter=0.0, max_attempts=2, max_age=None)


async def test_pull_into_containerd_and_unpack(
    real_registry: RealRegistry, cd_client: ContainerdClient
) -> None:
    image = build_image(
        [{"etc/greeting": b"hello\n"}, {"etc/other": b"x" * 100_000}], cmd=["/bin/sh"]
    )
    name = f"e2e/img-{secrets.token_hex(4)}"
    await push_image(real_registry.url, name, "v1", image)
    ref = f"{real_registry.host}/{name}:v1"

    async with open_registry_client(retry=FAST) as registry:
        store = ImageStore(cd_client, source=registry)
        info = await store.ensure(ref)
        assert info.reference == ref
        assert info.manifest == image.digest
        assert info.runtime.cmd == ("/bin/sh",)
        again = await store.ensure(ref)  # already here: no second pull
        assert again == info
    await store.remove(ref)


async def test_import_archive_into_containerd(tmp_path: Path, cd_client: ContainerdClient) -> None:
    image = build_image([{"etc/imported": b"yes\n"}])
    name = f"docker.io/local/imported-{secrets.token_hex(4)}:1"
    tar = oci_layout_tar(
        [(MEDIA_TYPE_OCI_MANIFEST, image.manifest, {"io.containerd.image.name": name})],
        image.blobs(),
    )
    path = tmp_path / "image.tar"
    path.write_bytes(tar)

    store = ImageStore(cd_client)
    await store.open_lease(name)
    pulled = await import_archive(path, store.content(name))
    info = await store.store(pulled, name=name)
    assert info.manifest == image.digest
    assert await store.get(name) == info
    await store.remove(name)
