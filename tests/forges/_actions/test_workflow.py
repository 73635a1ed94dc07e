"""The shared workflow parsing: which job names which ``container:`` image."""

from __future__ import annotations

import base64

import pytest

from ephemerd.forges._workflow import (
    WorkflowImages,
    container_image,
    decode_content,
    find_image,
    job_images,
)

WORKFLOW = """
on: push
jobs:
  plain:
    runs-on: linux
    steps: [{run: echo}]
  string:
    runs-on: linux
    container: node:20-bookworm
  mapping:
    runs-on: linux
    container:
      image: ghcr.io/acme/build:1.2
      options: --cpus 1
  titled:
    name: Build on ${{ matrix.os }}
    runs-on: linux
    container: alpine:3.20
    strategy: {matrix: {os: [a, b]}}
  legs:
    runs-on: linux
    container: debian:12
    strategy: {matrix: {v: [1, 2]}}
  dynamic:
    runs-on: linux
    container: ${{ matrix.image }}
"""


def test_string_and_mapping_forms() -> None:
    jobs = job_images(WORKFLOW)
    assert find_image(jobs, "plain") is None
    assert find_image(jobs, "string") == "node:20-bookworm"
    assert find_image(jobs, "mapping") == "ghcr.io/acme/build:1.2"


def test_matrix_legs_and_templated_names_match() -> None:
    jobs = job_images(WORKFLOW)
    assert find_image(jobs, "Build on a") == "alpine:3.20"
    assert find_image(jobs, "legs (1)") == "debian:12"
    assert find_image(jobs, "legs (2)") == "debian:12"
    assert find_image(jobs, "unknown") is None


def test_expressions_are_dropped_unless_kept() -> None:
    assert find_image(job_images(WORKFLOW), "dynamic") is None
    kept = job_images(WORKFLOW, keep_expressions=True)
    assert find_image(kept, "dynamic") == "${{ matrix.image }}"
    assert container_image({"container": {"image": " "}}) is None


@pytest.mark.parametrize("text", ["jobs: [", "on: push", "jobs: 3"])
def test_not_a_workflow_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="workflow"):
        job_images(text)


def test_contents_are_base64_with_newlines() -> None:
    encoded = base64.encodebytes(WORKFLOW.encode()).decode()
    assert "\n" in encoded.strip() and decode_content(encoded) == WORKFLOW
    with pytest.raises(ValueError, match="base64"):
        decode_content(base64.b64encode(b"\xff\xfe").decode())


def test_cache_is_bounded_and_keeps_recent_runs() -> None:
    cache = WorkflowImages(size=2)
    cache.put("r", "1", [])
    cache.put("r", "2", [])
    assert cache.get("r", "1") == []  # now the most recent
    cache.put("r", "3", [])
    assert cache.get("r", "2") is None and cache.get("r", "1") == []
