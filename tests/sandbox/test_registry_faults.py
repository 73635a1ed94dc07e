"""Pulls from a misbehaving registry: 5xx, tampered blobs, redirects, bad manifests,
stalls and cancellation. The fake is a real HTTP server on 127.0.0.1 (hypercorn)."""

# ruff: noqa: F811  (pytest fixtures imported from registry_fixture shadow their names)
from __future__ import annotations

import gc
import json
import socket

import httpx
import pytest
import trio

from ephemerd._errors import ImagePullError
from ephemerd._retry import RetryPolicy
from ephemerd.sandbox._content import MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST
from ephemerd.sandbox._oci import Platform
from ephemerd.sandbox._registry import open_registry_client, pull_image
from ephemerd.sandbox._registry_auth import RegistryCredentials
from ephemerd.sandbox._registry_http import TransientPullError, read_limited
from tests.fakes.oci_images import MemorySink, build_image, build_index, sha256
from tests.fakes.registry import FakeRegistry
from tests.sandbox.registry_fixture import fake_registry, serve_fake  # noqa: F401

FAST = RetryPolicy(schedule=(0.0,), jitter=0.0, max_attempts=2, max_age=None)
AMD64 = Platform(architecture="amd64")


def ref_of(fake: FakeRegistry, name: str = "x/y", tag: str = "v1") -> str:
    return f"{fake.host}/{name}:{tag}"


async def test_5xx_is_retried_then_succeeds(fake_registry: FakeRegistry) -> None:
    image = build_image([{"a": b"a"}])
    fake_registry.put_image("x/y", "v1", image)
    layer = image.layers[0].digest
    fake_registry.fail = {"/v2/": [502], "/manifests/": [503, 500], f"/blobs/{layer}": [503]}

    retry = RetryPolicy(schedule=(0.0,), jitter=0.0, max_attempts=3, max_age=None)
    sink = MemorySink()
    pulled = await pull_image(ref_of(fake_registry), sink, retry=retry, platform=AMD64)

    assert pulled.manifest.digest == image.digest
    assert sink.blobs[layer] == image.layers[0].blob
    assert all(not statuses for statuses in fake_registry.fail.values())


async def test_5xx_gives_up_with_a_retryable_error(fake_registry: FakeRegistry) -> None:
    fake_registry.put_image("x/y", "v1", build_image())
    fake_registry.fail = {"/manifests/": [503] * 10}
    with pytest.raises(TransientPullError) as info:
        await pull_image(ref_of(fake_registry), MemorySink(), retry=FAST)
    assert str(info.value) == (
        f"pull {ref_of(fake_registry)}: 127.0.0.1 answered HTTP 503 for manifest"
    )
    assert info.value.retryable
    assert len(fake_registry.fail["/manifests/"]) == 10 - 3  # first try + 2 retries


async def test_tampered_blob_aborts_and_commits_nothing(fake_registry: FakeRegistry) -> None:
    image = build_image([{"a": b"a" * 1000}, {"b": b"b"}])
    fake_registry.put_image("x/y", "v1", image)
    bad = image.layers[0].digest
    fake_registry.tamper = {bad}
    sink = MemorySink()

    with pytest.raises(ImagePullError) as info:
        await pull_image(ref_of(fake_registry), sink, retry=FAST, platform=AMD64)

    assert str(info.value).startswith(
        f"pull {ref_of(fake_registry)}: blob {bad} failed verification"
    )
    assert not info.value.retryable
    assert bad in sink.aborted
    assert bad not in sink.blobs
    assert image.digest not in sink.blobs  # the manifest is never committed either
    assert image.config_digest not in sink.blobs


async def test_tampered_config_is_refused(fake_registry: FakeRegistry) -> None:
    image = build_image()
    fake_registry.put_image("x/y", "v1", image)
    fake_registry.tamper = {image.config_digest}
    sink = MemorySink()
    with pytest.raises(ImagePullError, match="failed verification"):
        await pull_image(ref_of(fake_registry), sink, retry=FAST, platform=AMD64)
    assert sink.blobs == {}


async def test_manifest_digest_header_mismatch(fake_registry: FakeRegistry) -> None:
    image = build_image()
    fake_registry.blobs.update(image.blobs())
    other = build_image([{"other": b"x"}])
    # The tag serves *image*'s manifest, but pinning by digest asks for *other*'s.
    fake_registry.manifests[("x/y", other.digest)] = (MEDIA_TYPE_OCI_MANIFEST, image.manifest)
    with pytest.raises(ImagePullError) as info:
        await pull_image(f"{fake_registry.host}/x/y@{other.digest}", MemorySink(), retry=FAST)
    assert f"manifest {other.digest} failed verification" in str(info.value)


async def test_manifest_without_digest_header_is_hashed(fake_registry: FakeRegistry) -> None:
    image = build_image()
    fake_registry.put_image("x/y", "v1", image)
    fake_registry.omit_digest_header = True
    pulled = await pull_image(ref_of(fake_registry), MemorySink(), retry=FAST, platform=AMD64)
    assert pulled.manifest.digest == image.digest


async def test_wrong_digest_header_is_refused(fake_registry: FakeRegistry) -> None:
    fake_registry.put_image("x/y", "v1", build_image())
    fake_registry.digest_header = "sha256:" + "0" * 64
    with pytest.raises(ImagePullError) as info:
        await pull_image(ref_of(fake_registry), MemorySink(), retry=FAST, platform=AMD64)
    assert "manifest digest mismatch: registry says sha256:000" in str(info.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "malformed manifest: "),
        (b"[]", "malformed manifest: "),
        (b'{"schemaVersion": 2, "mediaType": "text/html"}', "unsupported manifest media type"),
        (b'{"schemaVersion": 1, "name": "x"}', "Docker schema 1 manifests are not supported"),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                    "config": {},
                    "layers": [],
                }
            ).encode(),
            "malformed manifest: Object missing required field `digest`",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                    "config": {"digest": "sha256:xyz", "size": 1},
                    "layers": [],
                }
            ).encode(),
            "malformed manifest: ",
        ),
        (
            json.dumps(
                {"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": 5}
            ).encode(),
            "malformed index: ",
        ),
    ],
)
async def test_malformed_manifest_is_a_one_line_error(
    fake_registry: FakeRegistry, body: bytes, expected: str
) -> None:
    fake_registry.put_manifest("x/y", "v1", MEDIA_TYPE_OCI_MANIFEST, body)
    with pytest.raises(ImagePullError) as info:
        await pull_image(ref_of(fake_registry), MemorySink(), retry=FAST, platform=AMD64)
    message = str(info.value)
    assert message.startswith(f"pull {ref_of(fake_registry)}: {expected}"), message
    assert "\n" not in message


async def test_layer_count_must_match_diff_ids(fake_registry: FakeRegistry) -> None:
    fake_registry.put_image("x/y", "v1", build_image(extra_diff_ids=1))
    with pytest.raises(ImagePullError, match="config lists 2 diff_ids for 1 layers"):
        await pull_image(ref_of(fake_registry), MemorySink(), retry=FAST, platform=AMD64)


async def test_image_for_another_architecture_is_refused(fake_registry: FakeRegistry) -> None:
    fake_registry.put_image("x/y", "v1", build_image(architecture="arm64"))
    with pytest.raises(ImagePullError) as info:
        await pull_image(ref_of(fake_registry), MemorySink(), retry=FAST, platform=AMD64)
    assert str(info.value).endswith("image is for linux/arm64, but this host runs linux/amd64")


async def test_index_entry_size_is_checked(fake_registry: FakeRegistry) -> None:
    image = build_image()
    fake_registry.put_image("x/y", None, image)
    index = json.loads(build_index([image]))
    index["manifests"][0]["size"] += 1
    fake_registry.put_manifest("x/y", "v1", MEDIA_TYPE_OCI_INDEX, json.dumps(index).encode())
    with pytest.raises(ImagePullError, match="the index says"):
        await pull_image(ref_of(fake_registry), MemorySink(), retry=FAST, platform=AMD64)


async def test_blob_redirects_are_followed_without_credentials(
    nursery: trio.Nursery, fake_registry: FakeRegistry
) -> None:
    image = build_image([{"a": b"a"}, {"b": b"b"}])
    fake_registry.put_image("x/y", "v1", image)
    fake_registry.redirect_blobs = True
    fake_registry.require_basic = ("bob", "pw")
    # Storage lives on another origin (localhost vs 127.0.0.1): no Authorization goes there.
    fake_registry.url = fake_registry.url.replace("127.0.0.1", "localhost")
    ref = f"127.0.0.1:{fake_registry.url.rsplit(':', 1)[1]}/x/y:v1"
    creds = {ref.split("/", 1)[0]: RegistryCredentials(username="bob", password="pw")}

    sink = MemorySink()
    await pull_image(ref, sink, credentials=creds, retry=FAST, platform=AMD64)

    assert image.layers[0].digest in sink.blobs
    storage = [r for r in fake_registry.requests if r[1].startswith("/storage/")]
    assert len(storage) == 3  # config + 2 layers
    assert all(auth == "" for _, _, auth in storage)


async def test_blob_404_is_clear(fake_registry: FakeRegistry) -> None:
    image = build_image()
    fake_registry.put_image("x/y", "v1", image)
    del fake_registry.blobs[image.layers[0].digest]
    with pytest.raises(ImagePullError) as info:
        await pull_image(ref_of(fake_registry), MemorySink(), retry=FAST, platform=AMD64)
    assert str(info.value) == f"pull {ref_of(fake_registry)}: blob unknown to registry"


async def test_cancelled_pull_commits_nothing(fake_registry: FakeRegistry) -> None:
    image = build_image([{"big": bytes(range(256)) * 4000}])
    fake_registry.put_image("x/y", "v1", image)
    layer = image.layers[0].digest
    fake_registry.stall = {layer}
    sink = MemorySink()

    async with trio.open_nursery() as nursery:

        async def pull() -> None:
            await pull_image(ref_of(fake_registry), sink, retry=FAST, platform=AMD64)

        nursery.start_soon(pull)
        await fake_registry.stalled.wait()
        nursery.cancel_scope.cancel()

    assert layer in sink.aborted
    assert sink.blobs == {}


async def test_plain_http_only_for_loopback_or_insecure(nursery: trio.Nursery) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback address on this host")
    fake = FakeRegistry()
    fake.url = await serve_fake(nursery, fake, host=address)
    fake.put_image("x/y", "v1", build_image())
    ref = f"{fake.host}/x/y:v1"

    with pytest.raises(ImagePullError) as info:
        await pull_image(ref, MemorySink(), retry=FAST, platform=AMD64)
    assert "unreachable" in str(info.value)
    assert fake.requests == []  # never spoken to over plain HTTP

    pulled = await pull_image(
        ref, MemorySink(), insecure_registries=[fake.host], retry=FAST, platform=AMD64
    )
    assert pulled.manifest.media_type == MEDIA_TYPE_OCI_MANIFEST


async def test_concurrent_pulls_share_one_client(fake_registry: FakeRegistry) -> None:
    images = [build_image([{f"f{i}": bytes([i]) * 100}]) for i in range(4)]
    for i, image in enumerate(images):
        fake_registry.put_image(f"r/{i}", "v1", image)
    sinks = [MemorySink() for _ in images]
    async with open_registry_client(retry=FAST, platform=AMD64) as client, trio.open_nursery() as n:
        for i, sink in enumerate(sinks):
            n.start_soon(client.pull, ref_of(fake_registry, f"r/{i}"), sink)
    for image, sink in zip(images, sinks, strict=True):
        assert image.digest in sink.blobs
    assert sum(1 for r in fake_registry.requests if r[1] == "/v2/") == 1  # probed once


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_sha256_helper() -> None:
    assert (
        sha256(b"")
        == "sha256:" + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


async def test_403_is_denied_and_not_retried(fake_registry: FakeRegistry) -> None:
    fake_registry.put_image("x/y", "v1", build_image())
    fake_registry.fail = {"/manifests/": [403, 403, 403]}
    with pytest.raises(ImagePullError) as info:
        await pull_image(ref_of(fake_registry), MemorySink(), retry=FAST)
    assert str(info.value).startswith(f"pull {ref_of(fake_registry)}: denied: ")
    assert not info.value.retryable
    assert fake_registry.fail["/manifests/"] == [403, 403]  # asked once


async def test_oversized_manifest_is_refused(fake_registry: FakeRegistry) -> None:
    fake_registry.put_manifest("x/y", "v1", MEDIA_TYPE_OCI_MANIFEST, b" " * ((4 << 20) + 1))
    with pytest.raises(ImagePullError, match="more than the 4194304"):
        await pull_image(ref_of(fake_registry), MemorySink(), retry=FAST)


async def test_an_oversized_streamed_body_is_refused_and_its_stream_ended() -> None:
    """httpx nests stream iterators; abandoning them mid-body would leave unfinished ones for
    the garbage collector (a ResourceWarning, an error here)."""
    response = httpx.Response(500, stream=httpx.ByteStream(b"x" * 20_000))
    with pytest.raises(ImagePullError, match="more than the 8192 bytes allowed"):
        await read_limited(response, 8192, "error body")
    gc.collect()
