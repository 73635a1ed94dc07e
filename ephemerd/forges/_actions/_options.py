"""The options of one Forgejo or Gitea provider instance, and what differs between the two.

Secrets are plain fields (msgspec Structs cannot hide them), so ``__repr__`` redacts them.
"""

from __future__ import annotations

import msgspec

from ephemerd._errors import ConfigError

from ._codec import JSON_TYPE, PROTO_TYPE

__all__ = ["ActionsOptions", "Flavour"]


class Flavour(msgspec.Struct, frozen=True, kw_only=True):
    """What makes a forge Forgejo or Gitea, so the shared code has no per-forge branches.

    Attributes:
        kind: ``forgejo`` or ``gitea``.
        title: the forge's name in messages.
        default_image: the runner image (holding the runner binary) when none is configured.
        runner_argv: argv of a runner pre-seeded with a ``.runner`` file, running one job.
        handle_from_major: the first server major version whose runners can be handed one
            job attempt by its handle (``None``: never).
        jobs_listing: which REST listing finds waiting jobs: ``forgejo`` or ``gitea``.
        runner_path: where the official runner image keeps the runner binary.
        workflow_dirs: where the forge looks for workflow files, in its order.
    """

    kind: str
    title: str
    default_image: str
    runner_argv: tuple[str, ...]
    handle_from_major: int | None
    jobs_listing: str
    runner_path: str = "/bin/forgejo-runner"
    workflow_dirs: tuple[str, ...] = (".forgejo/workflows", ".github/workflows")


def _redacted(value: str) -> str:
    return "<redacted>" if value else "''"


class ActionsOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one Forgejo/Gitea provider instance needs.

    Attributes:
        name: the instance name, unique in the daemon.
        instance_url: the forge's base URL.
        registration_token: the runner registration token; ephemerd uses it to register
            ephemeral runners and never hands it to a sandbox.
        api_token: a personal access token for ``/api/v1`` (job lists, runner deletion,
            Forgejo >= 15 runner creation); "" limits ephemerd to the warm pool.
        owner / repos: the runners' scope (repos, else the owner's org, else instance-wide).
        labels: extra runner label names (``name`` or ``name:docker://image``; only the
            name is used: jobs run directly inside the sandbox, so labels are ``name:host``).
        runner_image: the image holding the runner binary ("" = the flavour's default).
        runner_path: the runner binary's absolute path in ``runner_image`` ("" = the
            flavour's default); its directory is mounted into jobs that run in their own
            ``container:`` image.
        runner_url: the forge's URL as the runner in a sandbox reaches it ("" =
            ``instance_url``).
        poll_interval: seconds between discovery cycles; ``None`` takes the scheduler's.
        pool_size: idle warm runners to keep when the server cannot list waiting jobs.
        codec: Connect codec, ``application/json`` or ``application/proto``.
        timeout: seconds before one HTTP request gives up.
        runner_version: the version string ephemerd registers runners with.
    """

    name: str
    instance_url: str
    registration_token: str = ""
    api_token: str = ""
    owner: str = ""
    repos: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    runner_image: str = ""
    runner_path: str = ""
    runner_url: str = ""
    poll_interval: float | None = None
    pool_size: int = 1
    codec: str = JSON_TYPE
    timeout: float = 30.0
    runner_version: str = "ephemerd"

    def __repr__(self) -> str:
        return (
            f"ActionsOptions(name={self.name!r}, instance_url={self.instance_url!r}, "
            f"registration_token={_redacted(self.registration_token)}, "
            f"api_token={_redacted(self.api_token)}, owner={self.owner!r}, repos={self.repos!r})"
        )

    def validate(self, flavour: Flavour) -> None:
        """Check what a constructor cannot express.

        Raises:
            ConfigError: names the instance and the problem.
        """
        where = f"{flavour.kind} instance {self.name!r}"
        if not self.instance_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: instance_url must be an http(s) URL")
        if self.runner_url and not self.runner_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: runner_url must be an http(s) URL")
        if not self.registration_token and not self.api_token:
            raise ConfigError(f"{where}: a registration token or an api_token is required")
        if self.repos and not self.owner:
            raise ConfigError(f"{where}: owner is required when repos is set")
        for repo in self.repos:
            if not repo or "/" in repo:
                raise ConfigError(f"{where}: repos entries are names without owner: {repo!r}")
        if self.runner_path and (
            not self.runner_path.startswith("/") or self.runner_path.endswith("/")
        ):
            raise ConfigError(f"{where}: runner_path must be an absolute path to a file")
        if self.poll_interval is not None and self.poll_interval <= 0:
            raise ConfigError(f"{where}: poll_interval must be positive")
        if self.pool_size < 0:
            raise ConfigError(f"{where}: pool_size must not be negative")
        if self.codec not in (JSON_TYPE, PROTO_TYPE):
            raise ConfigError(f"{where}: codec must be {JSON_TYPE} or {PROTO_TYPE}")

    @property
    def url_for_runners(self) -> str:
        """The forge's URL handed to runners in sandboxes."""
        return self.runner_url or self.instance_url

    def scopes(self) -> list[str]:
        """REST scopes to discover jobs in: each repository, else the org, else the instance."""
        if self.repos:
            return [f"/repos/{self.owner}/{repo}" for repo in self.repos]
        if self.owner:
            return [f"/orgs/{self.owner}"]
        return ["/admin"]

    def runner_scope(self, repo: str = "") -> str:
        """The REST scope a runner for a job of *repo* lives in (and is deleted from)."""
        if self.repos:
            wanted = {f"{self.owner}/{r}".lower(): r for r in self.repos}
            if repo.lower() in wanted:
                return f"/repos/{self.owner}/{wanted[repo.lower()]}"
            if len(self.repos) == 1:
                return f"/repos/{self.owner}/{self.repos[0]}"
        if self.owner:
            return f"/orgs/{self.owner}"
        return "/admin"
