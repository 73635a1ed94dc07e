"""Pulls from a real registry (Debian's docker-registry) on 127.0.0.1, anonymous and with
basic or bearer-token auth. Failure injection lives in ``test_registry_faults.py``."""

# ruff: noqa: F811  (pytest fixtures imported from registry_fixture shadow their names)
from __future__ import annotations

import secrets

import httpx
import pytest

from ephemerd._errors import ImagePullError
from ephemerd._retry import RetryPolicy
from ephemerd.sandbox._content import MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX
from ephemerd.sandbox._oci import Platform
from ephemerd.sandbox._registry import open_registry_client, pull_image
from ephemerd.sandbox._registry_auth import RegistryCredentials
from tests.fakes.oci_images import MemorySink, build_image, build_index, sha256
from tests.fakes.registry import Pusher, RealRegistry, TokenServer, push_image
from tests.sandbox.registry_fixture import (  # noqa: F401  (fixtures)
    USERS,
    basic_registry,
    real_registry,
    token_registry,
    token_server,
)

FAST = RetryPolicy(schedule=(0.0,), jitter=0.0, max_attempts=2, max_age=None)
AMD64 = Platform(architecture="amd64")
ARM64 = Platform(architecture="arm64", variant="v8")
ALICE = {"alice": RegistryCredentials(username="alice", password=USERS["alice"])}


def repo() -> str:
    return f"test/img-{secrets.token_hex(4)}"


async def test_anonymous_pull_of_a_tag(real_registry: RealRegistry) -> None:
    image = build_image([{"a.txt": b"a"}, {"b.txt": b"b" * 5000}], cmd=["/bin/echo", "hi"])
    name = repo()
    await push_image(real_registry.url, name, "v1", image)
    sink = MemorySink()

    pulled = await pull_image(f"{real_registry.host}/{name}:v1", sink, retry=FAST, platform=AMD64)

    assert pulled.reference == f"{real_registry.host}/{name}:v1"
    assert pulled.manifest.digest == image.digest == pulled.target.digest
    assert pulled.config.digest == image.config_digest
    assert [layer.digest for layer in pulled.layers] == [sha256(x.blob) for x in image.layers]
    assert [layer.size for layer in pulled.layers] == [len(x.blob) for x in image.layers]
    assert pulled.diff_ids == tuple(x.diff_id for x in image.layers)
    assert (pulled.platform.os, pulled.platform.architecture) == ("linux", "amd64")
    assert pulled.runtime.cmd == ("/bin/echo", "hi")
    assert sink.blobs == {**image.blobs(), image.digest: image.manifest}


async def test_pull_by_digest_and_docker_media_types(real_registry: RealRegistry) -> None:
    image = build_image([{"d.txt": b"docker"}], oci=False)
    name = repo()
    digest = await push_image(real_registry.url, name, "latest", image)
    sink = MemorySink()
    pulled = await pull_image(
        f"{real_registry.host}/{name}@{digest}", sink, retry=FAST, platform=AMD64
    )
    assert pulled.manifest.media_type == image.media_type
    assert pulled.config.media_type == "application/vnd.docker.container.image.v1+json"
    assert image.digest in sink.blobs


@pytest.mark.parametrize("oci", [True, False])
async def test_index_resolves_to_this_platform(real_registry: RealRegistry, oci: bool) -> None:
    amd = build_image([{"arch": b"amd64"}], architecture="amd64", oci=oci)
    arm = build_image([{"arch": b"arm64"}], architecture="arm64", variant="v8", oci=oci)
    index = build_index([amd, arm], oci=oci)
    media = MEDIA_TYPE_OCI_INDEX if oci else MEDIA_TYPE_DOCKER_MANIFEST_LIST
    name = repo()
    async with httpx.AsyncClient() as client:
        await Pusher(client, real_registry.url, None).index(name, "multi", [amd, arm], index, media)
    ref = f"{real_registry.host}/{name}:multi"

    async with open_registry_client(retry=FAST) as registry:
        sink = MemorySink()
        pulled = await registry.pull(ref, sink, platform=AMD64)
        assert pulled.target.digest == sha256(index)
        assert pulled.target.media_type == media
        assert pulled.manifest.digest == amd.digest
        assert sink.blobs[sha256(index)] == index
        assert arm.digest not in sink.blobs

        sink = MemorySink()
        pulled = await registry.pull(ref, sink, platform=ARM64)
        assert pulled.manifest.digest == arm.digest
        assert pulled.platform == Platform(architecture="arm64", variant="v8")

        with pytest.raises(ImagePullError) as info:
            await registry.pull(ref, MemorySink(), platform=Platform(architecture="s390x"))
    assert str(info.value) == (
        f"pull {ref}: no manifest for linux/s390x in the index (it has linux/amd64, linux/arm64/v8)"
    )


async def test_unknown_tag_and_repository_are_one_line_errors(real_registry: RealRegistry) -> None:
    name = repo()
    await push_image(real_registry.url, name, "v1", build_image())
    with pytest.raises(ImagePullError) as info:
        await pull_image(f"{real_registry.host}/{name}:nope", MemorySink(), retry=FAST)
    assert str(info.value) == f"pull {real_registry.host}/{name}:nope: manifest unknown"
    assert not info.value.retryable

    with pytest.raises(ImagePullError) as info:
        await pull_image(f"{real_registry.host}/no/such:v1", MemorySink(), retry=FAST)
    assert str(info.value).startswith(f"pull {real_registry.host}/no/such:v1: ")
    assert "unknown" in str(info.value)


async def test_blobs_already_in_the_sink_are_skipped(real_registry: RealRegistry) -> None:
    image = build_image([{"a": b"1"}, {"b": b"2"}, {"c": b"3"}])
    name = repo()
    await push_image(real_registry.url, name, "v1", image)
    first = image.layers[0]
    sink = MemorySink(blobs={first.digest: first.blob})

    await pull_image(f"{real_registry.host}/{name}:v1", sink, retry=FAST, platform=AMD64)

    assert first.digest not in sink.writes
    assert sorted(sink.writes) == sorted(
        [image.layers[1].digest, image.layers[2].digest, image.config_digest, image.digest]
    )
    # A second pull writes nothing at all.
    sink.writes.clear()
    await pull_image(f"{real_registry.host}/{name}:v1", sink, retry=FAST, platform=AMD64)
    assert sink.writes == []


async def test_basic_auth(basic_registry: RealRegistry) -> None:
    image = build_image([{"secret": b"basic"}])
    name = repo()
    await push_image(basic_registry.url, name, "v1", image, auth=("alice", USERS["alice"]))
    ref = f"{basic_registry.host}/{name}:v1"

    creds = {basic_registry.host: ALICE["alice"]}
    pulled = await pull_image(ref, MemorySink(), credentials=creds, retry=FAST, platform=AMD64)
    assert pulled.manifest.digest == image.digest

    with pytest.raises(ImagePullError) as info:
        await pull_image(ref, MemorySink(), retry=FAST)
    assert str(info.value) == (
        f"pull {ref}: unauthorized: authentication required"
        f" (no credentials configured for {basic_registry.host})"
    )

    wrong = {basic_registry.host: RegistryCredentials(username="alice", password="nope")}
    with pytest.raises(ImagePullError) as info:
        await pull_image(ref, MemorySink(), credentials=wrong, retry=FAST)
    assert "refused the credentials of 'alice'" in str(info.value)
    assert "nope" not in str(info.value)


async def test_bearer_token_auth_and_token_cache(
    token_registry: RealRegistry, token_server: TokenServer
) -> None:
    image = build_image([{"t": b"token"}])
    name = repo()
    await push_image(token_registry.url, name, "v1", image, auth=("alice", USERS["alice"]))
    ref = f"{token_registry.host}/{name}:v1"
    creds = {token_registry.host: ALICE["alice"]}

    async with open_registry_client(credentials=creds, retry=FAST, platform=AMD64) as registry:
        before = len(token_server.issued)
        pulled = await registry.pull(ref, MemorySink())
        assert pulled.manifest.digest == image.digest
        assert token_server.issued[before:] == [("alice", f"repository:{name}:pull")]
        await registry.pull(ref, MemorySink())
        assert len(token_server.issued) == before + 1  # cached, not fetched again

    # Anonymous: the token service hands out a token without access; the registry refuses.
    with pytest.raises(ImagePullError) as info:
        await pull_image(ref, MemorySink(), retry=FAST)
    assert str(info.value).startswith(f"pull {ref}: unauthorized: ")
    assert f"no credentials configured for {token_registry.host}" in str(info.value)

    wrong = {token_registry.host: RegistryCredentials(username="alice", password="bad")}
    with pytest.raises(ImagePullError) as info:
        await pull_image(ref, MemorySink(), credentials=wrong, retry=FAST)
    assert "refused credentials of 'alice'" in str(info.value)
    assert "bad" not in str(info.value)


def test_credentials_never_print() -> None:
    creds = RegistryCredentials(username="alice", password="hunter2")
    assert "hunter2" not in repr(creds)
    assert "hunter2" not in str(creds)
    assert "hunter2" not in repr({"h": creds})
