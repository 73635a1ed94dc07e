"""Build a small image from the host, with no registry: busybox plus chosen host paths.

Tests and the demo run offline, so they need an image that exists without a pull. The
rootfs is Debian's static busybox with a symlink per applet, a minimal ``/etc`` and an
empty ``/tmp``; ``extra_paths`` copies host files or directories into the same place in
the image (for example a Python installation and the libraries it links against). The
layer is deterministic (fixed mtimes, sorted entries), so rebuilding gives the same
digests and the content store keeps one copy.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path

import msgspec
import trio

from ephemerd._errors import ImagePullError

from ._content import (
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    BlobDescriptor,
)
from ._images import ImageInfo, ImageStore
from ._oci import ImageRuntime, Platform, PulledImage, host_platform

__all__ = ["HOST_IMAGE", "build_host_image", "host_python_paths"]

HOST_IMAGE = "ephemerd.local/busybox:latest"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ETC = {
    "etc/passwd": (
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    ),
    "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
    "etc/resolv.conf": b"",
    "etc/hosts": b"127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    "etc/hostname": b"",
}
_DIRS = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "proc": 0o555,
    "root": 0o700,
    "sbin": 0o755,
    "sys": 0o555,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
    "var/tmp": 0o1777,
    "work": 0o755,
}


def _dir(name: str, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info


def _add_host_path(
    tar: tarfile.TarFile, path: Path, seen: set[str], exclude: frozenset[str]
) -> None:
    """Add *path* (and, for a directory, everything below it) at the same place."""
    parts = path.parts[1:]
    for depth in range(1, len(parts)):  # parent directories first
        parent = "/".join(parts[:depth])
        if parent not in seen:
            seen.add(parent)
            tar.addfile(_dir(parent, 0o755))
    pending = [path]
    while pending:
        current = pending.pop()
        name = str(current).lstrip("/")
        is_dir = current.is_dir() and not current.is_symlink()
        if name not in seen:
            seen.add(name)
            info = tar.gettarinfo(str(current), arcname=name)
            info.mtime, info.uname, info.gname = 0, "", ""
            if info.isreg():
                with current.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
        if is_dir:  # also when the directory itself was already added as a parent
            children = sorted(current.iterdir(), reverse=True)
            pending.extend(child for child in children if child.name not in exclude)


def host_python_paths(python: str | Path = "/usr/bin/python3") -> list[Path]:
    """Host paths that make *python* runnable in an image built by ``build_host_image``.

    The interpreter (and the symlink naming it), its standard library and the shared
    libraries it and its extension modules link against, with the loader. Pass the
    result as ``extra_paths``; leave out ``test`` directories with ``exclude``. Blocking:
    runs the interpreter and ``ldd`` (call it at setup, or in a worker thread).

    Raises:
        ImagePullError: *python* does not exist or does not run.
    """
    import subprocess

    given = Path(python)
    if not given.exists():
        raise ImagePullError(f"python interpreter {given} not found")
    query = (
        "import sysconfig as s; print(s.get_paths()['stdlib']); print(s.get_paths()['platstdlib'])"
    )
    try:
        found = subprocess.run(
            [str(given), "-c", query], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError) as error:
        raise ImagePullError(f"python interpreter {given} does not run: {error}") from None
    real = given.resolve()
    paths: dict[Path, None] = dict.fromkeys([*_symlink_chain(given), *map(Path, found)])
    binaries = [real, *Path(found[-1]).glob("lib-dynload/*.so")]
    for binary in binaries:
        result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
        for line in result.stdout.splitlines():
            target = line.split("=>")[-1].split("(")[0].strip()
            if target.startswith("/"):
                paths.update(dict.fromkeys(_symlink_chain(Path(target))))
    return list(paths)


def _symlink_chain(path: Path) -> list[Path]:
    """*path* and every path its symlinks name on the way to the file, as written.

    ``/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2`` gives
    both, so the link resolves inside an image whether or not ``/lib`` is a symlink
    there; the fully resolved path comes last.
    """
    chain = [path]
    for _ in range(40):  # ELOOP bound
        if not chain[-1].is_symlink():
            break
        chain.append(Path(os.path.normpath(chain[-1].parent / os.readlink(chain[-1]))))
    chain.append(path.resolve())
    return chain


def _build_layer(
    busybox: Path,
    extra_paths: Iterable[Path],
    exclude: frozenset[str],
    out: Path,
    files: Mapping[str, bytes] | None = None,
) -> tuple[str, str, int]:
    """Write the gzip'd layer to *out*; return (diff_id, digest, size)."""
    raw = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in sorted(_DIRS.items()):
            seen.add(name)
            tar.addfile(_dir(name, mode))
        binary = tarfile.TarInfo("bin/busybox")
        binary.size, binary.mode = busybox.stat().st_size, 0o755
        with busybox.open("rb") as handle:
            tar.addfile(binary, handle)
        seen.add("bin/busybox")
        for name, data in sorted(_ETC.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            seen.add(name)
        for applet in sorted(_applets(busybox)):
            if applet in seen or "/" not in applet or applet.count("/") > 2:
                continue
            parent = applet.rsplit("/", 1)[0]
            if parent not in seen:
                seen.add(parent)
                tar.addfile(_dir(parent, 0o755))
            link = tarfile.TarInfo(applet)
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "/bin/busybox", 0o777
            tar.addfile(link)
            seen.add(applet)
        for extra in extra_paths:
            _add_host_path(tar, Path(os.path.abspath(extra)), seen, exclude)
        for path, content in sorted((files or {}).items()):
            _add_file(tar, path.strip("/"), content, seen)
    data = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    compressed = gzip.compress(data, compresslevel=1, mtime=0)  # local image: favour speed
    out.write_bytes(compressed)
    return diff_id, "sha256:" + hashlib.sha256(compressed).hexdigest(), len(compressed)


def _add_file(tar: tarfile.TarFile, name: str, content: bytes, seen: set[str]) -> None:
    """Add an executable file *name* holding *content*, with any missing parents."""
    parts = name.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        if parent not in seen:
            seen.add(parent)
            tar.addfile(_dir(parent, 0o755))
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(content), 0o755
    tar.addfile(info, io.BytesIO(content))
    seen.add(name)


def _applets(busybox: Path) -> list[str]:
    import subprocess

    result = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, check=True, text=True
    )
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


async def _chunks(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _file_chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    async with await trio.open_file(path, "rb") as handle:
        while chunk := await handle.read(size):
            yield chunk


def _blob(media_type: str, data: bytes) -> BlobDescriptor:
    return BlobDescriptor(
        media_type=media_type, digest="sha256:" + hashlib.sha256(data).hexdigest(), size=len(data)
    )


async def build_host_image(
    images: ImageStore,
    name: str = HOST_IMAGE,
    *,
    extra_paths: Iterable[str | Path] = (),
    exclude: Iterable[str] = ("__pycache__",),
    work_dir: Path | None = None,
    env: Iterable[str] = (),
    cmd: Iterable[str] = ("/bin/sh",),
    files: Mapping[str, bytes] | None = None,
) -> ImageInfo:
    """Build the offline base image *name* and store it through *images*.

    Args:
        images: the image store that receives the blobs and the record.
        name: the image reference to create.
        extra_paths: host files or directories copied into the image at the same path
            (see ``host_python_paths``).
        exclude: names of files and directories left out below ``extra_paths``.
        work_dir: a host directory for the temporary layer file (default: the system's).
        env: extra ``KEY=value`` entries for the image's environment.
        cmd: the image's default command.
        files: extra files by image path, written executable (mode 0755), for content
            that has no host path of its own (a runner's ``run.sh`` in its install dir).

    Raises:
        ImagePullError: busybox is missing, or containerd refused the image.
    """
    name = images.normalize(name)
    busybox = shutil.which("busybox")
    if busybox is None:
        raise ImagePullError(
            "busybox not found on PATH: install the Debian package 'busybox-static'"
        )
    extras = [Path(p) for p in extra_paths]
    for extra in extras:
        if not extra.exists():
            raise ImagePullError(f"image {name}: extra path {extra} does not exist")
    work_dir = work_dir or Path(tempfile.gettempdir())
    await trio.Path(work_dir).mkdir(parents=True, exist_ok=True)
    layer_path = work_dir / f".layer-{os.getpid()}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    try:
        diff_id, layer_digest, layer_size = await trio.to_thread.run_sync(
            _build_layer, Path(busybox), extras, frozenset(exclude), layer_path, files
        )
        layer = BlobDescriptor(
            media_type=MEDIA_TYPE_OCI_LAYER_GZIP, digest=layer_digest, size=layer_size
        )
        plat: Platform = host_platform()
        runtime = ImageRuntime(cmd=tuple(cmd), env=(f"PATH={_PATH}", *env))
        config = msgspec.json.encode(
            {
                "architecture": plat.architecture,
                "os": plat.os,
                "config": {"Env": list(runtime.env), "Cmd": list(runtime.cmd)},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        )
        config_desc = _blob(MEDIA_TYPE_OCI_CONFIG, config)
        manifest = msgspec.json.encode(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                "config": config_desc,
                "layers": [layer],
            }
        )
        manifest_desc = _blob(MEDIA_TYPE_OCI_MANIFEST, manifest)
        sink = images.content(name)
        await images.open_lease(name)
        await sink.write(layer, _file_chunks(layer_path))
        await sink.write(config_desc, _chunks(config))
        await sink.write(manifest_desc, _chunks(manifest))
    finally:
        layer_path.unlink(missing_ok=True)
    pulled = PulledImage(
        reference=name,
        target=manifest_desc,
        manifest=manifest_desc,
        config=config_desc,
        layers=(layer,),
        diff_ids=(diff_id,),
        platform=plat,
        runtime=runtime,
    )
    return await images.store(pulled, name=name)
