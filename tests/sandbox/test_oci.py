"""Manifest, index and config parsing, platform choice and streamed digest checks."""

from __future__ import annotations

import json
import platform
from collections.abc import AsyncGenerator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ephemerd._errors import ImagePullError
from ephemerd.sandbox._blobs import verified_chunks
from ephemerd.sandbox._content import MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, BlobDescriptor
from ephemerd.sandbox._oci import (
    IndexEntry,
    Platform,
    host_platform,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
    sniff_kind,
)
from tests.fakes.oci_images import build_image, build_index, sha256


def entry(arch: str, variant: str = "", os: str = "linux") -> IndexEntry:
    return IndexEntry(
        media_type=MEDIA_TYPE_OCI_MANIFEST,
        digest=sha256(f"{os}{arch}{variant}".encode()),
        size=1,
        platform=Platform(os=os, architecture=arch, variant=variant),
    )


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64/v8"),
        ("armv7l", "linux/arm/v7"),
        ("riscv64", "linux/riscv64"),
    ],
)
def test_host_platform(machine: str, expected: str) -> None:
    assert str(host_platform(machine)) == expected


def test_host_platform_defaults_to_this_machine() -> None:
    assert host_platform() == host_platform(platform.machine())


def test_select_platform_variants() -> None:
    entries = [entry("amd64"), entry("arm64", "v8"), entry("arm", "v6"), entry("arm", "v7")]
    assert select_platform(entries, Platform(architecture="amd64")) is entries[0]
    assert select_platform(entries, Platform(architecture="arm64")) is entries[1]
    assert select_platform(entries, Platform(architecture="arm", variant="v7")) is entries[3]
    assert select_platform(entries[:3], Platform(architecture="arm", variant="v7")) is entries[2]
    assert select_platform([entry("arm64")], Platform(architecture="arm64", variant="v8"))
    with pytest.raises(ImagePullError, match=r"no manifest for linux/arm/v6 .*linux/arm/v7"):
        select_platform([entry("arm", "v7")], Platform(architecture="arm", variant="v6"))
    with pytest.raises(ImagePullError, match="it has windows/amd64"):
        select_platform([entry("amd64", os="windows")], Platform(architecture="amd64"))


def test_select_platform_skips_attestations_but_takes_unplatformed() -> None:
    attestation = entry("unknown", os="unknown")
    bare = IndexEntry(media_type=MEDIA_TYPE_OCI_MANIFEST, digest=sha256(b"bare"), size=1)
    amd = entry("amd64")
    assert select_platform([attestation, amd], Platform(architecture="amd64")) is amd
    assert select_platform([attestation, bare], Platform(architecture="amd64")) is bare


def test_parse_real_documents() -> None:
    image = build_image([{"a": b"1"}, {"b": b"2"}], cmd=["/bin/sh", "-c", "x"])
    config, layers = parse_manifest(image.manifest)
    assert config.digest == image.config_digest
    assert [layer.digest for layer in layers] == [sha256(x.blob) for x in image.layers]
    plat, diff_ids, runtime = parse_config(image.config)
    assert str(plat) == "linux/amd64"
    assert diff_ids == tuple(x.diff_id for x in image.layers)
    assert runtime.cmd == ("/bin/sh", "-c", "x")
    assert runtime.env == ("PATH=/bin",)
    index = build_index([image])
    assert sniff_kind(index) == "index"
    assert sniff_kind(image.manifest) == "manifest"
    assert [e.digest for e in parse_index(index)] == [image.digest]


def test_sniff_kind_without_media_type_uses_the_shape() -> None:
    assert sniff_kind(b'{"schemaVersion": 2, "manifests": []}') == "index"
    assert sniff_kind(b'{"schemaVersion": 2, "config": {}}') == "manifest"
    assert sniff_kind(b'{"schemaVersion": 2}', MEDIA_TYPE_OCI_INDEX + "; charset=x") == "index"


def test_config_with_nulls() -> None:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": None,
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    plat, diff_ids, runtime = parse_config(json.dumps(doc).encode())
    assert diff_ids == () and runtime.cmd == () and plat.architecture == "amd64"


def test_non_image_config_media_type_is_refused() -> None:
    doc = json.loads(build_image().manifest)
    doc["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json"
    with pytest.raises(ImagePullError, match="not a container image"):
        parse_manifest(json.dumps(doc).encode())


async def _gen(*chunks: bytes) -> AsyncGenerator[bytes]:
    for chunk in chunks:
        yield chunk


async def _collect(chunks: AsyncGenerator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def test_verified_chunks_pass_good_blobs() -> None:
    data = b"hello world"
    desc = BlobDescriptor(media_type="x", digest=sha256(data), size=len(data))
    assert await _collect(verified_chunks(_gen(b"hello", b"", b" world"), desc)) == [
        b"hello",
        b" world",
    ]
    empty = BlobDescriptor(media_type="x", digest=sha256(b""), size=0)
    assert await _collect(verified_chunks(_gen(), empty)) == []


async def test_verified_chunks_hold_back_a_wrong_last_chunk() -> None:
    desc = BlobDescriptor(media_type="x", digest=sha256(b"hello world"), size=11)
    seen: list[bytes] = []
    with pytest.raises(ImagePullError, match="failed verification"):
        async for chunk in verified_chunks(_gen(b"hello", b" WORLD"), desc):
            seen.append(chunk)
    assert seen == [b"hello"]  # the wrong final chunk never reached the consumer


@pytest.mark.parametrize(
    ("chunks", "match"),
    [((b"hello world!",), "longer than"), ((b"hello",), "ended after 5 of 11 bytes")],
)
async def test_verified_chunks_check_size(chunks: tuple[bytes, ...], match: str) -> None:
    desc = BlobDescriptor(media_type="x", digest=sha256(b"hello world"), size=11)
    with pytest.raises(ImagePullError, match=match):
        await _collect(verified_chunks(_gen(*chunks), desc))


PARSERS = [sniff_kind, parse_index, parse_manifest, parse_config]


@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_image_pull_error(data: bytes) -> None:
    for parse in PARSERS:
        try:
            parse(data)
        except ImagePullError as err:
            assert "\n" not in str(err)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "schemaVersion",
        "mediaType",
        "config",
        "layers",
        "manifests",
        "digest",
        "size",
        "platform",
        "architecture",
        "os",
        "rootfs",
        "diff_ids",
        "Cmd",
        "annotations",
    ]
)
_shaped = st.recursive(
    _json,
    lambda inner: st.dictionaries(_keys, inner, max_size=6) | st.lists(inner, max_size=3),
    max_leaves=30,
)


@given(_shaped)
def test_random_json_documents_only_raise_image_pull_error(doc: object) -> None:
    data = json.dumps(doc).encode()
    for parse in PARSERS:
        try:
            parse(data)
        except ImagePullError as err:
            assert "\n" not in str(err)
