"""Registries for tests: the real one, a token service for it, a fake one, and a pusher.

- ``RealRegistry``: Debian's ``docker-registry`` (distribution 2.8) as a child process on
  127.0.0.1, optionally with htpasswd (basic) or token (bearer) auth.
- ``TokenServer``: a tiny token service that signs registry JWTs with its own RSA key (the
  registry trusts its certificate), counting the tokens it hands out.
- ``FakeRegistry``: an in-memory ASGI registry with failure injection (5xx, tampered
  blobs, redirects to storage, raw manifest bytes), served under Trio by hypercorn.
- ``push_image``/``push_blob``/``push_manifest``: monolithic uploads over httpx, answering
  basic and bearer challenges, for any test that needs an image in a registry.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import json
import secrets
import subprocess
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.fakes.oci_images import BuiltImage, sha256

REGISTRY_BINARY = "/usr/bin/docker-registry"


# ---------------------------------------------------------------------------- pushing


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Pusher:
    """Pushes to one registry, answering its auth challenge (basic or bearer)."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, auth: tuple[str, str] | None):
        self.client = client
        self.base = base_url.rstrip("/")
        self.auth = auth
        self._header: str | None = None

    async def _send(self, method: str, url: str, repository: str, **kw: Any) -> httpx.Response:
        for _ in range(2):
            headers = dict(kw.pop("headers", {}))
            if self._header:
                headers["Authorization"] = self._header
            response = await self.client.request(method, url, headers=headers, **kw)
            if response.status_code != 401 or not self.auth:
                return response
            challenge = response.headers.get("www-authenticate", "")
            if challenge.lower().startswith("basic"):
                self._header = _basic(*self.auth)
                continue
            params = dict(
                part.split("=", 1) for part in challenge[len("Bearer ") :].split(",") if "=" in part
            )
            params = {k: v.strip('"') for k, v in params.items()}
            token = await self.client.get(
                params["realm"],
                params={
                    "service": params.get("service", ""),
                    "scope": f"repository:{repository}:pull,push",
                },
                headers={"Authorization": _basic(*self.auth)},
            )
            token.raise_for_status()
            self._header = "Bearer " + token.json()["token"]
        return response

    async def blob(self, repository: str, data: bytes) -> str:
        digest = sha256(data)
        head = await self._send("HEAD", f"{self.base}/v2/{repository}/blobs/{digest}", repository)
        if head.status_code == 200:
            return digest
        start = await self._send("POST", f"{self.base}/v2/{repository}/blobs/uploads/", repository)
        assert start.status_code == 202, (start.status_code, start.text)
        location = httpx.URL(self.base).join(start.headers["location"])
        location = location.copy_merge_params({"digest": digest})
        put = await self._send(
            "PUT",
            str(location),
            repository,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert put.status_code == 201, (put.status_code, put.text)
        return digest

    async def manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        put = await self._send(
            "PUT",
            f"{self.base}/v2/{repository}/manifests/{reference}",
            repository,
            content=data,
            headers={"Content-Type": media_type},
        )
        assert put.status_code == 201, (put.status_code, put.text)
        return sha256(data)

    async def image(self, repository: str, tag: str | None, image: BuiltImage) -> str:
        for blob in image.blobs().values():
            await self.blob(repository, blob)
        return await self.manifest(
            repository, tag or image.digest, image.manifest, image.media_type
        )

    async def index(
        self, repository: str, tag: str, images: list[BuiltImage], index: bytes, media_type: str
    ) -> str:
        for image in images:
            await self.image(repository, None, image)
        return await self.manifest(repository, tag, index, media_type)


async def push_image(
    base_url: str,
    repository: str,
    tag: str,
    image: BuiltImage,
    *,
    auth: tuple[str, str] | None = None,
) -> str:
    """Push *image* as ``repository:tag``; return its manifest digest."""
    async with httpx.AsyncClient(timeout=30) as client:
        return await Pusher(client, base_url, auth).image(repository, tag, image)


# ---------------------------------------------------------------------- token service


def _libtrust_key_id(public_key: rsa.RSAPublicKey) -> str:
    """The key id the distribution registry computes for a trusted key (libtrust)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@dataclass
class TokenServer:
    """A registry token service: GET /token?service=&scope= with optional basic auth."""

    users: Mapping[str, str]
    anonymous_pull: bool = False
    issuer: str = "ephemerd-test-issuer"
    service: str = "ephemerd-test-registry"
    expires_in: int = 300
    issued: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    url: str = ""

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token-signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert_pem = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        self.kid = _libtrust_key_id(self.key.public_key())

    def grant(self, authorization: str, scope: str) -> tuple[int, dict[str, object]]:
        user = ""
        allowed = {"pull"} if self.anonymous_pull else set[str]()
        if authorization:
            try:
                raw = base64.b64decode(authorization.split(" ", 1)[1]).decode()
            except (IndexError, ValueError):
                return 400, {"details": "bad authorization"}
            name, _, password = raw.partition(":")
            if self.users.get(name) != password:
                return 401, {"details": "invalid credentials"}
            user, allowed = name, {"pull", "push"}
        access: list[dict[str, object]] = []
        for item in filter(None, scope.split(" ")):
            kind, _, rest = item.partition(":")
            repo, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if a in allowed]
            access.append({"type": kind, "name": repo, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        self.issued.append((user, scope))
        return 200, {"token": token, "expires_in": self.expires_in}

    @contextmanager
    def serve(self) -> Iterator[TokenServer]:
        server_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                status, body = server_self.grant(
                    self.headers.get("Authorization", ""), " ".join(query.get("scope", []))
                )
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}/token"
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join()


# ---------------------------------------------------------------------- real registry


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


@dataclass
class RealRegistry:
    url: str
    host: str
    log: list[str]


@contextmanager
def run_registry(
    root: Path,
    *,
    users: Mapping[str, str] | None = None,
    token: TokenServer | None = None,
) -> Iterator[RealRegistry]:
    """Run Debian's docker-registry on 127.0.0.1:<free port> with storage under *root*.

    Readiness is its own "listening on" log line, read from its stderr.
    """
    root.mkdir(parents=True, exist_ok=True)
    auth = ""
    if users:
        htpasswd = root / "htpasswd"
        htpasswd.write_text("".join(f"{u}:{_bcrypt(p)}\n" for u, p in users.items()))
        auth = f"auth:\n  htpasswd:\n    realm: ephemerd-test\n    path: {htpasswd}\n"
    elif token is not None:
        bundle = root / "token-ca.pem"
        bundle.write_bytes(token.cert_pem)
        auth = (
            "auth:\n  token:\n"
            f"    realm: {token.url}\n    service: {token.service}\n"
            f"    issuer: {token.issuer}\n    rootcertbundle: {bundle}\n"
        )
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: info\n  formatter: text\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:0\n  secret: {secrets.token_hex(16)}\n{auth}"
    )
    proc = subprocess.Popen(
        [REGISTRY_BINARY, "serve", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    ready = threading.Event()
    address: list[str] = []

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            if not ready.is_set() and 'msg="listening on ' in line:
                address.append(line.split('msg="listening on ', 1)[1].split('"', 1)[0])
                ready.set()
        ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        ready.wait(timeout=30)
        if not address:
            raise RuntimeError("docker-registry did not start:\n" + "".join(log[-20:]))
        yield RealRegistry(url=f"http://{address[0]}", host=address[0], log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


# ---------------------------------------------------------------------- fake registry

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class FakeRegistry:
    """An in-memory registry (ASGI) whose misbehaviour tests switch on.

    Attributes:
        manifests: ``(repository, tag-or-digest) -> (media type, bytes)``.
        blobs: ``digest -> bytes``.
        fail: ``path substring -> [status, ...]``: the next matching requests answer these.
        tamper: blob digests served with one byte flipped.
        redirect_blobs: answer blob GETs with 307 to ``/storage/<digest>``.
        require_basic: answer 401 (Basic challenge) unless these credentials are sent.
        stall: blob digests of which only the first half is sent; then the answer hangs
            (``stalled`` is set) until the server stops.
        omit_digest_header: do not send ``Docker-Content-Digest``.
        digest_header: send this ``Docker-Content-Digest`` instead of the true one.
        requests: ``(method, path, authorization)`` of every request, in order.
    """

    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(
        default_factory=dict[tuple[str, str], tuple[str, bytes]]
    )
    blobs: dict[str, bytes] = field(default_factory=dict[str, bytes])
    fail: dict[str, list[int]] = field(default_factory=dict[str, list[int]])
    tamper: set[str] = field(default_factory=set[str])
    redirect_blobs: bool = False
    omit_digest_header: bool = False
    digest_header: str = ""
    require_basic: tuple[str, str] | None = None
    stall: set[str] = field(default_factory=set[str])
    stalled: trio.Event = field(default_factory=trio.Event)
    requests: list[tuple[str, str, str]] = field(default_factory=list[tuple[str, str, str]])
    url: str = ""

    def put_manifest(self, repository: str, reference: str, media_type: str, data: bytes) -> None:
        self.manifests[(repository, reference)] = (media_type, data)
        self.manifests[(repository, sha256(data))] = (media_type, data)

    def put_image(self, repository: str, tag: str | None, image: BuiltImage) -> None:
        self.blobs.update(image.blobs())
        self.put_manifest(repository, tag or image.digest, image.media_type, image.manifest)

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        path: str = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append((method, path, headers.get("authorization", "")))
        status, out_headers, body = self._answer(method, path, headers)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in out_headers.items()],
            }
        )
        if method == "HEAD":
            body = b""
        if status == 200 and path.rpartition("/")[2] in self.stall:
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            self.stalled.set()
            await trio.sleep_forever()
        await send({"type": "http.response.body", "body": body})

    def _answer(
        self, method: str, path: str, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        for needle, statuses in self.fail.items():
            if needle in path and statuses:
                return statuses.pop(0), {}, b'{"errors":[{"code":"UNAVAILABLE"}]}'
        basic = _basic(*self.require_basic) if self.require_basic else None
        if basic and not path.startswith("/storage/") and headers.get("authorization") != basic:
            unauthorized = _error("UNAUTHORIZED", "authentication required")
            return 401, {"www-authenticate": 'Basic realm="fake"'}, unauthorized
        if path == "/v2/":
            return 200, {"content-type": "application/json"}, b"{}"
        if path.startswith("/storage/"):
            return self._blob(path.removeprefix("/storage/"))
        if not path.startswith("/v2/"):
            return 404, {}, b""
        repo_and_kind, _, reference = path[len("/v2/") :].rpartition("/")
        repository, _, kind = repo_and_kind.rpartition("/")
        if kind == "manifests":
            found = self.manifests.get((repository, reference))
            if found is None:
                return 404, {}, _error("MANIFEST_UNKNOWN", "manifest unknown")
            media_type, data = found
            out = {"content-type": media_type, "content-length": str(len(data))}
            if not self.omit_digest_header:
                out["docker-content-digest"] = self.digest_header or sha256(data)
            return 200, out, data
        if kind == "blobs":
            if self.redirect_blobs and reference in self.blobs:
                return 307, {"location": f"{self.url}/storage/{reference}"}, b""
            return self._blob(reference)
        return 404, {}, b""

    def _blob(self, digest: str) -> tuple[int, dict[str, str], bytes]:
        data = self.blobs.get(digest)
        if data is None:
            return 404, {}, _error("BLOB_UNKNOWN", "blob unknown to registry")
        if digest in self.tamper and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return (
            200,
            {"content-type": "application/octet-stream", "content-length": str(len(data))},
            data,
        )


def _error(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()
