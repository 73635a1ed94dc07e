"""The options of one GitHub provider instance, as the composition root fills them in.

Secrets (token, App private key, webhook secret) are plain fields because msgspec Structs
cannot hide them, so every Struct here overrides ``__repr__`` to redact them: a logged
options object never shows a credential.
"""

from __future__ import annotations

import msgspec

from ephemerd._errors import ConfigError

__all__ = ["DEFAULT_API_URL", "DEFAULT_IMAGE", "GitHubApp", "GitHubOptions"]

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_IMAGE = "ghcr.io/actions/actions-runner:latest"


def _redacted(value: str) -> str:
    return "<redacted>" if value else "''"


class GitHubApp(msgspec.Struct, frozen=True, kw_only=True):
    """GitHub App credentials: the App signs a JWT to mint installation tokens.

    Attributes:
        app_id: the App's id (the JWT ``iss``).
        installation_id: the installation on the owner whose token we mint.
        private_key: the App's RSA private key, PEM text.
    """

    app_id: str
    installation_id: str
    private_key: str

    def __repr__(self) -> str:
        return (
            f"GitHubApp(app_id={self.app_id!r}, installation_id={self.installation_id!r}, "
            f"private_key={_redacted(self.private_key)})"
        )


class GitHubOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one GitHub provider instance needs.

    Attributes:
        name: the instance name, unique in the daemon.
        owner: the user or organisation owning the repositories.
        repos: repository names (short, without owner) to serve at repository scope; empty
            means organisation scope (org runners, every repository of the org polled).
        token: a PAT or other token; exclusive with ``app``.
        app: GitHub App credentials; exclusive with ``token``.
        api_url: REST base URL; ``https://HOST/api/v3`` for GitHub Enterprise Server.
        runner_group_id: the runner group JIT runners join (1 is the default group).
        allowed_repos: when non-empty, only jobs of these repositories (short or full
            names, case-insensitive) are reported.
        required_labels: when non-empty, a job must ask for all of these labels.
        poll_interval: seconds between poll cycles; ``None`` takes the scheduler's.
        reconcile_interval: seconds between reconcile polls when webhooks deliver events.
        webhook_secret: the HMAC key of webhook deliveries; empty refuses every delivery.
        default_image: the runner image for Linux jobs.
        work_folder: the runner's work folder, relative to its install directory.
        timeout: seconds before an HTTP request to GitHub gives up.
    """

    name: str
    owner: str
    repos: tuple[str, ...] = ()
    token: str = ""
    app: GitHubApp | None = None
    api_url: str = DEFAULT_API_URL
    runner_group_id: int = 1
    allowed_repos: tuple[str, ...] = ()
    required_labels: tuple[str, ...] = ()
    poll_interval: float | None = None
    reconcile_interval: float = 300.0
    webhook_secret: str = ""
    default_image: str = DEFAULT_IMAGE
    work_folder: str = "_work"
    timeout: float = 30.0

    def __repr__(self) -> str:
        return (
            f"GitHubOptions(name={self.name!r}, owner={self.owner!r}, repos={self.repos!r}, "
            f"token={_redacted(self.token)}, app={self.app!r}, api_url={self.api_url!r}, "
            f"runner_group_id={self.runner_group_id}, webhook_secret="
            f"{_redacted(self.webhook_secret)})"
        )

    @property
    def org_scope(self) -> bool:
        """Runners and hooks live on the organisation when no repository is named."""
        return not self.repos

    def validate(self) -> None:
        """Check what a constructor cannot express.

        Raises:
            ConfigError: a missing owner, both or neither credentials, a bad interval.
        """
        where = f"github instance {self.name!r}"
        if not self.owner:
            raise ConfigError(f"{where}: owner is required")
        if bool(self.token) == (self.app is not None):
            raise ConfigError(f"{where}: exactly one of token or app credentials is required")
        if self.app is not None and not (
            self.app.app_id and self.app.installation_id and self.app.private_key
        ):
            raise ConfigError(f"{where}: app_id, installation_id and private_key are all required")
        if self.poll_interval is not None and self.poll_interval <= 0:
            raise ConfigError(f"{where}: poll_interval must be positive")
        if self.reconcile_interval <= 0:
            raise ConfigError(f"{where}: reconcile_interval must be positive")
        if not self.api_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: api_url must be an http(s) URL")
        for repo in self.repos:
            if not repo or "/" in repo:
                raise ConfigError(f"{where}: repos entries are names without owner: {repo!r}")
