"""Importing OCI layout and ``docker save`` tars into a content sink."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ephemerd._errors import ImagePullError
from ephemerd.sandbox._content import MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST
from ephemerd.sandbox._oci import Platform
from ephemerd.sandbox._oci_archive import import_archive
from tests.fakes.oci_images import (
    MemorySink,
    build_image,
    build_index,
    docker_save_tar,
    oci_layout_tar,
    sha256,
    tar_bytes,
)

AMD64 = Platform(architecture="amd64")
ARM64 = Platform(architecture="arm64", variant="v8")
NAME = {"io.containerd.image.name": "docker.io/library/app:1"}


def write(tmp_path: Path, data: bytes, name: str = "image.tar") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def test_oci_layout_single_manifest(tmp_path: Path) -> None:
    image = build_image([{"a": b"a"}, {"b": b"b" * 3000}], cmd=["/bin/true"])
    tar = oci_layout_tar([(MEDIA_TYPE_OCI_MANIFEST, image.manifest, NAME)], image.blobs())
    sink = MemorySink()

    pulled = await import_archive(write(tmp_path, tar), sink, platform=AMD64)

    assert pulled.reference == "docker.io/library/app:1"
    assert pulled.target.digest == pulled.manifest.digest == image.digest
    assert pulled.diff_ids == tuple(layer.diff_id for layer in image.layers)
    assert pulled.runtime.cmd == ("/bin/true",)
    assert sink.blobs == {**image.blobs(), image.digest: image.manifest}


async def test_oci_layout_multi_platform_index(tmp_path: Path) -> None:
    amd = build_image([{"arch": b"amd"}], architecture="amd64")
    arm = build_image([{"arch": b"arm"}], architecture="arm64", variant="v8")
    index = build_index([amd, arm])
    blobs = {**amd.blobs(), **arm.blobs(), amd.digest: amd.manifest, arm.digest: arm.manifest}
    path = write(tmp_path, oci_layout_tar([(MEDIA_TYPE_OCI_INDEX, index, NAME)], blobs))

    sink = MemorySink()
    pulled = await import_archive(path, sink, platform=ARM64)
    assert pulled.target.digest == sha256(index)
    assert pulled.manifest.digest == arm.digest
    assert amd.digest not in sink.blobs
    assert sink.blobs[sha256(index)] == index


async def test_gzipped_archive(tmp_path: Path) -> None:
    image = build_image()
    tar = oci_layout_tar([(MEDIA_TYPE_OCI_MANIFEST, image.manifest, NAME)], image.blobs())
    pulled = await import_archive(
        write(tmp_path, gzip.compress(tar), "image.tar.gz"), MemorySink(), platform=AMD64
    )
    assert pulled.manifest.digest == image.digest


async def test_several_images_need_a_name(tmp_path: Path) -> None:
    one, two = build_image([{"n": b"1"}]), build_image([{"n": b"2"}])
    entries = [
        (MEDIA_TYPE_OCI_MANIFEST, one.manifest, {"io.containerd.image.name": "x.io/one:1"}),
        (MEDIA_TYPE_OCI_MANIFEST, two.manifest, {"io.containerd.image.name": "x.io/two:1"}),
    ]
    path = write(tmp_path, oci_layout_tar(entries, {**one.blobs(), **two.blobs()}))

    with pytest.raises(ImagePullError) as info:
        await import_archive(path, MemorySink(), platform=AMD64)
    assert str(info.value) == (
        f"import {path}: several images in the archive (it has x.io/one:1, x.io/two:1); name one"
    )
    pulled = await import_archive(path, MemorySink(), name="x.io/two:1", platform=AMD64)
    assert pulled.manifest.digest == two.digest
    with pytest.raises(ImagePullError, match=r"no image named x\.io/three:1 in the archive"):
        await import_archive(path, MemorySink(), name="x.io/three:1", platform=AMD64)


async def test_unnamed_image_takes_the_given_name(tmp_path: Path) -> None:
    image = build_image()
    path = write(
        tmp_path, oci_layout_tar([(MEDIA_TYPE_OCI_MANIFEST, image.manifest, {})], image.blobs())
    )
    with pytest.raises(ImagePullError, match="does not name its image; give it a name"):
        await import_archive(path, MemorySink(), platform=AMD64)
    pulled = await import_archive(path, MemorySink(), name="local/app", platform=AMD64)
    assert pulled.reference == "docker.io/local/app:latest"


async def test_tampered_layer_in_layout_commits_nothing(tmp_path: Path) -> None:
    image = build_image([{"a": b"a" * 100}])
    blobs = image.blobs()
    layer = image.layers[0].digest
    blobs[layer] = bytes([blobs[layer][0] ^ 1]) + blobs[layer][1:]
    path = write(tmp_path, oci_layout_tar([(MEDIA_TYPE_OCI_MANIFEST, image.manifest, NAME)], blobs))
    sink = MemorySink()
    with pytest.raises(ImagePullError, match=f"blob {layer} failed verification"):
        await import_archive(path, sink, platform=AMD64)
    assert layer in sink.aborted
    assert sink.blobs == {}


async def test_docker_save_legacy_format(tmp_path: Path) -> None:
    image = build_image([{"f": b"1"}, {"f": b"2"}], oci=False, compress=False)
    layers = image.layers
    path = write(tmp_path, docker_save_tar(image, ["app:2"]))
    sink = MemorySink()

    pulled = await import_archive(path, sink, platform=AMD64)

    assert pulled.reference == "docker.io/library/app:2"
    assert [layer.digest for layer in pulled.layers] == [layer.diff_id for layer in layers]
    assert pulled.layers[0].media_type == "application/vnd.docker.image.rootfs.diff.tar"
    assert pulled.manifest.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    manifest = json.loads(sink.blobs[pulled.manifest.digest])
    assert [entry["digest"] for entry in manifest["layers"]] == [x.diff_id for x in layers]
    assert manifest["config"]["digest"] == sha256(image.config)


async def test_docker_save_with_gzipped_layers(tmp_path: Path) -> None:
    image = build_image([{"g": b"zipped"}], oci=False)
    pulled = await import_archive(
        write(tmp_path, docker_save_tar(image, ["x.io/y:z"])), MemorySink(), platform=AMD64
    )
    assert pulled.layers[0].digest == image.layers[0].digest
    assert pulled.layers[0].media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "neither an OCI layout"),
        ({"index.json": b"{}"}, "archive has no oci-layout"),
        (
            {"oci-layout": b'{"imageLayoutVersion": "2.0"}', "index.json": b"{}"},
            "unsupported OCI layout",
        ),
        ({"oci-layout": b"nope", "index.json": b"{}"}, "malformed oci-layout"),
        (
            {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": b"[1]"},
            "malformed index",
        ),
        ({"manifest.json": b"{}"}, "malformed manifest.json"),
        ({"manifest.json": b'[{"Config": "c.json", "Layers": []}]'}, "archive has no c.json"),
    ],
)
async def test_malformed_archives(tmp_path: Path, files: dict[str, bytes], expected: str) -> None:
    path = write(tmp_path, tar_bytes(files))
    with pytest.raises(ImagePullError) as info:
        await import_archive(path, MemorySink(), name="x/y", platform=AMD64)
    assert str(info.value).startswith(f"import {path}: {expected}"), str(info.value)
    assert "\n" not in str(info.value)


async def test_missing_file_and_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(ImagePullError, match="not a readable tar archive"):
        await import_archive(tmp_path / "absent.tar", MemorySink())
    with pytest.raises(ImagePullError, match="not a readable tar archive"):
        await import_archive(write(tmp_path, b"\x1f\x8bgarbage"), MemorySink())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=4096))
async def test_random_bytes_as_archive_only_raise_image_pull_error(
    tmp_path: Path, data: bytes
) -> None:
    path = write(tmp_path, data, "random.tar")
    with pytest.raises(ImagePullError):
        await import_archive(path, MemorySink(), name="x/y", platform=AMD64)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    index=st.binary(max_size=512),
    layout=st.sampled_from([b'{"imageLayoutVersion": "1.0.0"}', b"", b"{}"]),
)
async def test_random_index_json_only_raises_image_pull_error(
    tmp_path: Path, index: bytes, layout: bytes
) -> None:
    path = write(tmp_path, tar_bytes({"oci-layout": layout, "index.json": index}), "r.tar")
    with pytest.raises(ImagePullError):
        await import_archive(path, MemorySink(), name="x/y", platform=AMD64)


async def test_docker_save_symlinked_repeated_layers(tmp_path: Path) -> None:
    from tests.fakes.oci_images import docker_save_tar_with_links

    image = build_image([{"same": b"1"}] * 3, oci=False, compress=False)
    path = write(tmp_path, docker_save_tar_with_links(image, ["rep:1"]))
    sink = MemorySink()
    pulled = await import_archive(path, sink, platform=AMD64)
    assert len(pulled.layers) == 3
    assert len({layer.digest for layer in pulled.layers}) == 1
    assert pulled.layers[0].size == len(image.layers[0].blob)


async def test_symlink_out_of_the_archive_is_not_followed(tmp_path: Path) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("manifest.json")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ImagePullError, match="neither an OCI layout"):
        await import_archive(write(tmp_path, buf.getvalue()), MemorySink(), name="x/y")
