"""Image reference parsing: Docker's normalisation, and clear errors for bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ephemerd._errors import ImagePullError
from ephemerd.sandbox._reference import ImageReference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", ""),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", ""),
        ("docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", ""),
        ("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", ""),
        ("myorg/app", "docker.io", "myorg/app", "latest", ""),
        (
            "ghcr.io/actions/actions-runner:latest",
            "ghcr.io",
            "actions/actions-runner",
            "latest",
            "",
        ),
        (f"localhost:5000/x/y@{DIGEST}", "localhost:5000", "x/y", "", DIGEST),
        ("127.0.0.1:5000/team/img:v1", "127.0.0.1:5000", "team/img", "v1", ""),
        (f"127.0.0.1:5000/img:v1@{DIGEST}", "127.0.0.1:5000", "img", "v1", DIGEST),
        ("localhost/img", "localhost", "img", "latest", ""),
        ("[::1]:5000/img:t", "[::1]:5000", "img", "t", ""),
        ("registry.example.com/a/b/c:1.0-rc_1", "registry.example.com", "a/b/c", "1.0-rc_1", ""),
        (
            "docker.io/gitea/runner-images:ubuntu-24.04",
            "docker.io",
            "gitea/runner-images",
            "ubuntu-24.04",
            "",
        ),
    ],
)
def test_parses_and_normalises(
    text: str, registry: str, repository: str, tag: str, digest: str
) -> None:
    ref = parse_reference(text)
    assert ref == ImageReference(registry=registry, repository=repository, tag=tag, digest=digest)
    assert ref.object == (digest or tag)


def test_api_host_and_hostname() -> None:
    assert parse_reference("busybox").api_host == "registry-1.docker.io"
    assert parse_reference("ghcr.io/a/b").api_host == "ghcr.io"
    assert parse_reference("127.0.0.1:5000/a").hostname == "127.0.0.1"
    assert parse_reference("[::1]:5000/a").hostname == "::1"
    assert parse_reference("ghcr.io/a/b").hostname == "ghcr.io"


def test_str_is_canonical() -> None:
    assert str(parse_reference("busybox")) == "docker.io/library/busybox:latest"
    assert str(parse_reference(f"h:1/a:t@{DIGEST}")) == f"h:1/a:t@{DIGEST}"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        (" busybox", "whitespace"),
        ("BusyBox", "lowercase"),
        ("busybox:", "tag"),
        ("busybox:-x", "tag"),
        ("busybox@sha256:abc", "digest"),
        ("busybox@md5:" + "a" * 32, "digest"),
        ("ghcr.io/", "repository"),
        ("ghcr.io//x", "repository"),
        ("host:99999/x", "port"),
        ("a..b/c", "registry host"),
        ("x/a..b", "repository"),
        ("-bad.io/x", "registry host"),
        ("x/" + "a" * 300, "longer"),
        ("a/b/", "repository"),
    ],
)
def test_malformed_references_name_the_problem(text: str, why: str) -> None:
    with pytest.raises(ImagePullError) as info:
        parse_reference(text)
    message = str(info.value)
    assert "\n" not in message
    assert repr(text) in message
    assert why in message


@given(st.text(max_size=80))
def test_any_text_parses_or_raises_image_pull_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except ImagePullError:
        return
    # Whatever parses is stable: its canonical form parses to itself.
    assert parse_reference(str(ref)) == ref


_component = st.from_regex(r"[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_host = st.sampled_from(["ghcr.io", "localhost:5000", "127.0.0.1:5000", "registry.example.com"])


@given(_host, st.lists(_component, min_size=1, max_size=3), _tag, st.booleans())
def test_generated_references_round_trip(host: str, parts: list[str], tag: str, pin: bool) -> None:
    repository = "/".join(parts)
    text = f"{host}/{repository}:{tag}" + (f"@{DIGEST}" if pin else "")
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag) == (host, repository, tag)
    assert ref.digest == (DIGEST if pin else "")
    assert str(ref) == text
