"""The mapping from a ``[forgejo]``/``[gitea]`` config section to ``ActionsOptions``."""

from __future__ import annotations

from collections.abc import Sequence

from ephemerd._errors import ConfigError
from ephemerd.config import ForgejoConfig, GiteaConfig, ProviderConfig

from ._models import describe_claim_model
from ._options import ActionsOptions, Flavour

__all__ = ["describe_config", "options_from_config"]


def options_from_config(
    config: ProviderConfig, flavour: Flavour, *, runner_labels: Sequence[str] = ()
) -> ActionsOptions:
    """The options of one validated section of *flavour*'s kind.

    Args:
        config: the section.
        flavour: the forge it must be a section of.
        runner_labels: accepted for a uniform call; the host's labels reach ``claim_job``.

    Raises:
        ConfigError: *config* is a section of another kind.
    """
    del runner_labels
    if config.kind != flavour.kind or not isinstance(config, ForgejoConfig | GiteaConfig):
        raise ConfigError(f"{config.name}: a [{config.kind}] section is not a [{flavour.kind}] one")
    return ActionsOptions(
        name=config.name,
        instance_url=config.instance_url,
        registration_token=config.token.reveal(),
        api_token=config.api_token.reveal() if config.api_token is not None else "",
        owner=config.owner,
        repos=tuple(config.repos),
        labels=tuple(config.labels),
        runner_image=config.runner_image,
        runner_path=config.runner_path,
        runner_url=config.runner_url,
        poll_interval=float(config.poll_interval),
    )


def describe_config(config: ProviderConfig, flavour: Flavour) -> str:
    """The claim-model line of ``ephemerd config check`` for one section (no I/O)."""
    return describe_claim_model(flavour, options_from_config(config, flavour))
