"""Config sections become options, and `config check` can name the claim model."""

from __future__ import annotations

import pytest

from ephemerd._errors import ConfigError
from ephemerd.config import ForgejoConfig, GiteaConfig, Secret
from ephemerd.forges import forgejo, gitea


def test_gitea_section_maps_every_field() -> None:
    section = GiteaConfig(
        name="gt",
        instance_url="https://gitea.example.com",
        token=Secret("reg-secret"),
        api_token=Secret("pat-secret"),
        owner="acme",
        repos=("app",),
        labels=("ubuntu-latest:docker://node:20",),
        runner_image="registry.example/act:1",
    )
    opts = gitea.options_from_config(section, runner_labels=("linux",))
    opts.validate(gitea.FLAVOUR)
    assert (opts.registration_token, opts.api_token) == ("reg-secret", "pat-secret")
    assert (opts.owner, opts.repos, opts.labels) == (
        "acme",
        ("app",),
        ("ubuntu-latest:docker://node:20",),
    )
    assert opts.poll_interval == 10.0 and opts.runner_image == "registry.example/act:1"
    assert "secret" not in repr(opts)
    line = gitea.describe_claim_model(section)
    assert "act_runner daemon" in line and "warm pool" in line


def test_forgejo_describe_names_both_models() -> None:
    section = ForgejoConfig(instance_url="https://fj.example", token=Secret("x"))
    assert "forgejo-runner one-job" in forgejo.describe_claim_model(section)
    with_api = ForgejoConfig(
        instance_url="https://fj.example", token=Secret("x"), api_token=Secret("y")
    )
    assert "--handle" in forgejo.describe_claim_model(with_api)


def test_wrong_kind_is_refused() -> None:
    section = ForgejoConfig(instance_url="https://fj.example", token=Secret("x"))
    with pytest.raises(ConfigError, match="not a \\[gitea\\]"):
        gitea.options_from_config(section)
