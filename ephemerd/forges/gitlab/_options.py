"""The GitLab provider's options: one frozen Struct handed only to the provider."""

from __future__ import annotations

from pathlib import Path

import msgspec

from ephemerd._errors import ConfigError

__all__ = [
    "BUILDS_DIR",
    "CACHE_DIR",
    "DEFAULT_IMAGE",
    "SHELL_ARGV",
    "GitLabOptions",
    "SupervisedRunner",
]

BUILDS_DIR = "/builds"
CACHE_DIR = "/cache"
DEFAULT_IMAGE = "busybox:latest"

# The shell a stage's script is fed to on stdin, as gitlab-runner's Docker executor picks
# it: bash where the image has one (the scripts are generated for bash), else sh.
_DETECT = """\
for shell in /usr/local/bin/bash /usr/bin/bash /bin/bash /usr/local/bin/sh /usr/bin/sh \
/bin/sh /busybox/sh; do
  if [ -x "$shell" ]; then exec "$shell"; fi
done
echo "ephemerd: no shell found in the job's image" >&2
exit 1
"""
SHELL_ARGV: tuple[str, ...] = ("sh", "-c", _DETECT)


class SupervisedRunner(msgspec.Struct, frozen=True, kw_only=True):
    """gitlab-runner run as the provider's child, and the config ephemerd writes for it.

    Attributes:
        binary: the gitlab-runner executable.
        config_file: gitlab-runner's ``config.toml``, written (0600) at start-up.
        ephemerd_executable: the absolute path the executor stages run.
        data_dir: ephemerd's data dir, passed to every stage (its control socket).
        ephemerd_config: ephemerd's config file, passed to every stage when not the default.
        concurrent: gitlab-runner's ``concurrent``: jobs it runs at once.
    """

    binary: str
    config_file: Path
    ephemerd_executable: str
    data_dir: Path
    ephemerd_config: Path | None = None
    concurrent: int = 1


class GitLabOptions(msgspec.Struct, frozen=True, kw_only=True):
    """One GitLab instance, served through gitlab-runner's custom executor.

    Attributes:
        name: the instance name, unique in the daemon.
        instance_url: the GitLab base URL (shown, and used to verify the token).
        token: the runner authentication token; gitlab-runner holds its own copy. Never
            logged (``repr`` hides it) and never handed to a sandbox.
        tags: the runner's tags; a job is admitted only when its runner's tags are all
            offered by this host (they are added to this instance's labels).
        default_image: image of jobs that name none ("" = the daemon's default).
        allowed_images: glob patterns a job's image must match; empty allows any.
        shell: argv that reads a stage's script from stdin inside the sandbox.
        system_id_file: where this host's runner-manager id is kept; when set, the token
            is verified with GitLab at start-up (a revoked token refuses every prepare).
        webhook_token: ``X-Gitlab-Token`` of Job Hook deliveries; set, the provider also
            receives them (``/webhook/<name>``) and shows waiting jobs as pending. Never
            logged (``repr`` hides it).
        supervise: run gitlab-runner as a child with a config written from these options;
            ``None`` when the operator runs it.
    """

    name: str = "gitlab"
    instance_url: str = "https://gitlab.com"
    token: str = msgspec.field(default="", name="token")
    tags: tuple[str, ...] = ()
    default_image: str = ""
    allowed_images: tuple[str, ...] = ()
    shell: tuple[str, ...] = SHELL_ARGV
    system_id_file: Path | None = None
    webhook_token: str = ""
    supervise: SupervisedRunner | None = None

    def __repr__(self) -> str:
        return f"GitLabOptions(name={self.name!r}, instance_url={self.instance_url!r})"

    def validate(self) -> None:
        """Raises: ConfigError naming the bad option."""
        if not self.name:
            raise ConfigError("gitlab: an instance needs a name")
        if not self.shell:
            raise ConfigError(f"{self.name}: shell must name a program")
