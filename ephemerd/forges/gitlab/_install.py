"""The ``[[runners]]`` block that points gitlab-runner's custom executor at ephemerd.

gitlab-runner reads its runner token from its own ``config.toml`` and calls four
executables per job; this renders that block with every stage going to
``ephemerd [--data-dir D] [--config C] gitlab-executor <stage>``. Key names follow
gitlab-runner's ``common/config.go`` (``RunnerCredentials``, ``RunnerSettings``,
``CustomConfig``); its exec timeouts and kill timeouts are whole seconds.

The output is a standalone TOML fragment: append it to gitlab-runner's ``config.toml``
(after the global keys such as ``concurrent``), or write it as the whole file when it is
the only runner. The token is in it, so the file must stay 0600.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ephemerd._errors import ConfigError

__all__ = ["DEFAULT_STAGE_TIMEOUT", "executor_args", "render_runner_block", "toml_string"]

DEFAULT_STAGE_TIMEOUT = 3600
"""gitlab-runner's own default for the config, prepare and cleanup executables."""

_STAGES = ("config", "prepare", "run", "cleanup")


def toml_string(value: str) -> str:
    """*value* as a TOML basic string (JSON's escapes are a subset TOML accepts)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _array(values: Sequence[str]) -> str:
    return "[" + ", ".join(toml_string(v) for v in values) + "]"


def executor_args(
    stage: str,
    *,
    data_dir: Path,
    config_path: Path | None,
    instance: str = "",
    builds_dir: str = "/builds",
    cache_dir: str = "/cache",
) -> list[str]:
    """The arguments gitlab-runner passes to ``ephemerd`` for *stage*.

    The global options come first, where every ``ephemerd`` command accepts them; for
    ``run`` gitlab-runner appends the script path and the sub-stage name. ``config``
    reports *builds_dir* and *cache_dir* back to gitlab-runner; the other stages name the
    ``[gitlab]`` *instance* when the daemon has several.

    Raises:
        ConfigError: *stage* is not config, prepare, run or cleanup.
    """
    if stage not in _STAGES:
        raise ConfigError(f"unknown custom executor stage {stage!r}")
    args = ["--data-dir", str(data_dir)]
    if config_path is not None:
        args += ["--config", str(config_path)]
    args += ["gitlab-executor", stage]
    if stage == "config":
        args += ["--builds-dir", builds_dir, "--cache-dir", cache_dir]
    elif instance:
        args += ["--instance", instance]
    return args


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ConfigError(f"{name} must be a whole number of seconds above 0, not {value!r}")
    return value


def render_runner_block(
    *,
    name: str,
    url: str,
    token: str,
    ephemerd_executable: str,
    data_dir: Path,
    config_path: Path | None,
    builds_dir: str = "/builds",
    cache_dir: str = "/cache",
    prepare_timeout: int,
    config_timeout: int = DEFAULT_STAGE_TIMEOUT,
    cleanup_timeout: int = DEFAULT_STAGE_TIMEOUT,
    graceful_kill_timeout: int = 30,
    force_kill_timeout: int = 30,
    limit: int = 0,
    runner_id: int | None = None,
    instance: str = "",
) -> str:
    """gitlab-runner's ``[[runners]]`` block for one GitLab runner run by ephemerd.

    Args:
        name: the runner's name in gitlab-runner's logs.
        url: the GitLab base URL.
        token: the runner authentication token (``glrt-...``); written as ``token``.
        ephemerd_executable: absolute path of the ``ephemerd`` program.
        data_dir: ephemerd's data dir (holds the control socket the stages talk to).
        config_path: ephemerd's config file, when not ``DATA_DIR/config.toml``.
        builds_dir: where jobs check out, inside the sandbox.
        cache_dir: where the local cache lives, inside the sandbox.
        prepare_timeout: seconds gitlab-runner allows ``prepare`` (admission + image pull).
        config_timeout: seconds allowed for ``config``.
        cleanup_timeout: seconds allowed for ``cleanup`` (sandbox teardown).
        graceful_kill_timeout: seconds between SIGTERM and SIGKILL for a stage.
        force_kill_timeout: seconds gitlab-runner waits after SIGKILL before giving up.
        limit: jobs this runner runs at once (0: gitlab-runner's ``concurrent`` decides).
        runner_id: the id GitLab gave the runner (``verify``), if known.
        instance: the ``[gitlab]`` instance name, when ephemerd has more than one.

    Raises:
        ConfigError: a timeout is not a positive whole number, or a text field is empty.
    """
    for label, text in (("name", name), ("url", url), ("token", token)):
        if not text.strip():
            raise ConfigError(f"{label} must not be empty")
    if not Path(ephemerd_executable).is_absolute():
        raise ConfigError(
            f"ephemerd_executable must be an absolute path, not {ephemerd_executable!r}"
        )
    timeouts = {
        "config_exec_timeout": _positive("config_timeout", config_timeout),
        "prepare_exec_timeout": _positive("prepare_timeout", prepare_timeout),
        "cleanup_exec_timeout": _positive("cleanup_timeout", cleanup_timeout),
    }
    graceful = _positive("graceful_kill_timeout", graceful_kill_timeout)
    force = _positive("force_kill_timeout", force_kill_timeout)
    if limit < 0:
        raise ConfigError(f"limit must be 0 or more, not {limit}")
    exe = toml_string(ephemerd_executable)
    lines = [
        "[[runners]]",
        f"  name = {toml_string(name)}",
        f"  url = {toml_string(url.rstrip('/'))}",
    ]
    if runner_id is not None:
        lines.append(f"  id = {runner_id}")
    lines += [
        f"  token = {toml_string(token)}",
        '  executor = "custom"',
        f"  builds_dir = {toml_string(builds_dir)}",
        f"  cache_dir = {toml_string(cache_dir)}",
    ]
    if limit:
        lines.append(f"  limit = {limit}")
    lines.append("  [runners.custom]")
    for stage in _STAGES:
        args = executor_args(
            stage,
            data_dir=data_dir,
            config_path=config_path,
            instance=instance,
            builds_dir=builds_dir,
            cache_dir=cache_dir,
        )
        lines.append(f"    {stage}_exec = {exe}")
        lines.append(f"    {stage}_args = {_array(args)}")
        if f"{stage}_exec_timeout" in timeouts:
            lines.append(f"    {stage}_exec_timeout = {timeouts[f'{stage}_exec_timeout']}")
    lines.append(f"    graceful_kill_timeout = {graceful}")
    lines.append(f"    force_kill_timeout = {force}")
    return "\n".join(lines) + "\n"
