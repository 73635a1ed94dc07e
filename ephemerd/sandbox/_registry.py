"""Pulls images from OCI distribution registries into a ``ContentSink``.

Debian's containerd has no server-side pull, so ephemerd pulls itself: probe ``/v2/``,
answer the auth challenge, fetch the manifest (resolving an index to this host's
platform), then stream the config and layers into the sink, each verified against its
digest while it streams. Blobs the sink already has are skipped; blob redirects to
storage are followed (without our ``Authorization`` header when they leave the host).

Plain HTTP is used only for loopback registries and those configured as insecure (and
then only after HTTPS failed, as Docker does). 5xx, 429 and network errors are retried
on a ``RetryPolicy``; everything else fails at once with a one-line ``ImagePullError``
such as ``pull 127.0.0.1:5000/x:y: manifest unknown``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from typing import TypeVar

import httpx
import msgspec
import trio

from ephemerd._errors import ImagePullError
from ephemerd._http import open_http_client
from ephemerd._retry import Backoff, RetryPolicy

from ._blobs import check_digest, digest_of, store_bytes, verified_chunks
from ._content import (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    BlobDescriptor,
    ContentSink,
)
from ._oci import (
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    Platform,
    PulledImage,
    host_platform,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
    sniff_kind,
)
from ._reference import ImageReference, parse_reference
from ._registry_auth import (
    Challenge,
    RegistryAuth,
    RegistryCredentials,
    parse_challenges,
)
from ._registry_http import (
    TransientPullError,
    describe,
    first_pull_error,
    is_loopback,
    raw_chunks,
    read_limited,
    status_error,
)

__all__ = ["DEFAULT_PULL_RETRY", "RegistryClient", "open_registry_client", "pull_image"]

DEFAULT_PULL_RETRY = RetryPolicy(schedule=(0.5, 1.0, 2.0, 4.0), max_attempts=4, max_age=None)
"""Retries of one request: four more tries over about eight seconds."""

_MAX_MANIFEST = 4 << 20
_MAX_CONFIG = 16 << 20
_T = TypeVar("_T")


class _MediaType(msgspec.Struct, frozen=True, rename="camel"):
    media_type: str = ""


class _Host:
    """What one registry host needs: its base URL, its client, its last challenge."""

    def __init__(self, base: httpx.URL, client: httpx.AsyncClient, challenge: Challenge | None):
        self.base = base
        self.client = client
        self.challenge = challenge


class RegistryClient:
    """Pulls images; holds per-host state and the token cache. Make it with
    ``open_registry_client``; one long-lived client serves every pull."""

    def __init__(
        self,
        *,
        secure: httpx.AsyncClient,
        insecure_tls: httpx.AsyncClient,
        credentials: Mapping[str, RegistryCredentials],
        insecure_registries: Iterable[str],
        retry: RetryPolicy,
        platform: Platform,
        max_parallel_blobs: int,
    ) -> None:
        self._secure = secure
        self._insecure_tls = insecure_tls
        self._insecure = frozenset(insecure_registries)
        self._retry = retry
        self._platform = platform
        self._blob_limit = trio.CapacityLimiter(max_parallel_blobs)
        self._hosts: dict[str, _Host] = {}
        self._probing: dict[str, trio.Lock] = {}
        self._auth = RegistryAuth(
            credentials=credentials,
            client_for=lambda url: self._client_for(url.host),
            allow_http=self._allow_http,
        )

    def _allow_http(self, host: str) -> bool:
        bare = host.rsplit(":", 1)[0] if ":" in host and not host.endswith("]") else host
        return is_loopback(bare) or host in self._insecure or bare in self._insecure

    def _client_for(self, host: str) -> httpx.AsyncClient:
        return self._insecure_tls if self._allow_http(host) else self._secure

    async def pull(
        self,
        reference: str | ImageReference,
        sink: ContentSink,
        *,
        platform: Platform | None = None,
    ) -> PulledImage:
        """Pull *reference* for *platform* (default: this host's) into *sink*.

        Raises:
            ImagePullError: one line, starting ``pull <reference>:``; its ``retryable`` is
                true when a later attempt may succeed (registry unavailable).

        Cancellation: safe; a blob being written is aborted by the sink, nothing half
        written is committed.
        """
        ref = parse_reference(reference) if isinstance(reference, str) else reference
        try:
            return await self._pull(ref, sink, platform or self._platform)
        except ImagePullError as err:
            raise type(err)(f"pull {ref}: {err}") from None

    async def _pull(self, ref: ImageReference, sink: ContentSink, want: Platform) -> PulledImage:
        host = await self._retrying(lambda: self._host(ref))
        data, media_type, digest = await self._retrying(
            lambda: self._manifest(host, ref, ref.object, None)
        )
        target = BlobDescriptor(media_type=media_type, digest=digest, size=len(data))
        parents: list[tuple[BlobDescriptor, bytes]] = []
        manifest, manifest_data = target, data
        for _depth in range(3):
            if sniff_kind(manifest_data, manifest.media_type) == "manifest":
                break
            parents.append((manifest, manifest_data))
            entry = select_platform(parse_index(manifest_data), want).descriptor()
            manifest_data, media_type = await self._manifest_for(host, ref, entry)
            manifest = BlobDescriptor(media_type=media_type, digest=entry.digest, size=entry.size)
        else:
            raise ImagePullError("indexes nested more than two deep")
        config, layers = parse_manifest(manifest_data)
        config_data = await self._retrying(lambda: self._small_blob(host, ref, config))
        have, diff_ids, runtime = parse_config(config_data)
        if (have.os, have.architecture) != (want.os, want.architecture):
            raise ImagePullError(f"image is for {have}, but this host runs {want}")
        if len(diff_ids) != len(layers):
            raise ImagePullError(f"config lists {len(diff_ids)} diff_ids for {len(layers)} layers")
        await self._copy_layers(host, ref, layers, sink)
        await store_bytes(sink, config, config_data)
        await store_bytes(sink, manifest, manifest_data)
        for desc, parent_data in reversed(parents):
            await store_bytes(sink, desc, parent_data)
        return PulledImage(
            reference=str(ref),
            target=target,
            manifest=manifest,
            config=config,
            layers=layers,
            diff_ids=diff_ids,
            platform=have,
            runtime=runtime,
        )

    async def _manifest_for(
        self, host: _Host, ref: ImageReference, entry: BlobDescriptor
    ) -> tuple[bytes, str]:
        data, media_type, _ = await self._retrying(
            lambda: self._manifest(host, ref, entry.digest, entry)
        )
        return data, media_type

    async def _retrying(self, op: Callable[[], Awaitable[_T]]) -> _T:
        backoff = Backoff(self._retry)
        while True:
            try:
                return await op()
            except TransientPullError:
                delay = backoff.next_delay(trio.current_time())
                if delay is None:
                    raise
                await trio.sleep(delay)

    async def _host(self, ref: ImageReference) -> _Host:
        """Probe ``/v2/`` once per host: pick the scheme and learn the auth challenge."""
        async with self._probing.setdefault(ref.api_host, trio.Lock()):
            known = self._hosts.get(ref.api_host)
            if known is not None:
                return known
            host = await self._probe(ref)
            self._hosts[ref.api_host] = host
            return host

    async def _probe(self, ref: ImageReference) -> _Host:
        client = self._client_for(ref.api_host)
        schemes = ("https", "http") if self._allow_http(ref.api_host) else ("https",)
        for scheme in schemes:
            base = httpx.URL(f"{scheme}://{ref.api_host}")
            try:
                response = await client.get(base.join("/v2/"))
            except httpx.TransportError as err:
                if scheme == "https" and len(schemes) == 2:
                    continue
                raise TransientPullError(
                    f"registry {ref.api_host} unreachable: {describe(err)}"
                ) from None
            except (httpx.HTTPError, httpx.InvalidURL) as err:
                raise ImagePullError(f"registry {ref.api_host}: {describe(err)}") from None
            if response.status_code in (200, 401):
                challenges = parse_challenges(response.headers.get_list("www-authenticate"))
                challenge = challenges[0] if challenges else None
                return _Host(base, client, challenge)
            raise await status_error(response, "GET /v2/")
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def _get(
        self, host: _Host, ref: ImageReference, path: str, *, accept: str, what: str
    ) -> AsyncGenerator[httpx.Response]:
        """A streamed 200 answer for *path*, answering one auth challenge on the way."""
        scope = f"repository:{ref.repository}:pull"
        for attempt in (1, 2):
            headers = {"Accept": accept, "Accept-Encoding": "identity"}
            authorization = await self._auth.authorization(ref.registry, host.challenge, scope)
            if authorization:
                headers["Authorization"] = authorization
            request = host.client.build_request("GET", host.base.join(path), headers=headers)
            try:
                response = await host.client.send(request, stream=True, follow_redirects=True)
            except httpx.TransportError as err:
                raise TransientPullError(
                    f"{what}: {ref.api_host} unreachable: {describe(err)}"
                ) from None
            except (httpx.HTTPError, httpx.InvalidURL) as err:
                raise ImagePullError(f"{what}: {describe(err)}") from None
            try:
                if response.status_code == 401 and attempt == 1:
                    challenges = parse_challenges(response.headers.get_list("www-authenticate"))
                    if challenges:
                        if host.challenge is not None:
                            self._auth.forget(ref.registry, host.challenge, scope)
                        host.challenge = challenges[0]
                        continue
                if response.status_code == 401:
                    creds = self._auth.credentials_for(ref.registry)
                    hint = (
                        f"{ref.registry} refused the credentials of {creds.username!r}"
                        if creds
                        else f"no credentials configured for {ref.registry}"
                    )
                    err = await status_error(response, what)
                    raise ImagePullError(f"{err} ({hint})")
                if response.status_code != 200:
                    raise await status_error(response, what)
                yield response
                return
            finally:
                await response.aclose()

    async def _manifest(
        self, host: _Host, ref: ImageReference, obj: str, expected: BlobDescriptor | None
    ) -> tuple[bytes, str, str]:
        """Manifest bytes, media type and verified digest of *obj* (a tag or a digest)."""
        path = f"/v2/{ref.repository}/manifests/{obj}"
        async with self._get(host, ref, path, accept=MANIFEST_ACCEPT, what="manifest") as resp:
            data = await read_limited(resp, _MAX_MANIFEST, "manifest")
            content_type = resp.headers.get("content-type", "").split(";", 1)[0].strip()
            claimed = resp.headers.get("docker-content-digest", "").strip()
        if ":" in obj:
            check_digest(data, obj, "manifest")
            digest = obj
        else:
            algorithm = claimed.split(":", 1)[0] if claimed.startswith("sha512:") else "sha256"
            digest = digest_of(data, algorithm)
            if claimed and claimed != digest:
                raise ImagePullError(
                    f"manifest digest mismatch: registry says {claimed}, got {digest}"
                )
        if expected is not None and len(data) != expected.size:
            raise ImagePullError(
                f"manifest {obj} is {len(data)} bytes, the index says {expected.size}"
            )
        kind = sniff_kind(data, content_type)
        media = msgspec.json.decode(data, type=_MediaType).media_type or content_type
        if not media.startswith("application/vnd."):
            media = MEDIA_TYPE_OCI_INDEX if kind == "index" else MEDIA_TYPE_OCI_MANIFEST
        if expected is not None and expected.media_type in INDEX_TYPES and kind != "index":
            raise ImagePullError(f"manifest {obj} is not the index its parent says it is")
        return data, media, digest

    async def _small_blob(self, host: _Host, ref: ImageReference, desc: BlobDescriptor) -> bytes:
        path = f"/v2/{ref.repository}/blobs/{desc.digest}"
        what = f"blob {desc.digest}"
        async with self._get(host, ref, path, accept="*/*", what=what) as resp:
            data = await read_limited(resp, _MAX_CONFIG, what)
        if len(data) != desc.size:
            raise ImagePullError(f"{what} is {len(data)} bytes, the manifest says {desc.size}")
        check_digest(data, desc.digest, "blob")
        return data

    async def _copy_layers(
        self,
        host: _Host,
        ref: ImageReference,
        layers: tuple[BlobDescriptor, ...],
        sink: ContentSink,
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for desc in {layer.digest: layer for layer in layers}.values():
                    nursery.start_soon(self._copy_blob, host, ref, desc, sink)
        except BaseExceptionGroup as group:
            first = first_pull_error(group)
            if first is not None:
                raise first from None
            raise

    async def _copy_blob(
        self, host: _Host, ref: ImageReference, desc: BlobDescriptor, sink: ContentSink
    ) -> None:
        async with self._blob_limit:
            if await sink.has(desc.digest):
                return
            path = f"/v2/{ref.repository}/blobs/{desc.digest}"
            what = f"blob {desc.digest}"

            async def attempt() -> None:
                async with self._get(host, ref, path, accept="*/*", what=what) as resp:
                    declared = resp.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) != desc.size:
                        raise ImagePullError(f"{what} is {declared} bytes, expected {desc.size}")
                    async with aclosing(verified_chunks(raw_chunks(resp), desc)) as chunks:
                        await sink.write(desc, chunks)

            await self._retrying(attempt)


@asynccontextmanager
async def open_registry_client(
    *,
    credentials: Mapping[str, RegistryCredentials] | None = None,
    insecure_registries: Iterable[str] = (),
    retry: RetryPolicy = DEFAULT_PULL_RETRY,
    platform: Platform | None = None,
    max_parallel_blobs: int = 3,
) -> AsyncGenerator[RegistryClient]:
    """A ``RegistryClient`` whose HTTP connections close on exit.

    Args:
        credentials: per registry host (``ghcr.io``, ``127.0.0.1:5000``), basic credentials
            used for basic challenges and for the token service of bearer challenges.
        insecure_registries: hosts (``host`` or ``host:port``) that may use plain HTTP or
            unverified TLS; loopback hosts always may.
        retry: how often to retry a request that failed with 5xx, 429 or a network error.
        platform: the platform to pull for; default this host's.
        max_parallel_blobs: blobs downloaded at once, across all pulls of the client.
    """
    async with AsyncExitStack() as stack:
        secure = await stack.enter_async_context(open_http_client(timeout=60.0))
        insecure_tls = await stack.enter_async_context(open_http_client(timeout=60.0, verify=False))
        yield RegistryClient(
            secure=secure,
            insecure_tls=insecure_tls,
            credentials=credentials or {},
            insecure_registries=insecure_registries,
            retry=retry,
            platform=platform or host_platform(),
            max_parallel_blobs=max_parallel_blobs,
        )


async def pull_image(
    reference: str | ImageReference,
    sink: ContentSink,
    *,
    credentials: Mapping[str, RegistryCredentials] | None = None,
    insecure_registries: Iterable[str] = (),
    retry: RetryPolicy = DEFAULT_PULL_RETRY,
    platform: Platform | None = None,
) -> PulledImage:
    """Pull one image with a short-lived client (see ``RegistryClient.pull``).

    Raises:
        ImagePullError: the image could not be pulled; one line naming the reference.
    """
    async with open_registry_client(
        credentials=credentials,
        insecure_registries=insecure_registries,
        retry=retry,
        platform=platform,
    ) as client:
        return await client.pull(reference, sink, platform=platform)
