"""Claim model choice, label mapping and the warm pool's bookkeeping (no I/O)."""

from __future__ import annotations

import pytest

from ephemerd.forges._actions import (
    ActionsOptions,
    ClaimModel,
    WarmPool,
    choose_model,
    host_labels,
    label_names,
    server_major,
)
from ephemerd.forges.forgejo import FLAVOUR as FORGEJO
from ephemerd.forges.gitea import FLAVOUR as GITEA


@pytest.mark.parametrize(
    ("version", "major"),
    [("15.0.0+gitea-1.22.0", 15), ("v1.26.0", 1), ("1.20.6", 1), ("", None), ("dev", None)],
)
def test_server_major(version: str, major: int | None) -> None:
    assert server_major(version) == major


def test_model_needs_forgejo_15_and_an_api_token() -> None:
    with_api = ActionsOptions(
        name="x", instance_url="http://f", registration_token="t", api_token="p"
    )
    without = ActionsOptions(name="x", instance_url="http://f", registration_token="t")
    assert choose_model(FORGEJO, with_api, "15.0.0+gitea-1.22.0") is ClaimModel.HANDLE
    assert choose_model(FORGEJO, with_api, "16.1.0") is ClaimModel.HANDLE
    assert choose_model(FORGEJO, with_api, "14.0.2+gitea-1.22.0") is ClaimModel.REGISTERED
    assert choose_model(FORGEJO, without, "15.0.0") is ClaimModel.REGISTERED
    assert choose_model(GITEA, with_api, "1.26.0") is ClaimModel.REGISTERED


def test_labels_are_names_run_on_the_host() -> None:
    assert label_names(["ubuntu-latest:docker://node:20", "linux", "linux:host", " "]) == [
        "ubuntu-latest",
        "linux",
    ]
    assert host_labels(["self-hosted", "ubuntu-latest:docker://x"]) == [
        "self-hosted:host",
        "ubuntu-latest:host",
    ]


def test_pool_keeps_its_size_and_expires_unclaimed_slots() -> None:
    pool = WarmPool("g", size=2, unclaimed_ttl=60.0)
    first = pool.refill(0.0)
    assert [e.job_id for e in first] == ["pool-1", "pool-2"]
    pool.claimed("pool-1", "runner-a")
    assert pool.refill(30.0) == []
    # pool-2 was never claimed (the scheduler was cordoned): it expires and is replaced
    assert [e.job_id for e in pool.refill(100.0)] == ["pool-3"]
    pool.released("runner-a")
    assert [e.job_id for e in pool.refill(101.0)] == ["pool-4"]
    assert pool.outstanding == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"instance_url": "ftp://x"}, "http\\(s\\) URL"),
        ({"registration_token": ""}, "registration token or an api_token"),
        ({"repos": ("app",), "owner": ""}, "owner is required"),
        ({"owner": "acme", "repos": ("acme/app",)}, "without owner"),
        ({"pool_size": -1}, "pool_size"),
        ({"codec": "text/xml"}, "codec"),
    ],
)
def test_bad_options_name_the_problem(overrides: dict[str, object], message: str) -> None:
    from ephemerd._errors import ConfigError

    base: dict[str, object] = {"name": "x", "instance_url": "http://f", "registration_token": "t"}
    base.update(overrides)
    with pytest.raises(ConfigError, match=message):
        ActionsOptions(**base).validate(GITEA)  # type: ignore[arg-type]
