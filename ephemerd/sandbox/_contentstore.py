"""containerd's content store as a ``ContentSink``: streamed, verified blob writes.

A write is one bidirectional ``Content.Write`` stream: WRITE messages carry the chunks
at increasing offsets, and a final COMMIT (with ``total`` and ``expected``) asks
containerd to verify size and digest. Trap (measured): the COMMIT's ``offset`` must be
the number of bytes already written, or containerd truncates the blob there. The sink
also hashes the bytes itself, so a wrong blob is refused before anything is committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator

import grpclib.client
import h2.exceptions
import trio

from ephemerd._errors import ImagePullError, SandboxError, SandboxNotFound
from ephemerd._proto.containerd.services.content import v1 as content_v1
from ephemerd._proto.containerd.services.leases import v1 as leases_v1

from ._client import (
    FOREIGN_ERRORS,
    MANAGED_LABEL,
    AlreadyExists,
    ContainerdClient,
    translate,
)
from ._content import BlobDescriptor

__all__ = ["ContentStore"]

_WRITE_ROUTE = "/containerd.services.content.v1.Content/Write"
_MAX_MESSAGE = 1 << 20  # containerd accepts 16 MiB messages; 1 MiB keeps memory flat

_WriteStream = grpclib.client.Stream[
    content_v1.WriteContentRequest, content_v1.WriteContentResponse
]


class ContentStore:
    """Stores blobs in containerd, each one held by *lease* (when given) until released.

    Blobs are written under the lease so the garbage collector cannot take them between
    the write and the moment an image record (and its own lease) refers to them.
    """

    def __init__(self, client: ContainerdClient, *, lease: str | None = None) -> None:
        self._client = client
        self._lease = lease

    async def has(self, digest: str) -> bool:
        """Whether a committed blob *digest* is stored."""
        try:
            await self._client.call(
                self._client.content.info, content_v1.InfoRequest(digest=digest)
            )
        except SandboxNotFound:
            return False
        return True

    async def write(self, desc: BlobDescriptor, chunks: AsyncIterator[bytes]) -> None:
        """Stream *chunks* into the store as blob *desc*, verify it and commit it.

        Raises:
            ImagePullError: size or digest mismatch, or containerd refused the blob.

        Cancellation: the upload is aborted; nothing is committed.
        """
        try:
            if not await self.has(desc.digest):
                await self._upload(desc, chunks)
        finally:
            # close a generator left unfinished (blob already here, or refused midway)
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        await self._hold(desc.digest)

    async def _upload(self, desc: BlobDescriptor, chunks: AsyncIterator[bytes]) -> None:
        algorithm, _, expected_hex = desc.digest.partition(":")
        if algorithm not in ("sha256", "sha512"):
            raise ImagePullError(f"blob {desc.digest}: unsupported digest algorithm")
        hasher = hashlib.new(algorithm)
        ref = f"ephemerd-{uuid.uuid4().hex}-{expected_hex[:12]}"
        client = self._client
        stream: _WriteStream = await client.open_raw_stream(
            _WRITE_ROUTE,
            content_v1.WriteContentRequest,
            content_v1.WriteContentResponse,
            lease=self._lease,
        )
        committed = False
        try:
            offset = 0
            async for chunk in chunks:
                for start in range(0, len(chunk), _MAX_MESSAGE):
                    piece = chunk[start : start + _MAX_MESSAGE]
                    hasher.update(piece)
                    if offset + len(piece) > desc.size:
                        raise ImagePullError(f"blob {desc.digest}: longer than {desc.size} bytes")
                    await self._exchange(
                        stream,
                        content_v1.WriteContentRequest(
                            action=content_v1.WriteAction.WRITE,
                            ref=ref,
                            offset=offset,
                            data=piece,
                            total=desc.size,
                            expected=desc.digest,
                        ),
                    )
                    offset += len(piece)
            if offset != desc.size:
                raise ImagePullError(f"blob {desc.digest}: {offset} bytes, expected {desc.size}")
            if hasher.hexdigest() != expected_hex:
                raise ImagePullError(f"blob {desc.digest}: digest mismatch")
            # AlreadyExists: a concurrent writer committed the same blob first
            with contextlib.suppress(AlreadyExists):
                await self._exchange(
                    stream,
                    content_v1.WriteContentRequest(
                        action=content_v1.WriteAction.COMMIT,
                        ref=ref,
                        offset=offset,  # must equal the bytes written (see module doc)
                        total=desc.size,
                        expected=desc.digest,
                        labels={MANAGED_LABEL: "true"},
                    ),
                    end=True,
                )
            committed = True
        except SandboxError as error:
            if isinstance(error, ImagePullError):
                raise
            # content is addressed by digest: if another writer committed it, we are done
            if not await self.has(desc.digest):
                raise ImagePullError(f"blob {desc.digest}: {error}") from None
        finally:
            with trio.CancelScope(shield=True):
                await self._close(stream, ref, abort=not committed)

    async def _exchange(
        self, stream: _WriteStream, request: content_v1.WriteContentRequest, *, end: bool = False
    ) -> content_v1.WriteContentResponse:
        async def exchange() -> content_v1.WriteContentResponse | None:
            await stream.send_message(request, end=end)
            reply = await stream.recv_message()
            if reply is None:  # trailers only: raises GRPCError when they carry an error
                await stream.recv_trailing_metadata()
            return reply

        try:
            reply = await self._client.run(exchange)
        except FOREIGN_ERRORS as error:
            raise translate(error, "content write") from None
        if reply is None:
            raise SandboxError("containerd content write: stream ended early")
        return reply

    async def _close(self, stream: _WriteStream, ref: str, *, abort: bool) -> None:
        async def close() -> None:
            if abort:
                await stream.cancel()
            await stream.__aexit__(None, None, None)

        with contextlib.suppress(*FOREIGN_ERRORS, h2.exceptions.ProtocolError):
            await self._client.run(close)
        if abort:
            # SandboxError: nothing was started, or containerd already dropped it
            with contextlib.suppress(SandboxError):
                await self._client.call(
                    self._client.content.abort, content_v1.AbortRequest(ref=ref)
                )

    async def _hold(self, digest: str) -> None:
        """Add the blob to the lease explicitly (a blob that already existed is not)."""
        if not self._lease:
            return
        await self._client.call(
            self._client.leases.add_resource,
            leases_v1.AddResourceRequest(
                id=self._lease, resource=leases_v1.Resource(id=digest, type="content")
            ),
        )

    async def read(self, digest: str) -> bytes:
        """The whole blob *digest* (for small blobs: manifests and configs).

        Raises:
            SandboxNotFound: no such blob.
        """
        data = bytearray()
        async with self._client.stream(
            self._client.content.read, content_v1.ReadContentRequest(digest=digest)
        ) as replies:
            async for reply in replies:
                data += reply.data
        return bytes(data)
