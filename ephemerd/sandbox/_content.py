"""The seam between whoever fetches image blobs and the place they are stored.

A registry client (``_registry.py``), an OCI archive reader (``_oci.py``) and the local
image builder all produce blobs; the containerd content store consumes them. They meet
at ``ContentSink``, so a fetcher never knows about containerd and the store never knows
about HTTP.

The contract of ``ContentSink.write``: the chunks, concatenated, are exactly the blob
named by ``desc.digest`` and ``desc.size``. The sink verifies both and refuses (with
``ImagePullError``) a blob that does not match; a failed or cancelled write leaves
nothing committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import msgspec

__all__ = [
    "MEDIA_TYPE_DOCKER_CONFIG",
    "MEDIA_TYPE_DOCKER_LAYER_GZIP",
    "MEDIA_TYPE_DOCKER_MANIFEST",
    "MEDIA_TYPE_DOCKER_MANIFEST_LIST",
    "MEDIA_TYPE_OCI_CONFIG",
    "MEDIA_TYPE_OCI_INDEX",
    "MEDIA_TYPE_OCI_LAYER",
    "MEDIA_TYPE_OCI_LAYER_GZIP",
    "MEDIA_TYPE_OCI_MANIFEST",
    "BlobDescriptor",
    "ContentSink",
]

MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


class BlobDescriptor(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """An OCI content descriptor: what a blob is, how big, and its digest.

    Encodes to and decodes from the OCI JSON form (``mediaType``, ``digest``, ``size``,
    ``annotations``), so manifests can be parsed straight into it.
    """

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = msgspec.field(default_factory=dict[str, str])


@runtime_checkable
class ContentSink(Protocol):
    """Where fetched blobs go (the containerd content store implements it)."""

    async def has(self, digest: str) -> bool:
        """Whether a committed blob with *digest* (``sha256:<hex>``) is already stored."""
        ...

    async def write(self, desc: BlobDescriptor, chunks: AsyncIterator[bytes]) -> None:
        """Store the blob *desc* from *chunks*, streamed, and commit it.

        Writing a blob that is already stored is allowed and cheap (the chunks may be
        left unread).

        Raises:
            ImagePullError: the bytes do not match ``desc.size`` or ``desc.digest``, or the
                store refused them.

        Cancellation: nothing is committed; the partial upload is aborted.
        """
        ...
