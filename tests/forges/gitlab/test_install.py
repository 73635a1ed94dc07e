"""The ``[[runners]]`` block, read back the way gitlab-runner reads it (TOML)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from ephemerd._errors import ConfigError
from ephemerd.forges.gitlab import executor_args, render_runner_block

TOKEN = "glrt-abc123"


def render(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "name": "ephemerd on ci-1",
        "url": "https://gitlab.example.com/",
        "token": TOKEN,
        "ephemerd_executable": "/usr/local/bin/ephemerd",
        "data_dir": Path("/var/lib/ephemerd"),
        "config_path": None,
        "prepare_timeout": 900,
    }
    options.update(overrides)
    text = render_runner_block(**options)
    (runner,) = tomllib.loads("concurrent = 4\n\n" + text)["runners"]
    return runner


def test_round_trip_has_gitlab_runners_keys() -> None:
    runner = render()
    assert runner["name"] == "ephemerd on ci-1"
    assert runner["url"] == "https://gitlab.example.com"
    assert runner["token"] == TOKEN
    assert runner["executor"] == "custom"
    assert (runner["builds_dir"], runner["cache_dir"]) == ("/builds", "/cache")
    assert "id" not in runner and "limit" not in runner
    custom = runner["custom"]
    base = ["--data-dir", "/var/lib/ephemerd", "gitlab-executor"]
    for stage in ("config", "prepare", "run", "cleanup"):
        assert custom[f"{stage}_exec"] == "/usr/local/bin/ephemerd"
    assert custom["config_args"] == [
        *base,
        "config",
        "--builds-dir",
        "/builds",
        "--cache-dir",
        "/cache",
    ]
    for stage in ("prepare", "run", "cleanup"):
        assert custom[f"{stage}_args"] == [*base, stage]
    assert custom["prepare_exec_timeout"] == 900
    assert custom["config_exec_timeout"] == 3600 and custom["cleanup_exec_timeout"] == 3600
    assert "run_exec_timeout" not in custom  # gitlab-runner has none: the job timeout rules
    assert (custom["graceful_kill_timeout"], custom["force_kill_timeout"]) == (30, 30)
    assert set(custom) == {
        "config_exec",
        "config_args",
        "config_exec_timeout",
        "prepare_exec",
        "prepare_args",
        "prepare_exec_timeout",
        "run_exec",
        "run_args",
        "cleanup_exec",
        "cleanup_args",
        "cleanup_exec_timeout",
        "graceful_kill_timeout",
        "force_kill_timeout",
    }


def test_options_and_awkward_strings_survive() -> None:
    runner = render(
        name='quote " back\\slash\ttab ünï \x7f',
        config_path=Path("/etc/ephemerd/my config.toml"),
        data_dir=Path("/srv/ephemerd data"),
        builds_dir="/work/builds",
        cache_dir="/work/cache",
        cleanup_timeout=120,
        graceful_kill_timeout=10,
        force_kill_timeout=5,
        limit=3,
        runner_id=77,
        instance="gl-eu",
    )
    assert runner["name"] == 'quote " back\\slash\ttab ünï \x7f'
    assert runner["id"] == 77 and runner["limit"] == 3
    assert runner["custom"]["run_args"] == [
        "--data-dir",
        "/srv/ephemerd data",
        "--config",
        "/etc/ephemerd/my config.toml",
        "gitlab-executor",
        "run",
        "--instance",
        "gl-eu",
    ]
    assert runner["custom"]["config_args"][-4:] == [
        "--builds-dir",
        "/work/builds",
        "--cache-dir",
        "/work/cache",
    ]
    assert runner["custom"]["cleanup_exec_timeout"] == 120
    assert (runner["custom"]["graceful_kill_timeout"], runner["custom"]["force_kill_timeout"]) == (
        10,
        5,
    )
    assert (runner["builds_dir"], runner["cache_dir"]) == ("/work/builds", "/work/cache")


def test_a_token_cannot_inject_keys() -> None:
    runner = render(token='x"\nexecutor = "shell')
    assert runner["executor"] == "custom"
    assert runner["token"] == 'x"\nexecutor = "shell'


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"prepare_timeout": 0}, "prepare_timeout"),
        ({"prepare_timeout": 1.5}, "prepare_timeout"),
        ({"cleanup_timeout": -1}, "cleanup_timeout"),
        ({"force_kill_timeout": True}, "force_kill_timeout"),
        ({"token": " "}, "token"),
        ({"url": ""}, "url"),
        ({"ephemerd_executable": "ephemerd"}, "ephemerd_executable"),
        ({"limit": -2}, "limit"),
    ],
)
def test_bad_values_name_the_option(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        render(**overrides)
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_stage() -> None:
    with pytest.raises(ConfigError):
        executor_args("build", data_dir=Path("/d"), config_path=None)


def test_the_rendered_config_stage_runs_as_gitlab_runner_would_call_it(tmp_path: Path) -> None:
    """The argv in the block is one the real ``ephemerd`` CLI accepts."""
    import json
    import subprocess
    import sys

    import ephemerd

    # an entry point like the installed one, whatever this environment's PATH holds
    exe = tmp_path / "ephemerd"
    root = Path(ephemerd.__file__).parent.parent
    exe.write_text(f'#!/bin/sh\nPYTHONPATH={root} exec {sys.executable} -m ephemerd "$@"\n')
    exe.chmod(0o755)
    runner = render(
        ephemerd_executable=str(exe), data_dir=tmp_path, builds_dir="/b", cache_dir="/c"
    )
    custom = runner["custom"]
    done = subprocess.run(
        [custom["config_exec"], *custom["config_args"]],
        capture_output=True,
        check=True,
        timeout=60,
    )
    document = json.loads(done.stdout)
    assert (document["builds_dir"], document["cache_dir"]) == ("/b", "/c")
