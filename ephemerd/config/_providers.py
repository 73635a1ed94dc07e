"""One frozen Struct per forge kind: what a configured provider instance needs to run.

Each kind is a variant of the ``ProviderConfig`` tagged union (tag ``kind``), so the composition
root can ``match`` on it. ``name`` tells instances of one kind apart; it defaults to the kind.
Credentials are ``Secret``s; the loader fills them from the TOML, from ``<key>_file`` or (for
the first GitHub instance) from ``GITHUB_TOKEN``.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import ClassVar, Literal

import msgspec

from ._checks import Address, Section, check_items, check_name, check_range, check_url, invalid
from ._secret import Secret
from ._units import Duration

__all__ = [
    "ForgejoConfig",
    "GitHubConfig",
    "GitHubLabelPolicy",
    "GitLabConfig",
    "GiteaConfig",
    "MemoryConfig",
    "ProviderConfig",
    "WoodpeckerConfig",
]

_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MIN_POLL = 1.0
_MAX_POLL = 86400.0


class _Provider(Section, tag_field="kind", frozen=True, kw_only=True):
    name: str

    def __post_init__(self) -> None:
        check_name("name", self.name)


class GitHubLabelPolicy(Section, frozen=True, kw_only=True):
    """Which queued GitHub jobs this host may take, on top of the label match.

    Attributes:
        allowed_repos: repository names (``repo`` or ``owner/repo``) allowed to use this host;
            empty allows every repository the instance watches.
        required_labels: labels a job must ask for (e.g. ``ephemerd``) to be claimed here.
    """

    allowed_repos: tuple[str, ...] = ()
    required_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_items("allowed_repos", self.allowed_repos)
        check_items("required_labels", self.required_labels)


class GitHubConfig(_Provider, tag="github", frozen=True, kw_only=True):
    """GitHub Actions (github.com or GHES): one JIT runner registered per job.

    Attributes:
        owner: the organisation or user whose runners these are.
        repos: repositories to watch; empty means org-level runners for every repository.
        token: a PAT with runner administration rights, or ``None`` with App auth.
        app_id / installation_id / private_key: GitHub App auth (``private_key`` is the PEM
            read from ``private_key_path``).
        api_url: REST base URL; ``https://HOST/api/v3`` for GHES.
        runner_group_id: the runner group JIT runners join.
        poll_interval: seconds between polls (a reconcile poll when webhooks are on).
        labels: the dispatch policy.
        default_image: runner image for jobs that name none ("" = the provider's default).
        webhook_secret: HMAC secret of ``workflow_job`` deliveries; enables the webhook route.
    """

    kind: ClassVar[Literal["github"]] = "github"
    name: str = "github"
    owner: str
    repos: tuple[str, ...] = ()
    token: Secret | None = None
    app_id: int | None = None
    installation_id: int | None = None
    private_key_path: str = ""
    private_key: Secret | None = None
    api_url: str = "https://api.github.com"
    runner_group_id: int = 1
    poll_interval: Duration = Duration(30)
    labels: GitHubLabelPolicy = msgspec.field(default_factory=GitHubLabelPolicy)
    default_image: str = ""
    webhook_secret: Secret | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _OWNER.fullmatch(self.owner):
            raise invalid("owner", f"must be an organisation or user name (got {self.owner!r})")
        check_items("repos", self.repos)
        self._check_auth()
        msgspec.structs.force_setattr(self, "api_url", check_url("api_url", self.api_url))
        check_range("runner_group_id", self.runner_group_id, 1, 2**53)
        check_range("poll_interval", self.poll_interval, _MIN_POLL, _MAX_POLL)

    def _check_auth(self) -> None:
        if self.token is not None and self.app_id is not None:
            raise invalid("app_id", "set either token or app_id, not both")
        if self.app_id is None:
            if self.token is None:
                raise invalid(
                    "token",
                    "required: set token or token_file, or app_id with installation_id and "
                    "private_key_path (the first [github] also reads GITHUB_TOKEN)",
                )
            return
        check_range("app_id", self.app_id, 1, 2**53)
        if self.installation_id is None:
            raise invalid("installation_id", "required when app_id is set")
        check_range("installation_id", self.installation_id, 1, 2**53)
        if self.private_key is None:
            raise invalid("private_key_path", "required when app_id is set")
        if "PRIVATE KEY-----" not in self.private_key.reveal():
            raise invalid("private_key_path", "is not a PEM private key")


class _ActionsForge(_Provider, frozen=True, kw_only=True):
    """Shared by Forgejo and Gitea Actions, which speak the same runner protocol."""

    instance_url: str
    token: Secret
    api_token: Secret | None = None
    owner: str = ""
    repos: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    runner_image: str = ""
    runner_path: str = ""
    runner_url: str = ""
    poll_interval: Duration = Duration(10)
    webhook_secret: Secret | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        url = check_url("instance_url", self.instance_url)
        msgspec.structs.force_setattr(self, "instance_url", url)
        if self.runner_url:
            msgspec.structs.force_setattr(
                self, "runner_url", check_url("runner_url", self.runner_url)
            )
        check_items("repos", self.repos)
        check_items("labels", self.labels)
        if self.runner_path and (
            not self.runner_path.startswith("/") or self.runner_path.endswith("/")
        ):
            raise invalid(
                "runner_path", f"must be an absolute file path (got {self.runner_path!r})"
            )
        if self.repos and not self.owner:
            raise invalid("owner", "required when repos is set")
        check_range("poll_interval", self.poll_interval, _MIN_POLL, _MAX_POLL)


class ForgejoConfig(_ActionsForge, tag="forgejo", frozen=True, kw_only=True):
    """Forgejo Actions: an ephemeral runner per job, handed exactly that job.

    Attributes:
        instance_url: the Forgejo base URL.
        token: the runner registration token; never enters a sandbox.
        api_token: a REST personal access token, for listing waiting jobs and webhooks.
        owner / repos: scope of the runners ("" = instance-wide, needs an admin token).
        labels: runner labels as ``name:docker://image``; empty = the provider's default.
        runner_image: image with ``forgejo-runner``; "" = the provider's default.
        runner_path: ``forgejo-runner``'s path in ``runner_image``, mounted read-only into
            jobs that name a ``container:`` image; "" = ``/bin/forgejo-runner``.
        runner_url: the forge's URL as runners in sandboxes reach it, when that differs
            from ``instance_url`` (a forge on host loopback is reached on the bridge
            gateway); "" = ``instance_url``.
        poll_interval: seconds between polls.
        webhook_secret: secret of deliveries, where the server sends them.
    """

    kind: ClassVar[Literal["forgejo"]] = "forgejo"
    name: str = "forgejo"


class GiteaConfig(_ActionsForge, tag="gitea", frozen=True, kw_only=True):
    """Gitea Actions: ephemerd registers an ephemeral ``act_runner`` per job.

    Attributes: as ``ForgejoConfig``; ``runner_image`` holds ``act_runner`` (``runner_path``
    defaults to ``/usr/local/bin/act_runner``).
    """

    kind: ClassVar[Literal["gitea"]] = "gitea"
    name: str = "gitea"


class GitLabConfig(_Provider, tag="gitlab", frozen=True, kw_only=True):
    """GitLab CI through gitlab-runner's custom executor.

    Attributes:
        instance_url: the GitLab base URL.
        token: the runner authentication token (``glrt-...``).
        tags: tags of the runner; jobs are matched on them.
        default_image: image for jobs that name none ("" = the provider's default).
        allowed_images: glob patterns a job's ``image:`` must match; empty allows any.
        supervise: run gitlab-runner as a child of ephemerd; false when the operator runs
            it and points its custom executor at ``ephemerd gitlab-executor``.
        webhook_token: ``X-Gitlab-Token`` of Job Hook deliveries; enables the webhook route.
    """

    kind: ClassVar[Literal["gitlab"]] = "gitlab"
    name: str = "gitlab"
    instance_url: str = "https://gitlab.com"
    token: Secret
    tags: tuple[str, ...] = ()
    default_image: str = ""
    allowed_images: tuple[str, ...] = ()
    supervise: bool = True
    webhook_token: Secret | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        url = check_url("instance_url", self.instance_url)
        msgspec.structs.force_setattr(self, "instance_url", url)
        check_items("tags", self.tags)
        check_items("allowed_images", self.allowed_images)


class WoodpeckerConfig(_Provider, tag="woodpecker", frozen=True, kw_only=True):
    """Woodpecker CI: ephemerd is an agent on the server's gRPC port.

    Attributes:
        server_url: the server's gRPC ``host:port``.
        agent_secret: the server-wide shared agent secret, or
        agent_token: an individual agent's token (exactly one of the two).
        tls: dial the server with TLS.
        ca_file: a PEM file of CA certificates to trust for the server instead of the
            system's (a private CA); needs ``tls``. Relative to the config file.
        labels: agent labels (``platform``, ``backend``... are added by the provider).
        hostname: the agent's reported host name; defaults to this machine's.
    """

    kind: ClassVar[Literal["woodpecker"]] = "woodpecker"
    name: str = "woodpecker"
    server_url: Address
    agent_secret: Secret | None = None
    agent_token: Secret | None = None
    tls: bool = False
    ca_file: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict[str, str])
    hostname: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.server_url.port == 0:
            raise invalid("server_url", f"needs a port (got {str(self.server_url)!r})")
        if self.agent_secret is None and self.agent_token is None:
            raise invalid("agent_secret", "required (or agent_token)")
        if self.agent_secret is not None and self.agent_token is not None:
            raise invalid("agent_token", "set either agent_secret or agent_token, not both")
        for key in self.labels:
            if not key or any(c.isspace() for c in key):
                raise invalid("labels", f"keys must be non-empty without spaces (got {key!r})")
        if self.ca_file:
            _check_ca_file(self.ca_file, tls=self.tls)
        if not self.hostname:
            msgspec.structs.force_setattr(self, "hostname", socket.gethostname())


def _check_ca_file(path: str, *, tls: bool) -> None:
    """A ``ca_file`` needs TLS and must be a readable PEM file with a certificate."""
    if not tls:
        raise invalid("ca_file", "needs tls = true")
    try:
        with Path(path).open("rb") as f:
            head = f.read(1 << 20)
    except OSError as error:
        raise invalid("ca_file", f"cannot read {path}: {error.strerror or error}") from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise invalid("ca_file", f"{path} holds no PEM certificate")


class MemoryConfig(_Provider, tag="memory", frozen=True, kw_only=True):
    """The in-process test double (``ephemerd.testing.MemoryProvider``); no forge behind it.

    Attributes:
        secret: what a test hands in to submit jobs.
    """

    kind: ClassVar[Literal["memory"]] = "memory"
    name: str = "memory"
    secret: Secret


ProviderConfig = (
    GitHubConfig | ForgejoConfig | GiteaConfig | GitLabConfig | WoodpeckerConfig | MemoryConfig
)
"""One configured provider instance; ``match`` on the class or look at ``.kind``."""
