"""``describe()`` and ``repr()`` show everything but the secrets."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ephemerd.config import GitHubConfig, Secret, describe, load_config

from .conftest import Load

PEM = "-----BEGIN PRIVATE KEY-----\nS3CRET-pem-body\n-----END PRIVATE KEY-----"


def every_secret(tmp_path: Path) -> str:
    """A config with every credential key set, inline or from a file, each value unique."""
    (tmp_path / "gh-tok").write_text("S3CRET-gh-file\n")
    (tmp_path / "app.pem").write_text(PEM)
    return """
[[github]]
owner = "acme"
token_file = "gh-tok"
webhook_secret = "S3CRET-gh-hook"
[[github]]
name = "app"
owner = "acme"
app_id = 1
installation_id = 2
private_key_path = "app.pem"
[[github]]
name = "third"
owner = "x"
token = "S3CRET-gh-inline"
[forgejo]
instance_url = "https://codeberg.org"
token = "S3CRET-fj-reg"
api_token = "S3CRET-fj-pat"
webhook_secret = "S3CRET-fj-hook"
[gitea]
instance_url = "https://gitea.example.com"
token = "S3CRET-gt-reg"
[gitlab]
token = "S3CRET-glrt"
webhook_token = "S3CRET-gl-hook"
[[woodpecker]]
server_url = "wp:9000"
agent_secret = "S3CRET-wp-secret"
[[woodpecker]]
name = "wp2"
server_url = "wp:9000"
agent_token = "S3CRET-wp-token"
[[memory]]
secret = "S3CRET-memory"
"""


def test_no_secret_in_describe_or_repr(load: Load, tmp_path: Path) -> None:
    config = load(every_secret(tmp_path), env={"GITHUB_TOKEN": "S3CRET-env"})
    assert len(config.providers) == 9
    for text in (describe(config), repr(config), str(config), repr(config.providers)):
        assert "S3CRET" not in text
    # the values are still there for the code that needs them
    first = config.providers[0]
    assert isinstance(first, GitHubConfig)
    assert first.token is not None
    assert first.token.reveal() == "S3CRET-gh-file"


def test_describe_names_kind_name_endpoint_auth_and_claim_model(load: Load, tmp_path: Path) -> None:
    config = load(every_secret(tmp_path))
    text = describe(config)
    assert f"source:    {tmp_path / 'config.toml'}" in text
    assert "providers: 9 enabled" in text
    assert "  github 'github'\n" in text
    assert "https://api.github.com (owner acme: all repositories)" in text
    assert f"personal access token *** (file {tmp_path / 'gh-tok'})" in text
    assert f"GitHub App 1, installation 2, key {tmp_path / 'app.pem'}" in text
    assert "registration token ***, REST token ***" in text
    assert "grpc://wp:9000" in text
    assert "agent token ***" in text
    assert "shared agent secret ***" in text
    assert "  memory 'memory'  (test double)" in text
    assert "claim model:  a JIT runner registered per job" in text
    assert 'webhook_secret = "***"' in text
    assert "[runner]\nmax_concurrent = 4\n" in text
    assert 'job_timeout = "2h"' in text
    assert 'memory = "4GiB"' in text
    assert 'retry.schedule = ["30s", "1m", "2m", "5m", "10m"]' in text


def test_describe_defaults_and_no_limits(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[runner]\njob_timeout = 0\npids = 0\n")
    text = describe(load_config(None, data_dir=tmp_path, env={}))
    assert "providers: none enabled" in text
    assert "job_timeout = 0  # no limit" in text
    assert "pids = 0  # no limit" in text


def test_describe_marks_compat_mode(load: Load) -> None:
    config = load('compat_single_provider = true\n[gitlab]\ntoken = "t"\n')
    assert "only the highest-precedence one runs" in describe(config)


@given(st.text(min_size=1))
def test_secret_never_shows_itself(value: str) -> None:
    secret = Secret(value, source="file /x")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert text in ("Secret('***')", "***", "[Secret('***')]")
    assert secret.reveal() == value
    assert secret == Secret(value)
    assert secret != Secret(value + "x")


def test_secret_refuses_pickling() -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret("x"))
