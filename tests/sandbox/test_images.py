# ruff: noqa: F811, ASYNC240  (fixtures imported from containerd_fixture shadow their names)
"""The content store and the image store against a real containerd."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ephemerd._errors import ImagePullError
from ephemerd.sandbox import (
    HOST_IMAGE,
    BlobDescriptor,
    ContainerdClient,
    ContentSink,
    ContentStore,
    ImageStore,
    PulledImage,
    build_host_image,
    host_python_paths,
    open_sandbox_backend,
)
from ephemerd.sandbox._oci import parse_config, parse_manifest
from tests.fakes.oci_images import build_image, oci_layout_tar

from .containerd_fixture import Session, cd_client, containerd_session  # noqa: F401
from .sandbox_helpers import run

pytestmark = pytest.mark.containerd


def _desc(data: bytes) -> BlobDescriptor:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return BlobDescriptor(media_type="application/octet-stream", digest=digest, size=len(data))


async def _pieces(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for size in sizes:
        yield data[start : start + size]
        start += size
    if start < len(data):
        yield data[start:]


async def test_content_store_is_a_content_sink(cd_client: ContainerdClient) -> None:
    assert isinstance(ContentStore(cd_client), ContentSink)


async def test_streamed_write_round_trips(cd_client: ContainerdClient) -> None:
    # odd chunk sizes, one above the 1 MiB message size: the final COMMIT offset must be
    # the bytes written, or containerd truncates the blob
    data = os.urandom(3 * (1 << 20) + 12345)
    store = ContentStore(cd_client)
    desc = _desc(data)
    assert not await store.has(desc.digest)
    await store.write(desc, _pieces(data, [1, 1000, (1 << 20) + 7, 65536]))
    assert await store.has(desc.digest)
    assert await store.read(desc.digest) == data
    await store.write(desc, _pieces(data, []))  # already there: cheap and fine


async def test_concurrent_writes_of_one_blob(cd_client: ContainerdClient) -> None:
    data = os.urandom(200_000)
    desc = _desc(data)
    store = ContentStore(cd_client)
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(store.write, desc, _pieces(data, [50_000] * 4))
    assert await store.read(desc.digest) == data


@pytest.mark.parametrize(
    ("bad", "message"),
    [("digest", "digest mismatch"), ("short", "expected"), ("long", "longer than")],
)
async def test_bad_blobs_are_refused(cd_client: ContainerdClient, bad: str, message: str) -> None:
    data = os.urandom(10_000)
    desc = _desc(data)
    sent = data
    if bad == "digest":
        sent = bytes([data[0] ^ 1]) + data[1:]
    elif bad == "short":
        sent = data[:-1]
    else:
        sent = data + b"!"
    store = ContentStore(cd_client)
    with pytest.raises(ImagePullError, match=message):
        await store.write(desc, _pieces(sent, [4096]))
    assert not await store.has(desc.digest)


async def test_host_image_is_deterministic_and_listed(
    containerd_session: Session, cd_client: ContainerdClient
) -> None:
    images = ImageStore(cd_client)
    first = await images.get(HOST_IMAGE)
    assert first is not None
    again = await build_host_image(images, work_dir=containerd_session.data_dir / "tmp")
    assert again.manifest == first.manifest
    assert again.chain_id == first.chain_id
    assert HOST_IMAGE in await images.list()


async def test_extra_paths_and_remove(
    containerd_session: Session, cd_client: ContainerdClient, tmp_path: Path
) -> None:
    extra = tmp_path / "tool"
    extra.mkdir()
    (extra / "run.sh").write_text("#!/bin/sh\necho from-the-host\n")
    (extra / "run.sh").chmod(0o755)
    name = f"ephemerd.local/extra-{secrets.token_hex(3)}:1"
    images = ImageStore(cd_client)
    await build_host_image(
        images, name, extra_paths=[extra], work_dir=containerd_session.data_dir / "tmp"
    )
    async with open_sandbox_backend(
        cd_client, data_dir=containerd_session.data_dir, images=images
    ) as backend:
        outcome, log = await run(backend, f"{extra}/run.sh", image=name)
    assert outcome.succeeded
    assert log == "from-the-host\n"
    await images.remove(name)
    await images.remove(name)  # idempotent
    assert name not in await images.list()
    assert await ImageStore(cd_client).get(name) is None
    with pytest.raises(ImagePullError, match="does not exist"):
        await build_host_image(images, name, extra_paths=[tmp_path / "nope"], work_dir=tmp_path)


class CopySource:
    """An image source that copies the host image's blobs, counting pulls."""

    def __init__(self, client: ContainerdClient) -> None:
        self.client = client
        self.pulls = 0

    async def pull(self, reference: str, sink: ContentSink) -> PulledImage:
        self.pulls += 1
        host = await ImageStore(self.client).get(HOST_IMAGE)
        assert host is not None
        store = ContentStore(self.client)
        manifest = await store.read(host.manifest)
        config_desc, layers = parse_manifest(manifest)
        platform, diff_ids, runtime = parse_config(await store.read(config_desc.digest))
        manifest_desc = BlobDescriptor(
            media_type="application/vnd.oci.image.manifest.v1+json",
            digest=host.manifest,
            size=len(manifest),
        )
        for desc in (*layers, config_desc, manifest_desc):
            await trio.lowlevel.checkpoint()  # let the other callers pile up on the lock
            await sink.write(desc, _pieces(await store.read(desc.digest), [65536] * 64))
        return PulledImage(
            reference=reference,
            target=manifest_desc,
            manifest=manifest_desc,
            config=config_desc,
            layers=layers,
            diff_ids=diff_ids,
            platform=platform,
            runtime=runtime,
        )


async def test_concurrent_ensure_pulls_once(cd_client: ContainerdClient) -> None:
    source = CopySource(cd_client)
    images = ImageStore(cd_client, source=source)
    name = f"ephemerd.local/copy-{secrets.token_hex(3)}:1"
    results = []

    async def ensure() -> None:
        results.append(await images.ensure(name))

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(ensure)
    assert source.pulls == 1
    assert len({info.manifest for info in results}) == 1
    await images.remove(name)


async def test_ensure_without_source_is_a_clear_error(cd_client: ContainerdClient) -> None:
    with pytest.raises(ImagePullError, match="not present and no registry configured"):
        await ImageStore(cd_client).ensure("ephemerd.local/absent:1")
    with pytest.raises(ImagePullError, match="invalid image reference"):
        await ImageStore(cd_client).ensure("Not A Ref")


async def test_import_oci_archive(cd_client: ContainerdClient, tmp_path: Path) -> None:
    image = build_image([{"etc/imported": b"yes\n"}])
    name = f"docker.io/local/archive-{secrets.token_hex(3)}:1"
    path = tmp_path / "image.tar"
    path.write_bytes(
        oci_layout_tar(
            [("application/vnd.oci.image.manifest.v1+json", image.manifest,
              {"io.containerd.image.name": name})],
            image.blobs(),
        )
    )  # fmt: skip
    images = ImageStore(cd_client)
    info = await images.import_oci_archive(path)
    assert info.reference == name
    assert info.manifest == image.digest
    fresh = await ImageStore(cd_client).get(name)  # the blobs outlived the temporary lease
    assert fresh == info
    await images.remove(name)


async def test_blobs_are_labelled(cd_client: ContainerdClient) -> None:
    from ephemerd._proto.containerd.services.content import v1 as content_v1
    from ephemerd.sandbox import MANAGED_LABEL

    data = os.urandom(1000)
    desc = _desc(data)
    await ContentStore(cd_client).write(desc, _pieces(data, []))
    info = await cd_client.call(cd_client.content.info, content_v1.InfoRequest(digest=desc.digest))
    assert info.info.labels[MANAGED_LABEL] == "true"
    assert info.info.size == len(data)


async def test_image_with_the_host_python(
    containerd_session: Session, cd_client: ContainerdClient
) -> None:
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 on this host")
    paths = await trio.to_thread.run_sync(host_python_paths)
    name = f"ephemerd.local/python-{secrets.token_hex(3)}:1"
    images = ImageStore(cd_client)
    await build_host_image(
        images, name, extra_paths=paths, exclude=("__pycache__", "test", "idlelib")
    )
    try:
        async with open_sandbox_backend(
            cd_client, data_dir=containerd_session.data_dir, images=images
        ) as backend:
            outcome, log = await run(
                backend,
                "python3 -c 'import json, hashlib, zlib; print(json.dumps([2 + 2]))'",
                image=name,
            )
        assert outcome.succeeded, log
        assert log == "[4]\n"
    finally:
        await images.remove(name)
