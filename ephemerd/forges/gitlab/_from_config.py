"""The mapping from a ``[gitlab]`` config section to ``GitLabOptions``.

Only the composition root calls this; the provider itself never reads configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ephemerd._errors import ConfigError
from ephemerd.config import GitLabConfig, ProviderConfig

from ._options import GitLabOptions

__all__ = ["options_from_config"]


def options_from_config(
    config: ProviderConfig, *, runner_labels: Sequence[str] = (), data_dir: Path | None = None
) -> GitLabOptions:
    """The provider options of one validated ``[gitlab]`` section.

    Args:
        config: the section, already validated by the config loader.
        runner_labels: accepted for a uniform call; GitLab matches tags itself, and the
            section's ``tags`` become this instance's labels in the scheduler.
        data_dir: where the runner-manager id is kept; given, the token is verified with
            GitLab at start-up.

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
    )
