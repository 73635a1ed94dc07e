# ruff: noqa: F811  (pytest fixtures imported from the fixture modules shadow their names)
"""``ephemerd images`` as an operator runs it: a private containerd per command."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ephemerd.sandbox._content import MEDIA_TYPE_OCI_MANIFEST
from tests.fakes.oci_images import build_image, oci_layout_tar
from tests.fakes.registry import RealRegistry, push_image
from tests.sandbox.containerd_fixture import needs_containerd
from tests.sandbox.registry_fixture import real_registry  # noqa: F401  (fixture)

pytestmark = [needs_containerd, pytest.mark.containerd]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("images")
    yield path
    subprocess.run(["umount", "-l", str(path / "run" / "files")], check=False, capture_output=True)


def images(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ephemerd", "--data-dir", str(data_dir), "images", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_import_list_and_remove_an_archive(data_dir: Path, tmp_path: Path) -> None:
    image = build_image([{"etc/imported": b"yes\n"}])
    name = f"docker.io/local/cli-{secrets.token_hex(4)}:1"
    archive = tmp_path / "image.tar"
    archive.write_bytes(
        oci_layout_tar(
            [(MEDIA_TYPE_OCI_MANIFEST, image.manifest, {"io.containerd.image.name": name})],
            image.blobs(),
        )
    )
    imported = images(data_dir, "import", str(archive))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == [name, image.digest]
    assert name in images(data_dir, "list").stdout.splitlines()
    removed = images(data_dir, "rm", name)
    assert removed.returncode == 0, removed.stderr
    assert name not in images(data_dir, "list").stdout.splitlines()


def test_pull_from_a_registry(data_dir: Path, real_registry: RealRegistry) -> None:
    image = build_image([{"etc/pulled": b"from the registry\n"}])
    repository = f"cli/pull-{secrets.token_hex(4)}"
    trio.run(push_image, real_registry.url, repository, "v1", image)
    reference = f"{real_registry.host}/{repository}:v1"
    pulled = images(data_dir, "pull", reference)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.split() == [reference, image.digest]
    assert reference in images(data_dir, "list").stdout.splitlines()


def test_errors_are_one_line(data_dir: Path, tmp_path: Path, real_registry: RealRegistry) -> None:
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar at all")
    for args in (
        ("import", str(garbage)),
        ("pull", f"{real_registry.host}/no/such-image:v1"),
        ("pull", "UPPER/case:bad"),
    ):
        result = images(data_dir, *args)
        assert result.returncode != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith("error: "), lines
