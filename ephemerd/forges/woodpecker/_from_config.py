"""The mapping from a ``[woodpecker]`` config section to ``WoodpeckerOptions``.

Only the composition root calls this; the provider itself never reads configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ephemerd import __version__
from ephemerd._errors import ConfigError
from ephemerd.config import ProviderConfig, WoodpeckerConfig

from ._options import WoodpeckerOptions

__all__ = ["options_from_config"]


def options_from_config(
    config: ProviderConfig,
    *,
    runner_labels: Sequence[str] = (),
    data_dir: Path,
    max_concurrent: int,
) -> WoodpeckerOptions:
    """The provider options of one validated ``[woodpecker]`` section.

    Args:
        config: the section, already validated by the config loader.
        runner_labels: accepted for a uniform call; Woodpecker matches its own
            ``key=value`` agent labels (the section's ``labels``) on the server.
        data_dir: where the agent id is kept across restarts.
        max_concurrent: the host's job limit: the agent's capacity.

    Raises:
        ConfigError: *config* is not a ``[woodpecker]`` section.
    """
    del runner_labels
    if not isinstance(config, WoodpeckerConfig):
        raise ConfigError(f"{config.name}: a [{config.kind}] section is not a [woodpecker] section")
    return WoodpeckerOptions(
        name=config.name,
        server=str(config.server_url),
        agent_secret=config.agent_secret.reveal() if config.agent_secret else "",
        agent_token=config.agent_token.reveal() if config.agent_token else "",
        state_dir=data_dir,
        max_concurrent=max_concurrent,
        tls=config.tls,
        ca_file=Path(config.ca_file) if config.ca_file else None,
        labels=dict(config.labels),
        hostname=config.hostname,
        version=__version__,
    )
