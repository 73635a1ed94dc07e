"""Small OCI/Docker images built in memory, and an in-memory ``ContentSink``.

Builders return the exact bytes a registry or an archive would hold, so tests can push
them to a real registry, serve them from a fake one or pack them into a tar.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from ephemerd._errors import ImagePullError
from ephemerd.sandbox._content import (
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    BlobDescriptor,
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(files: Mapping[str, bytes]) -> bytes:
    """A deterministic tar holding *files* (path -> content, mode 0644)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


@dataclass(frozen=True)
class Layer:
    blob: bytes
    diff_id: str
    media_type: str

    @property
    def digest(self) -> str:
        return sha256(self.blob)


def make_layer(files: Mapping[str, bytes], *, compress: bool = True, oci: bool = True) -> Layer:
    raw = tar_bytes(files)
    if compress:
        blob = gzip.compress(raw, mtime=0)
        media = MEDIA_TYPE_OCI_LAYER_GZIP if oci else MEDIA_TYPE_DOCKER_LAYER_GZIP
    else:
        blob = raw
        media = MEDIA_TYPE_OCI_LAYER if oci else "application/vnd.docker.image.rootfs.diff.tar"
    return Layer(blob=blob, diff_id=sha256(raw), media_type=media)


@dataclass(frozen=True)
class BuiltImage:
    """One platform's image: its config, layers and manifest, as bytes."""

    config: bytes
    layers: tuple[Layer, ...]
    manifest: bytes
    media_type: str
    architecture: str
    variant: str = ""

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    def blobs(self) -> dict[str, bytes]:
        found = {sha256(layer.blob): layer.blob for layer in self.layers}
        found[self.config_digest] = self.config
        return found

    def descriptor(self) -> BlobDescriptor:
        return BlobDescriptor(
            media_type=self.media_type, digest=self.digest, size=len(self.manifest)
        )


def build_image(
    layer_files: Sequence[Mapping[str, bytes]] = ({"hello.txt": b"hello\n"},),
    *,
    architecture: str = "amd64",
    variant: str = "",
    os: str = "linux",
    oci: bool = True,
    cmd: Sequence[str] = ("/bin/sh",),
    env: Sequence[str] = ("PATH=/bin",),
    extra_diff_ids: int = 0,
    compress: bool = True,
) -> BuiltImage:
    """An image with one layer per mapping in *layer_files*."""
    layers = tuple(make_layer(files, oci=oci, compress=compress) for files in layer_files)
    diff_ids = [layer.diff_id for layer in layers] + [sha256(b"x")] * extra_diff_ids
    config_doc: dict[str, object] = {
        "architecture": architecture,
        "os": os,
        "config": {"Cmd": list(cmd), "Env": list(env), "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if variant:
        config_doc["variant"] = variant
    config = json.dumps(config_doc, sort_keys=True).encode()
    media = MEDIA_TYPE_OCI_MANIFEST if oci else MEDIA_TYPE_DOCKER_MANIFEST
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": media,
        "config": {
            "mediaType": MEDIA_TYPE_OCI_CONFIG if oci else MEDIA_TYPE_DOCKER_CONFIG,
            "digest": sha256(config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": layer.media_type, "digest": layer.digest, "size": len(layer.blob)}
            for layer in layers
        ],
    }
    manifest = json.dumps(manifest_doc, indent=2).encode()
    return BuiltImage(
        config=config,
        layers=layers,
        manifest=manifest,
        media_type=media,
        architecture=architecture,
        variant=variant,
    )


def build_index(images: Sequence[BuiltImage], *, oci: bool = True) -> bytes:
    """An index (or Docker manifest list) naming each image with its platform."""
    entries: list[dict[str, object]] = []
    for image in images:
        plat: dict[str, str] = {"os": "linux", "architecture": image.architecture}
        if image.variant:
            plat["variant"] = image.variant
        entries.append(
            {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(image.manifest),
                "platform": plat,
            }
        )
    doc = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_INDEX if oci else MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        "manifests": entries,
    }
    return json.dumps(doc).encode()


@dataclass
class MemorySink:
    """A ``ContentSink`` in memory that verifies what it is given, like the real store."""

    blobs: dict[str, bytes] = field(default_factory=dict[str, bytes])
    writes: list[str] = field(default_factory=list[str])
    aborted: list[str] = field(default_factory=list[str])

    async def has(self, digest: str) -> bool:
        return digest in self.blobs

    async def write(self, desc: BlobDescriptor, chunks: AsyncIterator[bytes]) -> None:
        self.writes.append(desc.digest)
        buf = bytearray()
        try:
            async for chunk in chunks:
                buf += chunk
        except BaseException:
            self.aborted.append(desc.digest)
            raise
        if len(buf) != desc.size or sha256(bytes(buf)) != desc.digest:
            self.aborted.append(desc.digest)
            raise ImagePullError(f"sink: blob {desc.digest} does not verify")
        self.blobs[desc.digest] = bytes(buf)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def oci_layout_tar(
    entries: Sequence[tuple[str, bytes, Mapping[str, str]]],
    blobs: Mapping[str, bytes],
    *,
    layout: bytes = b'{"imageLayoutVersion": "1.0.0"}',
) -> bytes:
    """An OCI image layout as tar bytes.

    Args:
        entries: ``(media type, manifest or index bytes, annotations)`` for index.json.
        blobs: every other blob (``digest -> bytes``), stored under ``blobs/sha256/``.
    """
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_INDEX,
        "manifests": [
            {
                "mediaType": media,
                "digest": sha256(data),
                "size": len(data),
                "annotations": dict(notes),
            }
            for media, data, notes in entries
        ],
    }
    all_blobs = dict(blobs)
    for _, data, _ in entries:
        all_blobs[sha256(data)] = data
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "oci-layout", layout)
        _add(tar, "index.json", json.dumps(index).encode())
        for digest, data in all_blobs.items():
            _add(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", data)
    return buf.getvalue()


def docker_save_tar(image: BuiltImage, repo_tags: Sequence[str]) -> bytes:
    """The pre-25 ``docker save`` format: ``manifest.json``, ``<id>.json``, ``<n>/layer.tar``."""
    config_name = image.config_digest.removeprefix("sha256:") + ".json"
    layer_names = [f"{i:02d}{'a' * 62}/layer.tar" for i in range(len(image.layers))]
    manifest = [{"Config": config_name, "RepoTags": list(repo_tags), "Layers": layer_names}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        _add(tar, config_name, image.config)
        for name, layer in zip(layer_names, image.layers, strict=True):
            _add(tar, name, layer.blob)
    return buf.getvalue()


def docker_save_tar_with_links(image: BuiltImage, repo_tags: Sequence[str]) -> bytes:
    """Like ``docker_save_tar`` with the first layer stored once and the rest symlinked to
    it (what ``docker save`` does for repeated layers); all layers must be equal."""
    config_name = image.config_digest.removeprefix("sha256:") + ".json"
    layer_names = [f"{i:02d}{'b' * 62}/layer.tar" for i in range(len(image.layers))]
    manifest = [{"Config": config_name, "RepoTags": list(repo_tags), "Layers": layer_names}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        _add(tar, config_name, image.config)
        _add(tar, layer_names[0], image.layers[0].blob)
        for name in layer_names[1:]:
            link = tarfile.TarInfo(name)
            link.type = tarfile.SYMTYPE
            link.linkname = f"../{layer_names[0]}"
            tar.addfile(link)
    return buf.getvalue()
