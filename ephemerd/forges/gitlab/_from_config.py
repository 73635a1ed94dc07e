"""The mapping from a ``[gitlab]`` config section to ``GitLabOptions``.

Only the composition root calls this; the provider itself never reads configuration.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from ephemerd._errors import ConfigError
from ephemerd.config import GitLabConfig, ProviderConfig

from ._options import GitLabOptions, SupervisedRunner

__all__ = ["options_from_config"]

log = logging.getLogger("ephemerd.forges.gitlab")


def options_from_config(
    config: ProviderConfig,
    *,
    runner_labels: Sequence[str] = (),
    data_dir: Path | None = None,
    config_file: Path | None = None,
    max_concurrent: int = 1,
) -> GitLabOptions:
    """The provider options of one validated ``[gitlab]`` section.

    Args:
        config: the section, already validated by the config loader.
        runner_labels: accepted for a uniform call; GitLab matches tags itself, and the
            section's ``tags`` become this instance's labels in the scheduler.
        data_dir: where the runner-manager id is kept; given, the token is verified with
            GitLab at start-up. With ``supervise`` on and ``gitlab-runner`` on ``PATH``,
            its config goes below it too and the provider runs it.
        config_file: ephemerd's own config file, which the executor stages are told.
        max_concurrent: the daemon's limit, gitlab-runner's ``concurrent``.

    Raises:
        ConfigError: *config* is not a ``[gitlab]`` section.
    """
    del runner_labels
    if not isinstance(config, GitLabConfig):
        raise ConfigError(f"{config.name}: a [{config.kind}] section is not a [gitlab] section")
    return GitLabOptions(
        name=config.name,
        instance_url=str(config.instance_url),
        token=config.token.reveal(),
        tags=tuple(config.tags),
        default_image=config.default_image,
        allowed_images=tuple(config.allowed_images),
        system_id_file=data_dir / f"gitlab-{config.name}.system_id" if data_dir else None,
        webhook_token=config.webhook_token.reveal() if config.webhook_token else "",
        supervise=_supervised(config, data_dir, config_file, max_concurrent),
    )


def _supervised(
    config: GitLabConfig, data_dir: Path | None, config_file: Path | None, concurrent: int
) -> SupervisedRunner | None:
    """gitlab-runner as a child when asked for and installed; else the operator runs it."""
    if not config.supervise or data_dir is None:
        return None
    binary = shutil.which("gitlab-runner")
    if binary is None:
        log.info(
            "%s: gitlab-runner is not installed here; run it with the block "
            "`ephemerd gitlab-executor install` prints",
            config.name,
        )
        return None
    executable = shutil.which("ephemerd") or str(Path(sys.argv[0]).resolve())
    return SupervisedRunner(
        binary=binary,
        config_file=data_dir / f"gitlab-{config.name}" / "config.toml",
        ephemerd_executable=executable,
        data_dir=data_dir.resolve(),
        ephemerd_config=config_file.resolve() if config_file is not None else None,
        concurrent=concurrent,
    )
