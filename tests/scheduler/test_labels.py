from __future__ import annotations

import pytest

from ephemerd.scheduler import HostLabels, label_set_key


def test_label_set_key_normalises():
    assert label_set_key(["Linux", " self-hosted", "linux", ""]) == ("linux", "self-hosted")


@pytest.mark.parametrize(
    ("arch", "job", "ok"),
    [
        ("x86_64", ["x64"], True),
        ("x86_64", ["AMD64"], True),
        ("x86_64", ["arm64"], False),
        ("aarch64", ["arm64"], True),
        ("aarch64", ["aarch64", "linux", "self-hosted"], True),
        ("aarch64", ["x64"], False),
        ("x86_64", [], True),
        ("x86_64", ["gpu"], False),
        ("x86_64", ["macos"], False),
    ],
)
def test_satisfies(arch: str, job: list[str], ok: bool):
    assert HostLabels(arch=arch).satisfies(job) is ok


def test_extras_and_self_hosted():
    labels = HostLabels(arch="x86_64", extra=("GPU", "big"))
    assert labels.satisfies(["gpu", "Big", "self-hosted"])
    assert labels.runner_labels() == ("self-hosted", "linux", "x64", "GPU", "big")
    bare = HostLabels(arch="aarch64", self_hosted=False)
    assert not bare.satisfies(["self-hosted"])
    assert bare.runner_labels() == ("linux", "arm64")
