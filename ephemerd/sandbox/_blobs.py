"""Digests, and blobs verified while they stream into a ``ContentSink``.

The chunk that completes a blob is only released after its digest checked out, so a
sink that commits when the bytes end never commits a wrong blob.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncGenerator, AsyncIterable
from contextlib import aclosing
from typing import Protocol

from ephemerd._errors import ImagePullError

from ._content import BlobDescriptor, ContentSink

__all__ = ["DIGEST_PATTERN", "check_digest", "digest_of", "store_bytes", "verified_chunks"]

DIGEST_PATTERN = r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})"
"""The digests ephemerd verifies: ``sha256:<64 hex>`` or ``sha512:<128 hex>``."""

_DIGEST_RE = re.compile(DIGEST_PATTERN)


class _Hasher(Protocol):
    @property
    def name(self) -> str: ...

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _hasher(digest: str) -> _Hasher:
    algorithm = digest.split(":", 1)[0]
    if algorithm not in ("sha256", "sha512") or not _DIGEST_RE.fullmatch(digest):
        raise ImagePullError(f"unsupported digest {digest[:80]!r}")
    return hashlib.new(algorithm)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """``algorithm:hex`` of *data*."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def check_digest(data: bytes, expected: str, what: str) -> None:
    """Raise unless *data* hashes to *expected*.

    Raises:
        ImagePullError: the digest differs, or uses an algorithm we do not know.
    """
    hasher = _hasher(expected)
    hasher.update(data)
    got = f"{hasher.name}:{hasher.hexdigest()}"
    if got != expected:
        raise ImagePullError(f"{what} {expected} failed verification: its content is {got}")


async def verified_chunks(
    chunks: AsyncIterable[bytes], desc: BlobDescriptor
) -> AsyncGenerator[bytes]:
    """Pass *chunks* through, checking them against *desc*'s size and digest.

    The chunk that completes the blob is held back until the digest matched, so a
    consumer that commits when the bytes end never commits a wrong blob. *chunks* is
    closed (if it is an async generator) however this ends.

    Raises:
        ImagePullError: the blob is longer or shorter than ``desc.size`` or its digest
            differs.
    """
    hasher = _hasher(desc.digest)
    seen = 0
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            seen += len(chunk)
            if seen > desc.size:
                raise ImagePullError(f"blob {desc.digest} is longer than its {desc.size} bytes")
            hasher.update(chunk)
            if seen == desc.size:
                _check_hasher(hasher, desc.digest)
            yield chunk
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
    if seen != desc.size:
        raise ImagePullError(f"blob {desc.digest} ended after {seen} of {desc.size} bytes")
    if desc.size == 0:
        _check_hasher(hasher, desc.digest)


def _check_hasher(hasher: _Hasher, expected: str) -> None:
    got = f"{hasher.name}:{hasher.hexdigest()}"
    if got != expected:
        raise ImagePullError(f"blob {expected} failed verification: its content is {got}")


async def store_bytes(sink: ContentSink, desc: BlobDescriptor, data: bytes) -> None:
    """Write an in-memory blob to *sink* (unless it has it), verified on the way."""
    if await sink.has(desc.digest):
        return

    async def one() -> AsyncGenerator[bytes]:
        yield data

    async with aclosing(verified_chunks(one(), desc)) as chunks:
        await sink.write(desc, chunks)
