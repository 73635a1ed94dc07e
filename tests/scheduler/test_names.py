from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from ephemerd.scheduler import runner_name, sanitize_id

VALID = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")


def test_runner_name_shape():
    assert runner_name("gh", "octo/app", token="abcd1234") == "ephemerd-gh-app-abcd1234"
    assert runner_name("gh", "owner/.github", token="x") == "ephemerd-gh-github-x"
    assert runner_name("fj", "a--b", token="1") == "ephemerd-fj-a-b-1"
    assert runner_name("gh", "", token="1") == "ephemerd-gh-1"


def test_runner_names_are_random():
    assert runner_name("gh", "octo/app") != runner_name("gh", "octo/app")


def test_sanitize():
    assert sanitize_id("a//b..c__-d") == "a-b.c_d"
    assert sanitize_id("--x--") == "x"
    assert sanitize_id("é") == ""


@given(instance=st.text(max_size=40), repo=st.text(max_size=120))
def test_runner_name_is_always_a_valid_containerd_id(instance: str, repo: str):
    name = runner_name(instance, repo)
    assert VALID.match(name), name
    assert len(name) <= 76
