"""``ephemerd images import file.tar``: OCI image layouts and ``docker save`` archives.

Two formats reach the same ``PulledImage``:

- an OCI image layout in a tar (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``),
  which is also what ``docker save`` writes since Docker 25 (next to ``manifest.json``);
- the older ``docker save`` format, a ``manifest.json`` listing each image's config file
  and uncompressed layer tars. It has no distribution manifest, so one is written (Docker
  schema 2) for the content store to point its image record at.

Every blob is verified against its digest while it streams into the sink. The tar is
read in worker threads, one call at a time, and is never extracted to disk, so member
names cannot escape anywhere. Malformed archives fail with one ``ImagePullError`` line
that starts ``import <file>:``.
"""

from __future__ import annotations

import hashlib
import lzma
import posixpath
import re
import tarfile
import zlib
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import IO, TypeVar

import msgspec
import trio

from ephemerd._errors import ImagePullError

from ._blobs import check_digest, digest_of, store_bytes, verified_chunks
from ._content import (
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_MANIFEST,
    BlobDescriptor,
    ContentSink,
)
from ._oci import (
    INDEX_TYPES,
    MEDIA_TYPE_DOCKER_LAYER,
    IndexEntry,
    Platform,
    PulledImage,
    decode_json,
    host_platform,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
    sniff_kind,
)
from ._reference import parse_reference

__all__ = ["import_archive"]

_CHUNK = 1 << 20
_MAX_DOCUMENT = 4 << 20
_MAX_CONFIG = 16 << 20
_NAME_ANNOTATION = "io.containerd.image.name"
_REF_ANNOTATION = "org.opencontainers.image.ref.name"
_BLOB_PATH = re.compile(r"blobs/(sha256|sha512)/([a-f0-9]+)")
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)
_T = TypeVar("_T")


class _Layout(msgspec.Struct, frozen=True, rename="camel"):
    image_layout_version: str


class _SavedImage(msgspec.Struct, frozen=True, rename="pascal"):
    config: str
    layers: list[str]
    repo_tags: list[str] | None = None


class _Tar:
    """A tar archive read in worker threads; members by normalised name.

    Links (``docker save`` links repeated layers to the first copy) are resolved to the
    regular file they name, inside the archive only.
    """

    def __init__(self, tar: tarfile.TarFile) -> None:
        self._tar = tar
        self.members: dict[str, tarfile.TarInfo] = {}
        links: dict[str, str] = {}
        for info in tar.getmembers():
            name = _clean(info.name)
            if info.isfile():
                self.members[name] = info
            elif info.issym():
                links[name] = _clean(posixpath.join(posixpath.dirname(name), info.linkname))
            elif info.islnk():
                links[name] = _clean(info.linkname)
        for name, first in links.items():
            target = first
            for _hop in range(8):
                if target not in links:
                    break
                target = links[target]
            if target in self.members:
                self.members.setdefault(name, self.members[target])

    @staticmethod
    async def call(fn: Callable[[], _T]) -> _T:
        try:
            return await trio.to_thread.run_sync(fn)
        except _TAR_ERRORS as err:
            raise ImagePullError(f"unreadable archive: {err}") from None

    def _info(self, name: str) -> tarfile.TarInfo:
        info = self.members.get(_clean(name))
        if info is None:
            raise ImagePullError(f"archive has no {name}")
        return info

    def _open(self, info: tarfile.TarInfo) -> IO[bytes]:
        member = self._tar.extractfile(info)
        if member is None:
            raise ImagePullError(f"archive member {info.name} is not a file")
        return member

    def size(self, name: str) -> int:
        return self._info(name).size

    async def read(self, name: str, limit: int) -> bytes:
        info = self._info(name)
        if info.size > limit:
            raise ImagePullError(f"{name} is {info.size} bytes, more than the {limit} allowed")
        return await self.call(lambda: self._open(info).read())

    async def chunks(self, name: str) -> AsyncGenerator[bytes]:
        member = await self.call(lambda: self._open(self._info(name)))
        while chunk := await self.call(lambda: member.read(_CHUNK)):
            yield chunk

    async def digest(self, name: str) -> str:
        hasher = hashlib.sha256()
        async with aclosing(self.chunks(name)) as chunks:
            async for chunk in chunks:
                hasher.update(chunk)
        return f"sha256:{hasher.hexdigest()}"

    async def head(self, name: str, count: int) -> bytes:
        member = await self.call(lambda: self._open(self._info(name)))
        return await self.call(lambda: member.read(count))


def _clean(name: str) -> str:
    return posixpath.normpath(name.lstrip("/"))


def _blob_path(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


async def _store(tar: _Tar, sink: ContentSink, path: str, desc: BlobDescriptor) -> None:
    if tar.size(path) != desc.size:
        raise ImagePullError(f"{path} is {tar.size(path)} bytes, expected {desc.size}")
    if await sink.has(desc.digest):
        return
    async with aclosing(verified_chunks(tar.chunks(path), desc)) as chunks:
        await sink.write(desc, chunks)


async def import_archive(
    path: Path,
    sink: ContentSink,
    *,
    name: str | None = None,
    platform: Platform | None = None,
) -> PulledImage:
    """Import the image in the tar at *path* into *sink*.

    Args:
        name: which image, when the archive holds several, and the reference to record
            it as (required when the archive does not name its image).
        platform: the platform to pick from a multi-platform image; default this host's.

    Raises:
        ImagePullError: one line starting ``import <path>:``: unreadable or malformed
            archive, a blob that fails verification, or an ambiguous or missing name.

    Cancellation: safe; a blob being written is aborted by the sink.
    """
    want = platform or host_platform()
    try:
        wanted = str(parse_reference(name)) if name else None
        try:
            # Opened in a thread (it reads the first block), closed by the `with` below.
            opened = await trio.to_thread.run_sync(lambda: tarfile.open(path, "r:*"))  # noqa: SIM115
        except _TAR_ERRORS as err:
            raise ImagePullError(f"not a readable tar archive: {err}") from None
        with opened:
            tar = await _Tar.call(lambda: _Tar(opened))
            if "index.json" in tar.members:
                return await _import_layout(tar, sink, wanted, want)
            if "manifest.json" in tar.members:
                return await _import_docker(tar, sink, wanted, want)
            raise ImagePullError("neither an OCI layout (index.json) nor a docker save archive")
    except ImagePullError as err:
        raise type(err)(f"import {path}: {err}") from None


def _entry_name(entry: IndexEntry) -> str | None:
    for key in (_NAME_ANNOTATION, _REF_ANNOTATION):
        value = entry.annotations.get(key, "")
        if value:
            try:
                return str(parse_reference(value))
            except ImagePullError:
                continue
    return None


async def _import_layout(
    tar: _Tar, sink: ContentSink, wanted: str | None, want: Platform
) -> PulledImage:
    layout = decode_json(await tar.read("oci-layout", _MAX_DOCUMENT), _Layout, "oci-layout")
    if not layout.image_layout_version.startswith("1."):
        raise ImagePullError(f"unsupported OCI layout version {layout.image_layout_version!r}")
    index_data = await tar.read("index.json", _MAX_DOCUMENT)
    entries = parse_index(index_data)
    named = [(entry, _entry_name(entry)) for entry in entries]
    if wanted is not None:
        chosen = [entry for entry, entry_name in named if entry_name == wanted]
        if not chosen and len(entries) == 1:
            chosen = entries  # one unnamed (or differently named) image: record it as *wanted*
    else:
        chosen = entries
    if len(chosen) != 1:
        names = sorted({n for _, n in named if n}) or ["(unnamed)"]
        what = f"no image named {wanted}" if wanted and not chosen else "several images"
        raise ImagePullError(f"{what} in the archive (it has {', '.join(names)}); name one")
    entry = chosen[0]
    reference = wanted or _entry_name(entry)
    if reference is None:
        raise ImagePullError("the archive does not name its image; give it a name")
    target = entry.descriptor()
    desc, data = target, await _read_blob(tar, target, _MAX_DOCUMENT)
    parents: list[tuple[BlobDescriptor, bytes]] = []
    for _depth in range(3):
        if sniff_kind(data, desc.media_type) == "manifest":
            break
        parents.append((desc, data))
        desc = select_platform(parse_index(data), want).descriptor()
        data = await _read_blob(tar, desc, _MAX_DOCUMENT)
    else:
        raise ImagePullError("indexes nested more than two deep")
    if target.media_type in INDEX_TYPES and not parents:
        raise ImagePullError(f"{target.digest} is not the index index.json says it is")
    config, layers = parse_manifest(data)
    config_data = await _read_blob(tar, config, _MAX_CONFIG)
    have, diff_ids, runtime = parse_config(config_data)
    if (have.os, have.architecture) != (want.os, want.architecture):
        raise ImagePullError(f"image is for {have}, but this host runs {want}")
    if len(diff_ids) != len(layers):
        raise ImagePullError(f"config lists {len(diff_ids)} diff_ids for {len(layers)} layers")
    for layer in layers:
        await _store(tar, sink, _blob_path(layer.digest), layer)
    await store_bytes(sink, config, config_data)
    await store_bytes(sink, desc, data)
    for parent, parent_data in reversed(parents):
        await store_bytes(sink, parent, parent_data)
    return PulledImage(
        reference=reference,
        target=target,
        manifest=desc,
        config=config,
        layers=layers,
        diff_ids=diff_ids,
        platform=have,
        runtime=runtime,
    )


async def _read_blob(tar: _Tar, desc: BlobDescriptor, limit: int) -> bytes:
    data = await tar.read(_blob_path(desc.digest), limit)
    if len(data) != desc.size:
        raise ImagePullError(f"blob {desc.digest} is {len(data)} bytes, expected {desc.size}")
    check_digest(data, desc.digest, "blob")
    return data


async def _import_docker(
    tar: _Tar, sink: ContentSink, wanted: str | None, want: Platform
) -> PulledImage:
    saved = decode_json(
        await tar.read("manifest.json", _MAX_DOCUMENT), list[_SavedImage], "manifest.json"
    )
    tagged = [
        (image, [str(parse_reference(tag)) for tag in image.repo_tags or ()]) for image in saved
    ]
    if wanted is not None:
        chosen = [image for image, tags in tagged if wanted in tags]
        if not chosen and len(saved) == 1:
            chosen = saved
    else:
        chosen = saved
    if len(chosen) != 1:
        names = sorted({tag for _, tags in tagged for tag in tags}) or ["(unnamed)"]
        what = f"no image named {wanted}" if wanted and not chosen else "several images"
        raise ImagePullError(f"{what} in the archive (it has {', '.join(names)}); name one")
    image = chosen[0]
    tags = next(tags for img, tags in tagged if img is image)
    reference = wanted or (tags[0] if tags else None)
    if reference is None:
        raise ImagePullError("the archive does not name its image; give it a name")
    config_data = await tar.read(image.config, _MAX_CONFIG)
    config_digest = digest_of(config_data)
    stem = posixpath.basename(image.config).removesuffix(".json")
    if re.fullmatch(r"[a-f0-9]{64}", stem) and config_digest != f"sha256:{stem}":
        raise ImagePullError(f"{image.config} failed verification: its content is {config_digest}")
    have, diff_ids, runtime = parse_config(config_data)
    if (have.os, have.architecture) != (want.os, want.architecture):
        raise ImagePullError(f"image is for {have}, but this host runs {want}")
    if len(diff_ids) != len(image.layers):
        raise ImagePullError(
            f"config lists {len(diff_ids)} diff_ids for {len(image.layers)} layers"
        )
    layers: list[BlobDescriptor] = []
    for layer_path, diff_id in zip(image.layers, diff_ids, strict=True):
        named = _BLOB_PATH.fullmatch(posixpath.normpath(layer_path))
        gzipped = await tar.head(layer_path, 2) == b"\x1f\x8b"
        if named:
            digest = f"{named.group(1)}:{named.group(2)}"
        elif not gzipped:
            digest = diff_id  # an uncompressed layer's digest is its diff_id
        else:
            digest = await tar.digest(layer_path)
        media = MEDIA_TYPE_DOCKER_LAYER_GZIP if gzipped else MEDIA_TYPE_DOCKER_LAYER
        desc = BlobDescriptor(media_type=media, digest=digest, size=tar.size(layer_path))
        await _store(tar, sink, layer_path, desc)
        layers.append(desc)
    config = BlobDescriptor(
        media_type=MEDIA_TYPE_DOCKER_CONFIG, digest=config_digest, size=len(config_data)
    )
    manifest_data = msgspec.json.encode(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
            "config": config,
            "layers": layers,
        }
    )
    manifest = BlobDescriptor(
        media_type=MEDIA_TYPE_DOCKER_MANIFEST,
        digest=digest_of(manifest_data),
        size=len(manifest_data),
    )
    await store_bytes(sink, config, config_data)
    await store_bytes(sink, manifest, manifest_data)
    return PulledImage(
        reference=reference,
        target=manifest,
        manifest=manifest,
        config=config,
        layers=tuple(layers),
        diff_ids=diff_ids,
        platform=have,
        runtime=runtime,
    )
