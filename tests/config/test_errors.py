"""Every kind of bad config gives one exact line naming the file and the dotted key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ephemerd._errors import ConfigError, EphemerdError
from ephemerd.config import load_config

from .conftest import Fail, Load

GH = '[github]\nowner = "acme"\ntoken = "t"\n'

CASES = [
    # unknown keys, at every level
    ("runnr = 1\n", "runnr: unknown key"),
    ('[github]\nowner = "a"\ntokn = "x"\n', "github.tokn: unknown key"),
    ("[runner]\nmax_concurent = 3\n", "runner.max_concurent: unknown key"),
    ("[runner.retry]\njiter = 0.1\n", "runner.retry.jiter: unknown key"),
    (GH + "[github.labels]\nallowed = []\n", "github.labels.allowed: unknown key"),
    (
        '[[gitea]]\ninstance_url = "https://g"\ntoken = "t"\nkind = "x"\n',
        "gitea[0].kind: unknown key",
    ),
    ('[github]\nowner = "a"\ntoken = "t"\nowner_file = "x"\n', "github.owner_file: unknown key"),
    # out-of-range numbers
    ("[runner]\nmax_concurrent = 0\n", "runner.max_concurrent: must be between 1 and 1024 (got 0)"),
    (
        "[runner]\nmax_concurrent = 1025\n",
        "runner.max_concurrent: must be between 1 and 1024 (got 1025)",
    ),
    ("[runner.retry]\njitter = 1.5\n", "runner.retry.jitter: must be between 0 and 1 (got 1.5)"),
    ("[runner]\ncpus = nan\n", "runner.cpus: must be between 0.01 and 1024 (got nan)"),
    ("[runner]\npids = 3\n", "runner.pids: must be between 16 and 4194304 (got 3)"),
    (
        '[runner]\nmemory = "1MiB"\n',
        "runner.memory: must be at least 16MiB, or 0 for no limit (got 1MiB)",
    ),
    ('[webhook]\nmax_body = "10B"\n', "webhook.max_body: must be between 1KiB and 1GiB (got 10B)"),
    (
        '[runner]\nteardown_timeout = "0s"\n',
        "runner.teardown_timeout: must be between 1 and 86400 (got 0)",
    ),
    (
        GH.replace("[github]\n", '[github]\npoll_interval = "100ms"\n'),
        "github.poll_interval: must be between 1 and 86400 (got 0.1)",
    ),
    ("[runner.retry]\nschedule = []\n", "runner.retry.schedule: must list at least one wait"),
    # malformed durations and sizes
    (
        '[runner]\njob_timeout = "2 hours"\n',
        'runner.job_timeout: invalid duration \'2 hours\' (use e.g. "30s", "1m30s", "2h", "7d")',
    ),
    (
        '[runner]\nshutdown_timeout = "-5m"\n',
        'runner.shutdown_timeout: invalid duration \'-5m\' (use e.g. "30s", "1m30s", "2h", "7d")',
    ),
    (
        "[runner]\nshutdown_timeout = -5\n",
        "runner.shutdown_timeout: duration must be finite and not negative (got -5)",
    ),
    (
        '[runner.retry]\nschedule = ["30s", "1x"]\n',
        'runner.retry.schedule[1]: invalid duration \'1x\' (use e.g. "30s", "1m30s", "2h", "7d")',
    ),
    (
        '[runner]\nmemory = "4QB"\n',
        'runner.memory: invalid size \'4QB\' (use e.g. "512MiB", "4GiB", "1G")',
    ),
    ("[runner]\nmemory = -1\n", "runner.memory: size must be between 0 and 4EiB (got -1)"),
    (
        "[log]\nretention = true\n",
        'log.retention: expected a duration such as "30s", got a boolean',
    ),
    (
        "[runner]\njob_timeout = 1979-05-27\n",
        'runner.job_timeout: expected a duration such as "30s", got a date or time',
    ),
    # wrong types
    (
        '[runner]\nmax_concurrent = "4"\n',
        "runner.max_concurrent: expected an integer, got a string",
    ),
    (
        "[runner]\nmax_concurrent = 4.5\n",
        "runner.max_concurrent: expected an integer, got a number",
    ),
    ("runner = 3\n", "runner: expected a table, got an integer"),
    (
        'compat_single_provider = "yes"\n',
        "compat_single_provider: expected a boolean, got a string",
    ),
    ('[runner]\nlabels = "gpu"\n', "runner.labels: expected an array, got a string"),
    ('[runner]\nlabels = ["gpu", 1]\n', "runner.labels[1]: expected a string, got an integer"),
    ("github = 3\n", "github: expected a table or an array of tables, got an integer"),
    ("github = [1]\n", "github[0]: expected a table, got an integer"),
    (GH + 'labels = "x"\n', "github.labels: expected a table, got a string"),
    (
        GH + "[github.labels]\nallowed_repos = [1]\n",
        "github.labels.allowed_repos[0]: expected a string, got an integer",
    ),
    ('[github]\nowner = "a"\ntoken = 5\n', "github.token: expected a string, got an integer"),
    ('[github]\nowner = "a"\ntoken = ""\n', "github.token: must not be empty"),
    # choices and formats
    (
        '[log]\nlevel = "loud"\n',
        "log.level: must be one of debug, error, info, warning (got 'loud')",
    ),
    ('[sandbox]\nnetwork = "host"\n', "sandbox.network: must be one of default, none (got 'host')"),
    (
        '[webhook]\nlisten = "8080"\n',
        "webhook.listen: must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080 (got '8080')",
    ),
    (
        '[metrics]\nlisten = "[nope]:1"\n',
        "metrics.listen: must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080 (got '[nope]:1')",
    ),
    (
        '[webhook]\npublic_url = "ftp://x"\n',
        "webhook.public_url: must be an http:// or https:// URL (got 'ftp://x')",
    ),
    (
        '[sandbox]\nallow = ["10.0.0.0/8", "bad one"]\n',
        "sandbox.allow[1]: must be a CIDR such as 10.1.0.0/16 or a host:port (got 'bad one')",
    ),
    (
        '[sandbox]\ncontainerd_address = "run/c.sock"\n',
        "sandbox.containerd_address: must be an absolute socket path (got 'run/c.sock')",
    ),
    (
        GH.replace('owner = "acme"', 'owner = "acme"\nname = "-bad"'),
        "github.name: must match [A-Za-z0-9][A-Za-z0-9_-]* and be at most 32 characters (got '-bad')",
    ),
    (
        GH + 'api_url = "api.github.com"\n',
        "github.api_url: must be an http:// or https:// URL (got 'api.github.com')",
    ),
    (
        '[woodpecker]\nserver_url = "wp:0"\nagent_secret = "s"\n',
        "woodpecker.server_url: needs a port (got 'wp:0')",
    ),
    (
        GH + 'repos = ["a b"]\n',
        "github.repos[0]: must be non-empty, without spaces or commas (got 'a b')",
    ),
    # missing required keys and credentials
    ('[github]\ntoken = "t"\n', "github.owner: required"),
    ('[forgejo]\ninstance_url = "https://f"\n', "forgejo.token: required (or token_file)"),
    ('[gitea]\ntoken = "t"\n', "gitea.instance_url: required"),
    ("[gitlab]\n", "gitlab.token: required (or token_file)"),
    ("[[memory]]\n", "memory[0].secret: required (or secret_file)"),
    (
        '[woodpecker]\nserver_url = "wp:9000"\n',
        "woodpecker.agent_secret: required (or agent_token)",
    ),
    (
        '[woodpecker]\nserver_url = "wp:9000"\nagent_secret = "a"\nagent_token = "b"\n',
        "woodpecker.agent_token: set either agent_secret or agent_token, not both",
    ),
    (
        '[github]\nowner = "a"\n',
        "github.token: required: set token or token_file, or app_id with installation_id and "
        "private_key_path (the first [github] also reads GITHUB_TOKEN)",
    ),
    (
        '[github]\nowner = "a"\ntoken = "t"\napp_id = 1\n',
        "github.app_id: set either token or app_id, not both",
    ),
    ('[github]\nowner = "a"\napp_id = 1\n', "github.installation_id: required when app_id is set"),
    (
        '[github]\nowner = "a"\napp_id = 1\ninstallation_id = 2\n',
        "github.private_key_path: required when app_id is set",
    ),
    (
        '[forgejo]\ninstance_url = "https://f"\ntoken = "t"\nrepos = ["x"]\n',
        "forgejo.owner: required when repos is set",
    ),
    # duplicate instance names
    (
        '[[github]]\nowner = "a"\ntoken = "t"\n[[github]]\nowner = "b"\ntoken = "u"\n',
        "github[1].name: duplicate instance name 'github' (also used by github[0]); "
        "give each instance its own name",
    ),
    (
        GH + '[gitea]\nname = "github"\ninstance_url = "https://g"\ntoken = "t"\n',
        "gitea.name: duplicate instance name 'github' (also used by github); give each instance its own name",
    ),
    # credentials from files
    (GH.replace('token = "t"', 'token_file = "missing"'), None),
    (
        GH.replace('owner = "acme"', 'owner = "acme"\ntoken_file = "x"'),
        "github.token_file: set either token or token_file, not both",
    ),
    (
        GH.replace('token = "t"', "token_file = 3"),
        "github.token_file: expected a file path, got an integer",
    ),
    # TOML syntax
    (
        "[runner\n",
        "invalid TOML: Expected ']' at the end of a table declaration (at line 1, column 8)",
    ),
    ("a = 1\na = 2\n", "invalid TOML: Cannot overwrite a value (at line 2, column 6)"),
    ('x = "unterminated\n', "invalid TOML: Illegal character '\\n' (at line 1, column 18)"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_bad_config_gives_one_exact_line(
    fail: Fail, tmp_path: Path, text: str, expected: str | None
) -> None:
    if expected is None:
        expected = (
            f"github.token_file: cannot read {tmp_path / 'missing'}: No such file or directory"
        )
    assert fail(text) == expected


def test_config_error_is_an_ephemerd_error() -> None:
    assert issubclass(ConfigError, EphemerdError)


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"^.*/nope\.toml: no such file$"):
        load_config(path, data_dir=tmp_path, env={})


def test_directory_as_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r": cannot read: Is a directory$"):
        load_config(tmp_path, data_dir=tmp_path, env={})


def test_huge_config_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^/dev/zero: larger than 1MiB; is this the config file\?$"
    ):
        load_config(Path("/dev/zero"), data_dir=tmp_path, env={})


def test_not_utf8(load: Load, config_path: Path) -> None:
    config_path.write_bytes(b'x = "\xff"\n')
    with pytest.raises(ConfigError, match=r": not UTF-8 text \(bad byte at offset 5\)$"):
        load_config(config_path, data_dir=config_path.parent, env={})


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(config_path: Path) -> None:  # pragma: no cover - CI runs as root
    config_path.write_text("")
    config_path.chmod(0)
    with pytest.raises(ConfigError, match="Permission denied"):
        load_config(config_path, data_dir=config_path.parent, env={})


def test_empty_secret_file(fail: Fail, tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("\n")
    assert fail(GH.replace('token = "t"', 'token_file = "tok"')) == (
        f"github.token_file: {tmp_path / 'tok'} is empty"
    )


def test_newline_in_a_value_cannot_break_the_line(fail: Fail) -> None:
    assert fail('[webhook]\nlisten = "a\\nb:1"\n') == (
        "webhook.listen: must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080 (got 'a\\nb:1')"
    )


def test_defaults_are_validated_with_github_token(tmp_path: Path) -> None:
    """No file at the default path: built-in defaults, but GITHUB_TOKEN still enables GitHub."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, data_dir=tmp_path, env={"GITHUB_TOKEN": "ghp_x"})
    assert str(caught.value) == (
        "built-in defaults: github.owner: required (GITHUB_TOKEN is set, which enables GitHub "
        "when no provider is configured; add a [github] section with owner)"
    )


@pytest.mark.parametrize(
    "text",
    [
        '[github]\nowner = "a"\ntoken = ["S3CRET"]\n',
        '[github]\nowner = "a b"\ntoken = "S3CRET"\n',
        '[gitlab]\ntoken = "S3CRET"\ntags = 1\n',
        '[woodpecker]\nserver_url = "w:1"\nagent_secret = "S3CRET"\nagent_token = "S3CRET2"\n',
        '[[memory]]\nsecret = "S3CRET"\n[[memory]]\nsecret = "S3CRET"\n',
        '[forgejo]\ninstance_url = "https://f"\ntoken = "S3CRET"\ntokn = "S3CRET"\n',
    ],
)
def test_errors_never_echo_a_secret(fail: Fail, text: str) -> None:
    assert "S3CRET" not in fail(text)
