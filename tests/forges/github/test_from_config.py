"""options_from_config: a validated [github] section becomes GitHubOptions."""

from __future__ import annotations

import pytest

from ephemerd.config import GitHubConfig, Secret
from ephemerd.forges.github import DEFAULT_IMAGE, options_from_config

from .conftest import rsa_key


def test_token_section_maps_every_field() -> None:
    section = GitHubConfig(
        name="gh-eu",
        owner="acme",
        repos=("app",),
        token=Secret("ghp_x"),
        api_url="https://ghe.example.com/api/v3",
        runner_group_id=3,
        webhook_secret=Secret("hook"),
    )
    opts = options_from_config(section, runner_labels=("self-hosted",))
    opts.validate()
    assert (opts.name, opts.owner, opts.repos, opts.token, opts.app) == (
        "gh-eu",
        "acme",
        ("app",),
        "ghp_x",
        None,
    )
    assert (opts.api_url, opts.runner_group_id, opts.webhook_secret) == (
        "https://ghe.example.com/api/v3",
        3,
        "hook",
    )
    assert opts.default_image == DEFAULT_IMAGE
    assert opts.poll_interval == opts.reconcile_interval == 30.0
    assert "ghp_x" not in repr(opts) and "hook" not in repr(opts).replace("webhook", "")


def test_app_section_maps_to_app_credentials() -> None:
    private, _ = rsa_key()
    section = GitHubConfig(owner="acme", app_id=12, installation_id=34, private_key=Secret(private))
    opts = options_from_config(section)
    opts.validate()
    assert opts.app is not None
    assert (opts.app.app_id, opts.app.installation_id) == ("12", "34")
    assert opts.app.private_key == private and opts.token == ""


def test_another_kind_of_section_is_a_config_error() -> None:
    from ephemerd._errors import ConfigError
    from ephemerd.config import MemoryConfig

    with pytest.raises(ConfigError, match=r"\[memory\] section is not a \[github\] section"):
        options_from_config(MemoryConfig(secret=Secret("x")))
