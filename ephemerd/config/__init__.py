"""The configuration: ``config.toml`` decoded into frozen, validated, resolved Structs.

``load_config`` reads the file (``--config`` or ``<data-dir>/config.toml``) and returns a
``Config`` whose durations are float seconds, sizes int bytes and credentials ``Secret``s;
``describe`` renders it for ``ephemerd config check`` with every secret shown as ``***``.
Every problem is a ``ConfigError`` of one line naming the file and the dotted key.
"""

from ._checks import Address
from ._describe import describe
from ._load import COMPAT_PRECEDENCE, Config, load_config
from ._providers import (
    ForgejoConfig,
    GiteaConfig,
    GitHubConfig,
    GitHubLabelPolicy,
    GitLabConfig,
    MemoryConfig,
    ProviderConfig,
    WoodpeckerConfig,
)
from ._secret import Secret
from ._settings import (
    LogConfig,
    MetricsConfig,
    RetryConfig,
    RunnerConfig,
    SandboxConfig,
    WebhookConfig,
)
from ._units import Duration, Size, format_duration, format_size, parse_duration, parse_size

__all__ = [
    "COMPAT_PRECEDENCE",
    "Address",
    "Config",
    "Duration",
    "ForgejoConfig",
    "GitHubConfig",
    "GitHubLabelPolicy",
    "GitLabConfig",
    "GiteaConfig",
    "LogConfig",
    "MemoryConfig",
    "MetricsConfig",
    "ProviderConfig",
    "RetryConfig",
    "RunnerConfig",
    "SandboxConfig",
    "Secret",
    "Size",
    "WebhookConfig",
    "WoodpeckerConfig",
    "describe",
    "format_duration",
    "format_size",
    "load_config",
    "parse_duration",
    "parse_size",
]
