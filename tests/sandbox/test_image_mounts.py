# ruff: noqa: F811  (fixtures imported from containerd_fixture shadow their names)
"""Image mounts: a directory of another image, read-only inside a sandbox.

The mount builder is checked against real layer directories on the host (whiteouts,
opaque directories, symbolic links), and the whole feature against a real containerd:
visible, read-only, gone after destroy, and nothing left on any cancellation.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import trio

from ephemerd._errors import SandboxError
from ephemerd._proto.containerd.services.snapshots import v1 as snapshots_v1
from ephemerd._proto.containerd.types import Mount
from ephemerd.capabilities import ImageMount
from ephemerd.sandbox import ContainerdClient, ImageStore, build_host_image, open_sandbox_backend
from ephemerd.sandbox._image_mounts import (
    IMAGE_MOUNT_LABEL,
    check_image_mounts,
    oci_image_mount,
)
from ephemerd.sandbox._runtime import GC_ROOT_LABEL

from .containerd_fixture import (  # noqa: F401  (fixtures)
    Session,
    cd_client,  # pyright: ignore[reportUnusedImport]
    containerd_session,  # pyright: ignore[reportUnusedImport]
    needs_containerd,
)
from .sandbox_helpers import objects_of, spec, unique
from .test_sandbox_cancel import CancellingClient

TOOL_IMAGE = "ephemerd.local/image-mount-tool:latest"
TOOL_SCRIPT = b"#!/bin/sh\necho tool-from-the-other-image\n"

# --- the OCI mount, from the snapshotter's view mounts ---------------------------------------


def _overlay(*layers: Path) -> Mount:
    return Mount(
        type="overlay",
        source="overlay",
        options=["index=off", f"lowerdir={':'.join(str(p) for p in layers)}"],
    )


def test_single_layer_view_is_a_readonly_bind(tmp_path: Path) -> None:
    view = Mount(type="bind", source=str(tmp_path), options=["ro", "rbind"])
    out = oci_image_mount([view], image="i", source="/", target="/opt/r")
    assert out == {
        "destination": "/opt/r",
        "type": "bind",
        "source": str(tmp_path),
        "options": ["rbind", "ro", "nosuid", "nodev"],
    }


def test_layered_view_is_an_overlay_of_lower_dirs_only(tmp_path: Path) -> None:
    top, bottom = tmp_path / "2", tmp_path / "1"
    out = oci_image_mount([_overlay(top, bottom)], image="i", source="/", target="/r")
    assert out["type"] == "overlay"
    assert out["options"] == ["index=off", f"lowerdir={top}:{bottom}", "ro", "nosuid", "nodev"]


def test_a_writable_view_is_refused(tmp_path: Path) -> None:
    view = Mount(type="overlay", source="overlay", options=["upperdir=/u", "lowerdir=/l"])
    with pytest.raises(SandboxError, match="writable"):
        oci_image_mount([view], image="i", source="/", target="/r")


def test_source_directory_is_found_in_each_layer(tmp_path: Path) -> None:
    top, mid, bottom = (tmp_path / n for n in ("3", "2", "1"))
    (top / "usr/bin").mkdir(parents=True)
    mid.mkdir()  # this layer does not touch /usr/bin
    (bottom / "usr/bin").mkdir(parents=True)
    out = oci_image_mount([_overlay(top, mid, bottom)], image="i", source="/usr/bin", target="/r")
    lower = f"lowerdir={top}/usr/bin:{bottom}/usr/bin"
    assert out["type"] == "overlay" and lower in out["options"]  # type: ignore[operator]


def test_source_in_one_layer_only_is_a_bind(tmp_path: Path) -> None:
    top, bottom = tmp_path / "2", tmp_path / "1"
    top.mkdir()
    (bottom / "opt").mkdir(parents=True)
    out = oci_image_mount([_overlay(top, bottom)], image="i", source="/opt", target="/r")
    assert out["type"] == "bind" and out["source"] == f"{bottom}/opt"


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and trusted xattrs need root")
def test_whiteout_and_opaque_directories_hide_lower_layers(tmp_path: Path) -> None:
    top, mid, bottom = (tmp_path / n for n in ("3", "2", "1"))
    for layer in (top, mid, bottom):
        (layer / "opt").mkdir(parents=True)
    os.setxattr(mid / "opt", "trusted.overlay.opaque", b"y")
    out = oci_image_mount([_overlay(top, mid, bottom)], image="i", source="/opt", target="/r")
    assert f"lowerdir={top}/opt:{mid}/opt" in out["options"]  # type: ignore[operator]
    # a whiteout in the top layer deletes /opt: nothing below counts
    (top / "opt").rmdir()
    os.mknod(top / "opt", 0o600 | 0o020000, os.makedev(0, 0))
    with pytest.raises(SandboxError, match="has no directory /opt"):
        oci_image_mount([_overlay(top, mid, bottom)], image="i", source="/opt", target="/r")


def test_a_symlink_on_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("/usr/bin")  # would resolve on the host
    view = Mount(type="bind", source=str(tmp_path), options=["ro", "rbind"])
    with pytest.raises(SandboxError, match="symbolic link"):
        oci_image_mount([view], image="i", source="/bin", target="/r")


@pytest.mark.parametrize(
    ("mount", "problem"),
    [
        (ImageMount(image="i", target="relative"), "absolute"),
        (ImageMount(image="i", target="/"), "must not be '/'"),
        (ImageMount(image="i", target="/a/../etc"), r"'\.\.'"),
        (ImageMount(image="i", target="/r", source="../x"), "absolute"),
        (ImageMount(image=" ", target="/r"), "no image"),
    ],
)
def test_bad_image_mounts_name_the_problem(mount: ImageMount, problem: str) -> None:
    with pytest.raises(SandboxError, match=problem):
        check_image_mounts([mount])


def test_duplicate_targets_are_refused() -> None:
    mounts = [ImageMount(image="a", target="/r"), ImageMount(image="b", target="/r/")]
    with pytest.raises(SandboxError, match="share the target /r"):
        check_image_mounts(mounts)


# --- on a real containerd ------------------------------------------------------------------


async def _tool_image(images: ImageStore, session: Session) -> None:
    if await images.get(images.normalize(TOOL_IMAGE)) is None:
        await build_host_image(
            images,
            TOOL_IMAGE,
            work_dir=session.data_dir / "tmp",
            files={"/opt/tool/hello": TOOL_SCRIPT, "/opt/tool/only-in-tool-image": b""},
        )


async def _views_of(client: ContainerdClient, name: str) -> list[str]:
    found: list[str] = []
    async with client.stream(
        client.snapshots.list,
        snapshots_v1.ListSnapshotsRequest(
            snapshotter="overlayfs", filters=[f'labels."{IMAGE_MOUNT_LABEL}"']
        ),
    ) as replies:
        async for reply in replies:
            found += [i.name for i in reply.info if i.name.startswith(f"{name}/")]
    return found


MOUNTS = (
    ImageMount(image=TOOL_IMAGE, source="/opt/tool", target="/ephemerd/tool"),
    ImageMount(image=TOOL_IMAGE, target="/ephemerd/whole"),
)
SCRIPT = """
/ephemerd/tool/hello
test -e /ephemerd/whole/opt/tool/only-in-tool-image && echo whole-image-visible
test -e /opt/tool/hello || echo job-rootfs-untouched
if touch /ephemerd/tool/new 2>/dev/null; then echo WRITABLE; else echo read-only; fi
if touch /ephemerd/whole/new 2>/dev/null; then echo WRITABLE; else echo read-only; fi
"""


@needs_containerd
@pytest.mark.containerd
async def test_image_mount_is_visible_readonly_and_gone_after_destroy(
    containerd_session: Session, cd_client: ContainerdClient
) -> None:
    images = ImageStore(cd_client)
    await _tool_image(images, containerd_session)
    async with open_sandbox_backend(
        cd_client, data_dir=containerd_session.data_dir, images=images
    ) as sandboxes:
        name = unique("imgmount")
        handle = await sandboxes.create(spec(name, "sh", "-c", SCRIPT, image_mounts=MOUNTS))
        try:
            assert len(await _views_of(cd_client, name)) == 2
            await handle.start()
            outcome = await handle.wait()
        finally:
            await handle.destroy()
        log = handle.log_path.read_text()
        assert outcome.succeeded, log
        assert "tool-from-the-other-image" in log
        assert "whole-image-visible" in log
        assert "job-rootfs-untouched" in log
        assert log.count("read-only") == 2 and "WRITABLE" not in log
        assert await _views_of(cd_client, name) == []
        assert await objects_of(cd_client, name) == []
        assert await sandboxes.sweep() == []


@needs_containerd
@pytest.mark.containerd
async def test_missing_source_directory_fails_create_and_leaves_nothing(
    containerd_session: Session, cd_client: ContainerdClient
) -> None:
    images = ImageStore(cd_client)
    await _tool_image(images, containerd_session)
    async with open_sandbox_backend(
        cd_client, data_dir=containerd_session.data_dir, images=images
    ) as sandboxes:
        name = unique("imgmissing")
        bad = (ImageMount(image=TOOL_IMAGE, source="/no/such/dir", target="/t"),)
        with pytest.raises(SandboxError, match="has no directory /no/such/dir"):
            await sandboxes.create(spec(name, "true", image_mounts=bad))
        assert await _views_of(cd_client, name) == []
        assert await objects_of(cd_client, name) == []
        assert name not in await sandboxes.list_own()


@needs_containerd
@pytest.mark.containerd
async def test_leftover_view_is_found_and_swept(
    containerd_session: Session, cd_client: ContainerdClient
) -> None:
    """A view whose sandbox lost everything else (a crash mid-teardown) is still swept.

    The view is pinned with the garbage collector's root label: without a lease, containerd
    would collect it at its next GC pass, and the test would race the collector instead of
    checking the sweep.
    """
    images = ImageStore(cd_client)
    await _tool_image(images, containerd_session)
    info = await images.ensure(TOOL_IMAGE)
    name = unique("imgorphan")
    await cd_client.call(
        cd_client.snapshots.view,
        snapshots_v1.ViewSnapshotRequest(
            snapshotter="overlayfs",
            key=f"{name}/image-mount-0",
            parent=info.chain_id,
            labels={
                IMAGE_MOUNT_LABEL: TOOL_IMAGE,
                "ephemerd.io/sandbox": name,
                GC_ROOT_LABEL: "pinned",
            },
        ),
    )
    async with open_sandbox_backend(
        cd_client, data_dir=containerd_session.data_dir, images=images
    ) as sandboxes:
        assert name in await sandboxes.list_own()
        assert name in await sandboxes.sweep()
    assert await _views_of(cd_client, name) == []


@needs_containerd
@pytest.mark.containerd
@pytest.mark.parametrize("after", [False, True], ids=["before-call", "after-call"])
async def test_cancel_at_each_step_leaves_no_view(
    containerd_session: Session, cd_client: ContainerdClient, after: bool
) -> None:
    await _tool_image(ImageStore(cd_client), containerd_session)
    steps = 0
    for at in range(1, 60):
        client = CancellingClient(cd_client, at=at, after=after)
        name = unique(f"imgcancel{at}")
        async with open_sandbox_backend(
            client, data_dir=containerd_session.data_dir, images=ImageStore(client)
        ) as sandboxes:
            handle = None
            with trio.CancelScope() as scope:
                client.scope = scope
                handle = await sandboxes.create(spec(name, "sleep", "300", image_mounts=MOUNTS))
                await handle.start()
            client.scope = None
            if handle is not None:
                await handle.destroy()
            if not client.fired:
                break
            steps += 1
            assert await _views_of(cd_client, name) == [], f"view leaked at call {at}"
            assert await objects_of(cd_client, name) == [], f"leak at call {at}"
            assert name not in await sandboxes.list_own()
    else:
        pytest.fail("create + start never completed")
    assert steps >= 8  # image lookups, lease, two views, snapshot, container


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_overlay_options_mount_read_only_on_this_kernel(tmp_path: Path) -> None:
    """The overlay the builder makes (lower directories only) mounts, merged and read-only."""
    top, bottom, target = tmp_path / "2", tmp_path / "1", tmp_path / "mnt"
    for layer, name in ((top, "from-top"), (bottom, "from-bottom")):
        (layer / "opt/tool").mkdir(parents=True)
        (layer / "opt/tool" / name).write_text(name)
    target.mkdir()
    out = oci_image_mount([_overlay(top, bottom)], image="i", source="/opt/tool", target="/r")
    options = ",".join(str(o) for o in out["options"])  # type: ignore[attr-defined]
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(target)], check=True)
    try:
        assert sorted(p.name for p in target.iterdir()) == ["from-bottom", "from-top"]
        with pytest.raises(OSError, match="Read-only"):
            (target / "new").write_text("x")
    finally:
        subprocess.run(["umount", str(target)], check=True)
