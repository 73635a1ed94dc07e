"""Resolution: table and array forms, instances, env and file credentials, compat mode."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ephemerd._retry import RetryPolicy
from ephemerd.capabilities import ResourceLimits
from ephemerd.config import (
    COMPAT_PRECEDENCE,
    Address,
    Config,
    ForgejoConfig,
    GiteaConfig,
    GitHubConfig,
    GitLabConfig,
    MemoryConfig,
    Secret,
    WoodpeckerConfig,
    load_config,
)

from .conftest import Fail, Load

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"

ALL_KINDS = """
[github]
owner = "acme"
token = "gh"
[forgejo]
instance_url = "https://codeberg.org/"
token = "fj"
[gitea]
instance_url = "https://gitea.example.com"
token = "gt"
[gitlab]
token = "glrt-x"
[woodpecker]
server_url = "wp.example.com:9000"
agent_secret = "wp"
[memory]
secret = "m"
"""


def test_missing_default_file_means_defaults(tmp_path: Path) -> None:
    config = load_config(None, data_dir=tmp_path, env={})
    assert config == Config(data_dir=tmp_path, sandbox=config.sandbox)
    assert config.source is None
    assert config.providers == ()
    assert config.sandbox.log_dir == tmp_path / "logs"
    assert config.runner.max_concurrent == 4
    assert config.runner.job_timeout == 7200.0
    assert config.runner.memory == 4 << 30
    assert config.runner.retry.schedule == (30.0, 60.0, 120.0, 300.0, 600.0)
    assert config.webhook.listen == Address("127.0.0.1", 8080)
    assert config.log.retention == 7 * 86400
    assert config.runner.retry.policy == RetryPolicy()


def test_retry_without_age_limit(load: Load) -> None:
    retry = load('[runner.retry]\nmax_age = "0s"\n').runner.retry
    assert retry.max_age is None
    assert retry.policy.max_age is None


def test_default_path_is_read_when_present(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[runner]\nmax_concurrent = 9\n")
    config = load_config(None, data_dir=tmp_path, env={})
    assert config.runner.max_concurrent == 9
    assert config.source == tmp_path / "config.toml"


def test_durations_sizes_and_zero_limits_resolve(load: Load) -> None:
    config = load(
        """
[runner]
job_timeout = "0s"
shutdown_timeout = "1m30s"
teardown_timeout = 45
memory = "512MiB"
cpus = 0
pids = 0
[runner.retry]
schedule = ["1s", 2.5]
max_age = "2h"
[log]
retention = 0
[webhook]
max_body = "2M"
listen = "[::1]:0"
"""
    )
    runner = config.runner
    assert runner.job_timeout is None
    assert runner.shutdown_timeout == 90.0
    assert runner.teardown_timeout == 45.0
    assert runner.resource_limits == ResourceLimits(memory_bytes=512 << 20)
    assert runner.retry.schedule == (1.0, 2.5)
    assert runner.retry.max_age == 7200.0
    assert runner.retry.policy == RetryPolicy(schedule=(1.0, 2.5), jitter=0.2, max_age=7200.0)
    assert config.log.retention is None
    assert config.webhook.max_body == 2 << 20
    assert (config.webhook.listen.host, config.webhook.listen.port) == ("::1", 0)
    assert str(config.webhook.listen) == "[::1]:0"


def test_every_kind_in_stable_order(load: Load) -> None:
    config = load(ALL_KINDS)
    assert [type(p) for p in config.providers] == [
        GitHubConfig,
        ForgejoConfig,
        GiteaConfig,
        GitLabConfig,
        WoodpeckerConfig,
        MemoryConfig,
    ]
    assert [p.kind for p in config.providers] == [p.name for p in config.providers]
    forgejo = config.providers[1]
    assert isinstance(forgejo, ForgejoConfig)
    assert forgejo.instance_url == "https://codeberg.org"
    assert forgejo.token == Secret("fj")
    woodpecker = config.providers[4]
    assert isinstance(woodpecker, WoodpeckerConfig)
    assert woodpecker.hostname == socket.gethostname()
    assert str(woodpecker.server_url) == "wp.example.com:9000"


def test_array_of_tables_gives_several_instances(load: Load) -> None:
    config = load(
        """
[[forgejo]]
name = "codeberg"
instance_url = "https://codeberg.org"
token = "a"
[[forgejo]]
name = "forgejo-eu"
instance_url = "https://git.example.eu"
token = "b"
[github]
owner = "acme"
token = "t"
"""
    )
    assert [(p.kind, p.name) for p in config.providers] == [
        ("github", "github"),
        ("forgejo", "codeberg"),
        ("forgejo", "forgejo-eu"),
    ]


def test_table_and_single_array_are_the_same(load: Load) -> None:
    table = load('[gitlab]\ntoken = "glrt-x"\ntags = ["a"]\n')
    array = load('[[gitlab]]\ntoken = "glrt-x"\ntags = ["a"]\n')
    assert table.providers == array.providers


def test_empty_array_enables_nothing(load: Load) -> None:
    assert load("github = []\n").providers == ()


def test_github_token_from_env_for_the_first_instance_only(load: Load, fail: Fail) -> None:
    env = {"GITHUB_TOKEN": "from-env"}
    config = load('[github]\nowner = "acme"\n', env=env)
    github = config.providers[0]
    assert isinstance(github, GitHubConfig)
    assert github.token is not None
    assert github.token.reveal() == "from-env"
    assert github.token.source == "env GITHUB_TOKEN"

    two = '[[github]]\nowner = "a"\n[[github]]\nname = "b"\nowner = "b"\n'
    assert fail(two, env=env).startswith("github[1].token: required")


def test_github_token_in_file_wins_over_env(load: Load) -> None:
    config = load('[github]\nowner = "acme"\ntoken = "mine"\n', env={"GITHUB_TOKEN": "env"})
    github = config.providers[0]
    assert isinstance(github, GitHubConfig)
    assert github.token == Secret("mine")


def test_github_token_env_is_ignored_when_another_provider_is_set(load: Load) -> None:
    config = load('[gitlab]\ntoken = "glrt-x"\n', env={"GITHUB_TOKEN": "env"})
    assert [p.kind for p in config.providers] == ["gitlab"]


def test_github_token_env_does_not_mix_with_app_auth(load: Load, tmp_path: Path) -> None:
    (tmp_path / "app.pem").write_text(PEM)
    config = load(
        '[github]\nowner = "acme"\napp_id = 12\ninstallation_id = 34\n'
        'private_key_path = "app.pem"\n',
        env={"GITHUB_TOKEN": "env"},
    )
    github = config.providers[0]
    assert isinstance(github, GitHubConfig)
    assert github.token is None
    assert github.app_id == 12
    assert github.private_key is not None
    assert github.private_key.reveal() == PEM.strip()
    assert github.private_key_path == str(tmp_path / "app.pem")


def test_github_app_key_must_be_pem(fail: Fail, tmp_path: Path) -> None:
    (tmp_path / "app.pem").write_text("not a key")
    text = '[github]\nowner = "a"\napp_id = 1\ninstallation_id = 2\nprivate_key_path = "app.pem"\n'
    assert fail(text) == "github.private_key_path: is not a PEM private key"


def test_empty_github_token_env_is_no_token(tmp_path: Path) -> None:
    config = load_config(None, data_dir=tmp_path, env={"GITHUB_TOKEN": ""})
    assert config.providers == ()


def test_secret_files_are_read_and_stripped(load: Load, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "reg").write_text("registration-token\n")
    (tmp_path / "pat").write_text("  pat-token  \n")
    config = load(
        f"""
[gitea]
instance_url = "https://gitea.example.com"
token_file = "{secrets / "reg"}"
api_token_file = "pat"
webhook_secret_file = "pat"
"""
    )
    gitea = config.providers[0]
    assert isinstance(gitea, GiteaConfig)
    assert gitea.token.reveal() == "registration-token"
    assert gitea.token.source == f"file {secrets / 'reg'}"
    assert gitea.api_token is not None
    assert gitea.api_token.reveal() == "pat-token"
    assert gitea.api_token.source == f"file {tmp_path / 'pat'}"
    assert gitea.webhook_secret == Secret("pat-token")


def test_every_secret_key_has_a_file_form(load: Load, tmp_path: Path) -> None:
    (tmp_path / "s").write_text("x")
    config = load(
        """
[woodpecker]
server_url = "wp:9000"
agent_token_file = "s"
[gitlab]
token_file = "s"
webhook_token_file = "s"
[memory]
secret_file = "s"
"""
    )
    assert len(config.providers) == 3


@pytest.mark.parametrize("top", COMPAT_PRECEDENCE)
def test_compat_mode_keeps_only_the_highest_precedence(load: Load, top: str) -> None:
    sections = ALL_KINDS.split("\n[")
    keep = [
        s
        for s in sections[1:]
        if COMPAT_PRECEDENCE.index(s.split("]")[0]) >= COMPAT_PRECEDENCE.index(top)
    ]
    text = "compat_single_provider = true\n" + "".join("\n[" + s for s in keep)
    config = load(text)
    assert [p.kind for p in config.providers] == [top]
    assert config.compat_single_provider


def test_compat_mode_takes_the_first_instance_and_still_validates_the_rest(
    load: Load, fail: Fail
) -> None:
    two = (
        '[[gitea]]\nname = "one"\ninstance_url = "https://a"\ntoken = "t"\n'
        '[[gitea]]\nname = "two"\ninstance_url = "https://b"\ntoken = "t"\n'
    )
    config = load("compat_single_provider = true\n" + two)
    assert [p.name for p in config.providers] == ["one"]
    broken = "compat_single_provider = true\n" + two + '[github]\nowner = "a"\n'
    assert fail(broken).startswith("github.token: required")


def test_without_compat_mode_everything_runs(load: Load) -> None:
    assert len(load(ALL_KINDS).providers) == 6


def test_sandbox_allow_is_normalised(load: Load, tmp_path: Path) -> None:
    config = load(
        '[sandbox]\nallow = ["10.1.2.3/16", "192.168.1.5", "fd00::/8", "registry.lan:5000"]\n'
        'log_dir = "/var/log/ephemerd"\nbackend = "memory"\n'
    )
    sandbox = config.sandbox
    assert sandbox.allow == ("10.1.0.0/16", "192.168.1.5/32", "fd00::/8", "registry.lan:5000")
    assert [str(n) for n in sandbox.allow_networks] == ["10.1.0.0/16", "192.168.1.5/32", "fd00::/8"]
    assert sandbox.allow_endpoints == (Address("registry.lan", 5000),)
    assert sandbox.log_dir == Path("/var/log/ephemerd")
    assert sandbox.backend == "memory"


def test_structs_are_frozen(load: Load) -> None:
    config = load(ALL_KINDS)
    with pytest.raises(AttributeError):
        config.runner.max_concurrent = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.providers[0].name = "x"  # type: ignore[misc]
