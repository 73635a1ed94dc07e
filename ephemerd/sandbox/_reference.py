"""Image references: ``busybox``, ``ghcr.io/o/r:tag``, ``localhost:5000/x/y@sha256:…``.

Parsing follows the grammar of the distribution project's ``reference`` package, with
Docker's normalisation: a first component that holds a ``.`` or a ``:`` or is ``localhost``
names a registry; otherwise the image lives on Docker Hub, and a single-component name
there gets the ``library/`` prefix. A reference with neither tag nor digest means
``:latest``. The functions here are pure, so they are property-tested.
"""

from __future__ import annotations

import re

import msgspec

from ephemerd._errors import ImagePullError

__all__ = ["DOCKER_HUB", "ImageReference", "parse_reference"]

DOCKER_HUB = "docker.io"
"""The registry of references that name none."""

_DOCKER_HUB_API = "registry-1.docker.io"
_MAX_NAME = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?"
)
_DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")


class ImageReference(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed, normalised image reference.

    Attributes:
        registry: the registry host as written, with its port (``docker.io`` for Docker Hub).
        repository: the path inside the registry (``library/busybox``).
        tag: the tag; ``"latest"`` when the reference named neither tag nor digest.
        digest: ``"sha256:…"`` when the reference pinned one, else ``""``. When both a tag
            and a digest are given the digest decides what is pulled.
    """

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host that serves the registry API (Docker Hub's differs from its name)."""
        return _DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def hostname(self) -> str:
        """The registry host without its port, brackets removed."""
        host = self.registry
        if host.startswith("["):
            return host[1 : host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def object(self) -> str:
        """What to ask the manifests endpoint for: the digest if pinned, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageReference:
    """Parse and normalise an image reference.

    Raises:
        ImagePullError: the reference is malformed; the message quotes it and says why.
    """

    def bad(why: str) -> ImagePullError:
        return ImagePullError(f"invalid image reference {text!r}: {why}")

    if not text or text != text.strip():
        raise bad("empty or surrounded by whitespace")
    rest, digest = text, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise bad("digest must be sha256:<64 hex> or sha512:<128 hex>")
    # A tag is what follows the last ':' after the last '/' (a ':' before it is a port).
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise bad("tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
        if not _HOST_RE.fullmatch(registry):
            raise bad(f"registry host {registry!r} is malformed")
        if ":" in registry and not registry.endswith("]"):
            port = int(registry.rsplit(":", 1)[1])
            if not 0 < port < 65536:
                raise bad(f"registry port {port} is out of range")
    else:
        registry, path = DOCKER_HUB, rest
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _NAME_RE.fullmatch(path):
        raise bad("repository must be lowercase [a-z0-9] components joined by . _ __ - or /")
    if len(registry) + 1 + len(path) > _MAX_NAME:
        raise bad(f"name longer than {_MAX_NAME} characters")
    if not tag and not digest:
        tag = "latest"
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest)
