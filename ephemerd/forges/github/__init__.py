"""GitHub Actions: JIT runners per job, found by polling and ``workflow_job`` webhooks.

Build one instance with ``open_github_provider(GitHubOptions(...))``; the provider speaks
only ``ephemerd.capabilities`` to the scheduler.
"""

from ._from_config import options_from_config
from ._options import DEFAULT_API_URL, DEFAULT_IMAGE, GitHubApp, GitHubOptions
from ._provider import (
    JITCONFIG_PATH,
    RUNNER_ENTRYPOINT,
    RUNNER_WORKDIR,
    GitHubProvider,
    open_github_provider,
)

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_IMAGE",
    "JITCONFIG_PATH",
    "RUNNER_ENTRYPOINT",
    "RUNNER_WORKDIR",
    "GitHubApp",
    "GitHubOptions",
    "GitHubProvider",
    "open_github_provider",
    "options_from_config",
]
