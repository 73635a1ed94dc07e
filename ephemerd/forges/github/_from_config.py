"""The mapping from a ``[github]`` config section to ``GitHubOptions``.

Only the composition root calls this; the provider itself never reads configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

from ephemerd._errors import ConfigError
from ephemerd.config import GitHubConfig, ProviderConfig

from ._options import DEFAULT_IMAGE, GitHubApp, GitHubOptions

__all__ = ["options_from_config"]


def options_from_config(
    config: ProviderConfig, *, runner_labels: Sequence[str] = ()
) -> GitHubOptions:
    """The provider options of one validated ``[github]`` section.

    Args:
        config: the section, already validated by the config loader.
        runner_labels: accepted for a uniform call from the composition root; the host's
            labels reach ``claim_job`` from the scheduler, so they are not kept here.

    Raises:
        ConfigError: *config* is not a ``[github]`` section.
    """
    del runner_labels
    if not isinstance(config, GitHubConfig):
        raise ConfigError(f"{config.name}: a [{config.kind}] section is not a [github] section")
    app = None
    if config.app_id is not None:
        app = GitHubApp(
            app_id=str(config.app_id),
            installation_id=str(config.installation_id or ""),
            private_key=config.private_key.reveal() if config.private_key else "",
        )
    interval = float(config.poll_interval)
    return GitHubOptions(
        name=config.name,
        owner=config.owner,
        repos=tuple(config.repos),
        token=config.token.reveal() if config.token else "",
        app=app,
        api_url=config.api_url,
        runner_group_id=config.runner_group_id,
        allowed_repos=tuple(config.labels.allowed_repos),
        required_labels=tuple(config.labels.required_labels),
        poll_interval=interval,
        reconcile_interval=interval,
        webhook_secret=config.webhook_secret.reveal() if config.webhook_secret else "",
        default_image=config.default_image or DEFAULT_IMAGE,
    )
