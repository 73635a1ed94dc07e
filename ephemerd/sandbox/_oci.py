"""OCI and Docker image formats: manifests, indexes, image configs, platforms, digests.

The registry client and the archive reader both end in a ``PulledImage``; this module is
what they share. Every parser takes untrusted bytes and raises only ``ImagePullError``,
with a one-line message that says which document was wrong and why (the callers add
which image it belongs to).
"""

from __future__ import annotations

import platform as _platform
from collections.abc import Sequence
from typing import Annotated, Literal, TypeVar

import msgspec

from ephemerd._errors import ImagePullError

from ._blobs import DIGEST_PATTERN
from ._content import (
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    BlobDescriptor,
)

__all__ = [
    "MANIFEST_ACCEPT",
    "MEDIA_TYPE_DOCKER_LAYER",
    "MEDIA_TYPE_DOCKER_SCHEMA1",
    "MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED",
    "MEDIA_TYPE_OCI_LAYER_ZSTD",
    "ImageRuntime",
    "IndexEntry",
    "Platform",
    "PulledImage",
    "decode_json",
    "host_platform",
    "parse_config",
    "parse_index",
    "parse_manifest",
    "select_platform",
    "sniff_kind",
]

MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG})

MANIFEST_ACCEPT = ", ".join(
    [
        MEDIA_TYPE_OCI_INDEX,
        MEDIA_TYPE_OCI_MANIFEST,
        MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        MEDIA_TYPE_DOCKER_MANIFEST,
    ]
)
"""The ``Accept`` header of a manifest request: every format ephemerd can run."""

_Digest = Annotated[str, msgspec.Meta(pattern=DIGEST_PATTERN)]
_Size = Annotated[int, msgspec.Meta(ge=0)]
_T = TypeVar("_T")


class Platform(msgspec.Struct, frozen=True, kw_only=True):
    """An OS/architecture pair, with the CPU variant where it matters (``arm/v7``)."""

    os: str = "linux"
    architecture: str = ""
    variant: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


class ImageRuntime(msgspec.Struct, frozen=True, kw_only=True):
    """The image config's defaults for the process a container runs."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""


class PulledImage(msgspec.Struct, frozen=True, kw_only=True):
    """An image whose blobs are all in the content sink, ready to unpack.

    Attributes:
        reference: the normalised reference it was pulled or imported as.
        target: what the reference resolved to: an index, or the manifest itself.
        manifest: the manifest for this host's platform.
        config: the image config blob.
        layers: the layer blobs, bottom first (media type says the compression).
        diff_ids: digests of the uncompressed layers, as the config lists them.
        platform: the platform the config declares.
        runtime: the config's entrypoint, command, environment, directory and user.
    """

    reference: str
    target: BlobDescriptor
    manifest: BlobDescriptor
    config: BlobDescriptor
    layers: tuple[BlobDescriptor, ...]
    diff_ids: tuple[str, ...]
    platform: Platform
    runtime: ImageRuntime = ImageRuntime()


class IndexEntry(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One manifest named by an index, with the platform it is for."""

    media_type: str = ""
    digest: _Digest
    size: _Size
    platform: Platform | None = None
    annotations: dict[str, str] = msgspec.field(default_factory=dict[str, str])

    def descriptor(self) -> BlobDescriptor:
        return BlobDescriptor(
            media_type=self.media_type or MEDIA_TYPE_OCI_MANIFEST,
            digest=self.digest,
            size=self.size,
            annotations=self.annotations,
        )


class _Descriptor(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    media_type: str = ""
    digest: _Digest
    size: _Size
    annotations: dict[str, str] | None = None


class _Index(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    schema_version: int
    media_type: str = ""
    manifests: list[IndexEntry]


class _Manifest(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    schema_version: int
    media_type: str = ""
    config: _Descriptor
    layers: list[_Descriptor]


class _Kind(msgspec.Struct, frozen=True, rename="camel"):
    schema_version: int | None = None
    media_type: str = ""
    manifests: msgspec.Raw = msgspec.Raw()
    config: msgspec.Raw = msgspec.Raw()


class _RunConfig(msgspec.Struct, frozen=True, rename="pascal"):
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] | None = None
    working_dir: str = ""
    user: str = ""


class _RootFS(msgspec.Struct, frozen=True):
    type: str
    diff_ids: list[_Digest]


class _Config(msgspec.Struct, frozen=True):
    architecture: str
    os: str
    rootfs: _RootFS
    variant: str = ""
    config: _RunConfig | None = None


def decode_json(data: bytes, into: type[_T], what: str) -> _T:
    """Decode untrusted JSON *data* into *into*.

    Raises:
        ImagePullError: ``malformed <what>: <msgspec's reason>``.
    """
    try:
        return msgspec.json.decode(data, type=into)
    except msgspec.DecodeError as err:
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ImagePullError(f"malformed {what}: {detail}") from None


def _descriptor(raw: _Descriptor, default_type: str) -> BlobDescriptor:
    return BlobDescriptor(
        media_type=raw.media_type or default_type,
        digest=raw.digest,
        size=raw.size,
        annotations=raw.annotations or {},
    )


def sniff_kind(data: bytes, content_type: str = "") -> Literal["index", "manifest"]:
    """Tell an index from a manifest by media type, falling back to the document's shape.

    Raises:
        ImagePullError: it is neither (e.g. a schema 1 manifest, or not JSON at all).
    """
    kind = decode_json(data, _Kind, "manifest")
    media = kind.media_type or content_type.split(";", 1)[0].strip()
    if media in (MEDIA_TYPE_DOCKER_SCHEMA1, MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED) or (
        kind.schema_version == 1
    ):
        raise ImagePullError("Docker schema 1 manifests are not supported; push the image again")
    if media in INDEX_TYPES or (not media and len(kind.manifests) > 0):
        return "index"
    if media in MANIFEST_TYPES or (not media and len(kind.config) > 0):
        return "manifest"
    raise ImagePullError(f"unsupported manifest media type {media or '(none)'!r}")


def parse_index(data: bytes) -> list[IndexEntry]:
    """The entries of an OCI index or Docker manifest list.

    Raises:
        ImagePullError: malformed JSON or fields.
    """
    index = decode_json(data, _Index, "index")
    if index.schema_version != 2:
        raise ImagePullError(f"index has schemaVersion {index.schema_version}, expected 2")
    return index.manifests


def parse_manifest(data: bytes) -> tuple[BlobDescriptor, tuple[BlobDescriptor, ...]]:
    """The config and layer descriptors of an image manifest.

    Raises:
        ImagePullError: malformed JSON or fields, or a config that is not an image config.
    """
    manifest = decode_json(data, _Manifest, "manifest")
    if manifest.schema_version != 2:
        raise ImagePullError(f"manifest has schemaVersion {manifest.schema_version}, expected 2")
    default_config = (
        MEDIA_TYPE_DOCKER_CONFIG
        if manifest.media_type == MEDIA_TYPE_DOCKER_MANIFEST
        else MEDIA_TYPE_OCI_CONFIG
    )
    config = _descriptor(manifest.config, default_config)
    if config.media_type not in CONFIG_TYPES:
        raise ImagePullError(
            f"manifest config has media type {config.media_type!r}; it is not a container image"
        )
    layers = tuple(_descriptor(layer, "") for layer in manifest.layers)
    return config, layers


def parse_config(data: bytes) -> tuple[Platform, tuple[str, ...], ImageRuntime]:
    """Platform, layer diff_ids and process defaults from an image config blob.

    Raises:
        ImagePullError: malformed JSON or fields.
    """
    config = decode_json(data, _Config, "image config")
    run = config.config or _RunConfig()
    runtime = ImageRuntime(
        entrypoint=tuple(run.entrypoint or ()),
        cmd=tuple(run.cmd or ()),
        env=tuple(run.env or ()),
        working_dir=run.working_dir,
        user=run.user,
    )
    plat = Platform(os=config.os, architecture=config.architecture, variant=config.variant)
    return plat, tuple(config.rootfs.diff_ids), runtime


_MACHINES = {
    "x86_64": Platform(architecture="amd64"),
    "amd64": Platform(architecture="amd64"),
    "aarch64": Platform(architecture="arm64", variant="v8"),
    "arm64": Platform(architecture="arm64", variant="v8"),
    "armv8l": Platform(architecture="arm64", variant="v8"),
    "armv7l": Platform(architecture="arm", variant="v7"),
    "armv6l": Platform(architecture="arm", variant="v6"),
    "i386": Platform(architecture="386"),
    "i686": Platform(architecture="386"),
}


def host_platform(machine: str | None = None) -> Platform:
    """The platform whose images this host runs, from ``platform.machine()``."""
    machine = machine or _platform.machine()
    return _MACHINES.get(machine.lower(), Platform(architecture=machine.lower()))


def _variant_rank(want: Platform, have: Platform) -> int | None:
    """How well *have*'s variant suits *want* (0 is best); ``None`` if it cannot run."""
    if want.architecture == "arm64":
        return 0 if have.variant in ("", "v8") else None
    if want.architecture == "amd64":
        return 0 if have.variant in ("", "v1") else None
    if want.architecture == "arm":
        # An armv7 CPU runs v7, v6 and v5 code, preferring the newest.
        order = ["v7", "v6", "v5"] if want.variant in ("", "v7") else ["v6", "v5"]
        if want.variant == "v5":
            order = ["v5"]
        return order.index(have.variant or "v7") if (have.variant or "v7") in order else None
    return 0 if have.variant == want.variant or not have.variant else None


def select_platform(entries: Sequence[IndexEntry], want: Platform) -> IndexEntry:
    """The index entry to run on *want*: the best variant match, else one with no platform.

    Raises:
        ImagePullError: nothing in the index runs on *want*; the message lists what it has.
    """
    best: tuple[int, IndexEntry] | None = None
    for entry in entries:
        have = entry.platform
        if have is None or have.os != want.os or have.architecture != want.architecture:
            continue
        rank = _variant_rank(want, have)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, entry)
    if best is not None:
        return best[1]
    unplatformed = [e for e in entries if e.platform is None and e.media_type not in INDEX_TYPES]
    if unplatformed:
        return unplatformed[0]
    offered = sorted({str(e.platform) for e in entries if e.platform is not None})
    listed = ", ".join(offered) or "nothing"
    raise ImagePullError(f"no manifest for {want} in the index (it has {listed})")
